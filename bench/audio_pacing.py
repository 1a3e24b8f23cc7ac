"""Outbound pacing of many simulated calls in one asyncio process, against a bare paced floor.

Each call is an AudioSocket server (ours) and a minimal PBX-side client on loopback. The client
connects, sends its UUID, streams 20 ms slin 8 kHz frames on its own paced loop, and timestamps
every frame it receives. Our side runs, per call: the Pacer (PlayoutBuffer + PacingClock) sending
speech that arrives as 24 kHz "model audio" bursts at twice real time and is downsampled to 8 kHz,
and an inbound pump that decodes every frame and upsamples it to 24 kHz (the conversion the
Realtime append needs). The "pacer" mode is the same without the two resamplers (the pacing and
transport machinery alone). The "floor" mode swaps our side for a bare sleep-until-deadline
writer that reads and discards inbound bytes. Figures are printed, never asserted.

    python bench/audio_pacing.py [--calls 20,50,100] [--seconds 10] [--modes floor,pacer,ours]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import itertools
import os
import random
import time
import timeit
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import numpy as np

from asterisk.audiosocket import AudioSocketServer
from asterisk.codec import Decoder, Frame, Kind, encode_audio, encode_uuid, frame_bytes, is_audio
from asterisk.dtmf import DtmfDetector
from asterisk.g711 import ulaw_decode, ulaw_encode
from asterisk.playout import Pacer, PlayoutBuffer
from asterisk.resample import Downsampler3, Upsampler3

PERIOD = 0.020
FRAME = frame_bytes(Kind.SLIN_8K)
MODES = ("floor", "pacer", "ours")
SKIP_FRAMES = 5  # receiver start-up: the first intervals include connection set-up


@dataclass
class Figures:
    """Pooled samples of one run (all calls)."""

    lateness: list[float] = field(default_factory=list)  # s, sender side
    interval_error: list[float] = field(default_factory=list)  # s, at the PBX client
    frames_received: int = 0
    underruns: int = 0
    re_anchors: int = 0
    cpu_seconds: float = 0.0
    wall_seconds: float = 0.0
    gc_pauses: list[tuple[int, float]] = field(default_factory=list)  # (generation, s)


class _GcMeter:
    """Times every garbage collection, to tell GC pauses from scheduling stalls in the maxima."""

    def __init__(self, out: Figures) -> None:
        self._out = out
        self._started = 0.0

    def __call__(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
        else:
            self._out.gc_pauses.append((info["generation"], time.perf_counter() - self._started))


def _speech_24k(seconds: float) -> np.ndarray:
    """A speech-like buzz at 24 kHz (wandering pitch, syllable envelope), rendered once."""
    rate = 24000
    t = np.arange(int(seconds * rate)) / rate
    phase = 2 * np.pi * np.cumsum(120 + 30 * np.sin(2 * np.pi * 3 * t)) / rate
    voiced = sum(np.sin(k * phase) / k for k in range(1, 25))
    x = voiced * (0.5 + 0.5 * np.sin(2 * np.pi * 4 * t))
    return np.asarray(x / np.max(np.abs(x)) * 8000, dtype=np.int16)


# PBX side (same for both modes) -----------------------------------------------------------------


async def _pbx_send(writer: asyncio.StreamWriter, stop: asyncio.Event, phase: float) -> None:
    """The callee's microphone: one 20 ms frame per tick on its own deadline loop."""
    loop = asyncio.get_running_loop()
    frame = encode_audio(
        Kind.SLIN_8K, np.random.default_rng().integers(-300, 300, 160).astype(np.int16).tobytes()
    )
    deadline = loop.time() + phase
    while not stop.is_set():
        deadline += PERIOD
        await asyncio.sleep(max(0.0, deadline - loop.time()))
        if writer.is_closing():
            return
        writer.write(frame)


async def _pbx_receive(reader: asyncio.StreamReader, arrivals: list[float]) -> None:
    """The callee's ear: timestamp every audio frame we send, until EOF or our hangup."""
    loop = asyncio.get_running_loop()
    decoder = Decoder(expect_uuid_first=False)
    while data := await reader.read(65536):
        now = loop.time()
        for frame in decoder.feed(data):
            if is_audio(frame.kind):
                arrivals.append(now)
            elif frame.kind is Kind.HANGUP:
                return


async def _pbx_call(
    address: tuple[str, int], call_id: uuid.UUID, stop: asyncio.Event, arrivals: list[float]
) -> None:
    reader, writer = await asyncio.open_connection(*address)
    writer.write(encode_uuid(call_id))
    sender = asyncio.create_task(_pbx_send(writer, stop, random.uniform(0, PERIOD)))
    try:
        await _pbx_receive(reader, arrivals)
    finally:
        stop.set()
        await sender
        writer.close()


# our side ---------------------------------------------------------------------------------------


async def _produce(
    buffer: PlayoutBuffer, speech: np.ndarray, stop: asyncio.Event, convert: bool
) -> None:
    """Model audio: 200 ms of 24 kHz every 100 ms (bursts at 2× real time), downsampled."""
    down = Downsampler3()
    chunk = 4800
    for start in range(0, speech.size - chunk + 1, chunk):
        if stop.is_set():
            return
        part = speech[start : start + chunk]
        # Without conversion the same number of 8 kHz samples is pushed as they are.
        pcm = down.process(part) if convert else part[: chunk // 3]
        buffer.push(pcm.tobytes(), "reply")
        await asyncio.sleep(0.1)
    buffer.flush("reply")


async def _inbound(recv: Callable[[], Awaitable[Frame | None]], convert: bool) -> None:
    """The inbound pump minus the websocket: decode (in recv) and upsample every frame."""
    up = Upsampler3()
    while (frame := await recv()) is not None:
        if convert and is_audio(frame.kind):
            up.process(np.frombuffer(frame.payload, dtype="<i2"))


async def _ours_call(
    speech: np.ndarray, seconds: float, start_at: float, out: Figures, convert: bool
) -> None:
    call_id = uuid.uuid4()
    server = await AudioSocketServer.start(call_id, bind_host="127.0.0.1")
    stop = asyncio.Event()
    arrivals: list[float] = []
    pbx = asyncio.create_task(_pbx_call(server.address, call_id, asyncio.Event(), arrivals))
    conn = await server.wait_connected(timeout=10.0)
    conn.set_audio_kind(Kind.SLIN_8K)
    buffer = PlayoutBuffer(FRAME)
    pacer = Pacer(buffer, conn.send_audio, name=f"pacer-{call_id}")
    inbound = asyncio.create_task(_inbound(conn.recv, convert))
    loop = asyncio.get_running_loop()
    await asyncio.sleep(max(0.0, start_at - loop.time()) + random.uniform(0, PERIOD))
    producer = asyncio.create_task(_produce(buffer, speech, stop, convert))
    pacer.start()
    await asyncio.sleep(seconds)
    await pacer.close()
    stop.set()
    await producer
    await conn.hangup()
    await asyncio.gather(pbx, inbound)
    await server.close()
    out.lateness += list(pacer.stats.lateness)
    out.underruns += pacer.stats.underruns
    out.re_anchors += pacer.stats.re_anchors
    _add_arrivals(out, arrivals)


def _add_arrivals(out: Figures, arrivals: list[float]) -> None:
    out.frames_received += len(arrivals)
    kept = arrivals[SKIP_FRAMES:]
    out.interval_error += [abs(b - a - PERIOD) for a, b in itertools.pairwise(kept)]


# bare floor -------------------------------------------------------------------------------------


async def _floor_call(seconds: float, start_at: float, out: Figures) -> None:
    """A minimal server: read the UUID, then write one frame per deadline; nothing else."""
    call_id = uuid.uuid4()
    connected: asyncio.Future[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = (
        asyncio.get_running_loop().create_future()
    )

    async def accept(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readexactly(19)
        connected.set_result((reader, writer))

    server = await asyncio.start_server(accept, "127.0.0.1", 0)
    address = server.sockets[0].getsockname()[:2]
    arrivals: list[float] = []
    pbx = asyncio.create_task(_pbx_call(address, call_id, asyncio.Event(), arrivals))
    reader, writer = await connected
    drain = asyncio.create_task(_discard(reader))
    loop = asyncio.get_running_loop()
    frame = encode_audio(Kind.SLIN_8K, bytes(FRAME))
    deadline = start_at + random.uniform(0, PERIOD)
    end = deadline + seconds
    while deadline < end:
        deadline += PERIOD
        await asyncio.sleep(max(0.0, deadline - loop.time()))
        out.lateness.append(max(0.0, loop.time() - deadline))
        writer.write(frame)
    writer.write(b"\x00\x00\x00")
    writer.close()
    await asyncio.gather(pbx, drain)
    server.close()
    await server.wait_closed()
    _add_arrivals(out, arrivals)


async def _discard(reader: asyncio.StreamReader) -> None:
    while await reader.read(65536):
        pass


# running ----------------------------------------------------------------------------------------


async def _run(mode: str, calls: int, seconds: float, speech: np.ndarray) -> Figures:
    out = Figures()
    loop = asyncio.get_running_loop()
    start_at = loop.time() + 1.0 + calls * 0.01  # after every call has connected
    if mode == "floor":
        jobs = [_floor_call(seconds, start_at, out) for _ in range(calls)]
    else:
        convert = mode == "ours"
        jobs = [_ours_call(speech, seconds, start_at, out, convert) for _ in range(calls)]
    cpu_at_start = wall_at_start = 0.0

    async def meter() -> None:
        nonlocal cpu_at_start, wall_at_start
        await asyncio.sleep(max(0.0, start_at - loop.time()))
        cpu_at_start, wall_at_start = time.process_time(), time.perf_counter()
        await asyncio.sleep(seconds)
        out.cpu_seconds = time.process_time() - cpu_at_start
        out.wall_seconds = time.perf_counter() - wall_at_start

    gc_meter = _GcMeter(out)
    gc.callbacks.append(gc_meter)
    try:
        await asyncio.gather(meter(), *jobs)
    finally:
        gc.callbacks.remove(gc_meter)
    return out


def _ms(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q)) * 1e3 if values else float("nan")


def _report(mode: str, calls: int, fig: Figures) -> dict[str, float]:
    row = {
        "late_p50": _ms(fig.lateness, 50),
        "late_p99": _ms(fig.lateness, 99),
        "late_max": max(fig.lateness, default=float("nan")) * 1e3,
        "err_p50": _ms(fig.interval_error, 50),
        "err_p99": _ms(fig.interval_error, 99),
        "err_max": max(fig.interval_error, default=float("nan")) * 1e3,
        "cpu_pct": 100 * fig.cpu_seconds / (calls * fig.wall_seconds),
    }
    late = f"{row['late_p50']:6.2f} {row['late_p99']:6.2f} {row['late_max']:7.2f}"
    err = f"{row['err_p50']:6.2f} {row['err_p99']:6.2f} {row['err_max']:7.2f}"
    counts = f"{fig.frames_received:>7} {fig.underruns:>4} {fig.re_anchors:>4}"
    full = [t * 1e3 for g, t in fig.gc_pauses if g == 2]
    any_gc = max((t * 1e3 for _, t in fig.gc_pauses), default=0.0)
    gcs = f"{len(full):>4} {max(full, default=0.0):5.1f} {any_gc:5.1f}"
    cpu = f"{row['cpu_pct']:5.2f} %"
    print(f"{mode:>5} {calls:>5} | {late} | {err} | {cpu} | {counts} | {gcs}", flush=True)
    return row


def _micro_costs() -> None:
    rng = np.random.default_rng(0)
    pcm8 = rng.integers(-8000, 8000, 160).astype(np.int16)
    pcm24 = rng.integers(-8000, 8000, 480).astype(np.int16)
    raw8 = pcm8.tobytes()
    wire = encode_audio(Kind.SLIN_8K, raw8)
    decoder = Decoder(expect_uuid_first=False)
    ulaw = ulaw_encode(pcm8)
    up, down, dtmf = Upsampler3(), Downsampler3(), DtmfDetector()
    cases: dict[str, Callable[[], object]] = {
        "codec encode (slin8k frame)": lambda: encode_audio(Kind.SLIN_8K, raw8),
        "codec decode (slin8k frame)": lambda: decoder.feed(wire),
        "µ-law encode (160 samples)": lambda: ulaw_encode(pcm8),
        "µ-law decode (160 bytes)": lambda: ulaw_decode(ulaw),
        "resample up 8k→24k (160→480)": lambda: up.process(pcm8),
        "resample down 24k→8k (480→160)": lambda: down.process(pcm24),
        "DTMF detector (20 ms at 8k)": lambda: dtmf.feed(pcm8),
    }
    print("\nmicro-costs per 20 ms frame (µs, best of 5 × 2000):")
    for name, fn in cases.items():
        best = min(timeit.repeat(fn, number=2000, repeat=5)) / 2000
        print(f"  {name:<34} {best * 1e6:7.2f}")


def main() -> None:
    """Parse the CLI, run every call count in each mode, print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", default="20,50,100")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument(
        "--modes",
        default="floor,pacer,ours",
        help="floor: bare paced writer; pacer: our server + Pacer without audio conversion; "
        "ours: pacer plus 24→8 kHz outbound and 8→24 kHz inbound resampling",
    )
    args = parser.parse_args()
    counts = [int(c) for c in args.calls.split(",")]
    modes = [m for m in args.modes.split(",") if m in MODES]
    speech = _speech_24k(args.seconds * 2 + 1)
    load = ", ".join(f"{v:.2f}" for v in os.getloadavg())
    print(f"{args.seconds:g} s of paced audio per call, all calls in one asyncio process, loopback")
    print(f"{os.cpu_count()} CPUs, load average before the run: {load}")
    print(
        " mode calls | sender lateness ms    | rx interval error ms  | CPU/call |"
        "  frames  und re-a | GC gen2 n, max ms; any GC max ms"
    )
    print("            |  p50    p99     max   |  p50    p99     max   |          |")
    rows: dict[tuple[str, int], dict[str, float]] = {}
    for calls in counts:
        for mode in modes:
            fig = asyncio.run(_run(mode, calls, args.seconds, speech))
            rows[(mode, calls)] = _report(mode, calls, fig)
    if "floor" in modes and len(modes) > 1:
        print(
            "\nratios to the floor at the same call count (p99 lateness, p99 interval error, CPU):"
        )
        for calls in counts:
            floor = rows[("floor", calls)]
            for mode in (m for m in modes if m != "floor"):
                row = rows[(mode, calls)]
                ratios = [row[k] / floor[k] for k in ("late_p99", "err_p99", "cpu_pct")]
                print(f"  {calls:>4} calls {mode:>5}: " + "  ".join(f"{r:5.2f}×" for r in ratios))
    _micro_costs()


if __name__ == "__main__":
    main()
