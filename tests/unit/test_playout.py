"""Playout buffer and the 20 ms deadline clock, the clock on virtual time."""

from __future__ import annotations

import asyncio
import itertools
import logging
import random

import pytest

from asterisk.playout import Pacer, PacingClock, PlayoutBuffer, percentile

pytestmark = pytest.mark.unit

FRAME = 320  # 20 ms of slin 8 kHz
PERIOD = 0.020
EPS = 1e-9


class VirtualTime:
    """A clock the test moves: `sleep` advances it (plus any injected scheduler overshoot)."""

    def __init__(self) -> None:
        self.t = 1000.0
        self.overshoot: list[float] = []  # consumed one per sleep

    def now(self) -> float:
        return self.t

    async def sleep(self, delay: float) -> None:
        self.t += delay + (self.overshoot.pop(0) if self.overshoot else 0.0)
        await asyncio.sleep(0)

    def work(self, seconds: float) -> None:
        """Time spent by the loop between ticks (a load spike when large)."""
        self.t += seconds

    def clock(self) -> PacingClock:
        return PacingClock(PERIOD, now=self.now, sleep=self.sleep)


def _speech(ms: int, seed: int = 0) -> bytes:
    rng = random.Random(seed)
    return bytes(rng.randrange(256) for _ in range(ms * FRAME // 20))


# playout buffer --------------------------------------------------------------------------------


def test_arbitrary_chunks_are_cut_into_exact_frames_in_order() -> None:
    buf = PlayoutBuffer(FRAME)
    audio = _speech(1000)
    rng = random.Random(1)
    pos = 0
    while pos < len(audio):
        step = rng.choice([1, 3, 319, 320, 321, 1000, 2047])
        buf.push(audio[pos : pos + step], "u1")
        pos += step
    frames = []
    while (frame := buf.pop()) is not None:
        frames.append(frame)
    assert all(len(f) == FRAME for f in frames)
    assert b"".join(frames) == audio  # 1000 ms is 50 whole frames: nothing held back


def test_partial_frame_waits_for_more_audio_or_a_flush_that_pads_it_with_silence() -> None:
    buf = PlayoutBuffer(FRAME)
    buf.push(b"\x01" * 500, "u1")
    assert buf.pop() == b"\x01" * 320
    assert buf.pop() is None  # 180 bytes held
    assert buf.queued_ms == 11 and buf.speaking
    buf.push(b"\x02" * 100, "u1")
    assert buf.pop() is None
    buf.flush("u1")
    assert buf.pop() == b"\x01" * 180 + b"\x02" * 100 + bytes(40)
    assert not buf.speaking and buf.queued_ms == 0


def test_a_new_utterance_pads_and_queues_the_previous_tail_first() -> None:
    buf = PlayoutBuffer(FRAME)
    buf.push(b"\x01" * 100, "a")
    buf.push(b"\x02" * 320, "b")
    assert buf.pop() == b"\x01" * 100 + bytes(220)
    assert buf.current_utterance == "a"
    assert buf.pop() == b"\x02" * 320
    assert buf.current_utterance == "b"


def test_played_ms_counts_only_real_audio_handed_to_the_wire() -> None:
    buf = PlayoutBuffer(FRAME)
    buf.push(_speech(110), "a")  # 5 frames + 10 ms
    buf.flush("a")
    buf.push(_speech(40), "b")
    assert buf.played_ms("a") == 0 and buf.queued_ms == 160
    for _ in range(3):
        buf.pop()
    assert buf.played_ms("a") == 60
    for _ in range(3):
        buf.pop()
    assert buf.played_ms("a") == 110  # the padded sixth frame counts its 10 ms, not 20
    assert buf.played_ms("b") == 0 and buf.played_ms("unknown") == 0
    buf.forget("a")
    assert buf.played_ms("a") == 0


def test_clear_drops_everything_at_once_and_keeps_what_was_played() -> None:
    buf = PlayoutBuffer(FRAME)
    buf.push(_speech(2010), "a")
    buf.pop()
    buf.clear()
    assert buf.pop() is None
    assert buf.queued_ms == 0 and not buf.speaking
    assert buf.played_ms("a") == 20
    buf.push(_speech(20), "b")
    assert buf.pop() is not None  # no stale partial bytes leak into the next utterance
    assert buf.played_ms("b") == 20


def test_buffer_refuses_frame_sizes_that_split_samples() -> None:
    with pytest.raises(ValueError, match="even"):
        PlayoutBuffer(321)


# pacing clock ----------------------------------------------------------------------------------


async def _tick_times(vt: VirtualTime, ticks: int, work: dict[int, float]) -> list[float]:
    clock = vt.clock()
    times = []
    for i in range(ticks):
        await clock.wait_next()
        times.append(vt.now())
        vt.work(work.get(i, 0.0))
    return times


def _intervals(times: list[float]) -> list[float]:
    return [b - a for a, b in itertools.pairwise(times)]


async def test_400_ticks_without_load_are_exactly_one_period_apart() -> None:
    vt = VirtualTime()
    times = await _tick_times(vt, 400, {})
    assert all(abs(i - PERIOD) < EPS for i in _intervals(times))
    assert abs(times[-1] - times[0] - 399 * PERIOD) < EPS


async def test_work_shorter_than_a_period_leaves_interval_error_at_zero() -> None:
    vt = VirtualTime()
    rng = random.Random(7)
    work = {i: rng.uniform(0.0, 0.019) for i in range(400)}
    times = await _tick_times(vt, 400, work)
    assert max(abs(i - PERIOD) for i in _intervals(times)) < EPS


async def test_a_late_tick_re_anchors_instead_of_bursting() -> None:
    vt = VirtualTime()
    spikes = {50: 0.035, 120: 0.100, 121: 0.045, 300: 0.250}
    clock = vt.clock()
    times, lateness = [], []
    for i in range(400):
        lateness.append(await clock.wait_next())
        times.append(vt.now())
        vt.work(spikes.get(i, 0.0))
    intervals = _intervals(times)
    assert min(intervals) >= PERIOD - EPS  # never two frames closer than a period: no burst
    for i, interval in enumerate(intervals):
        if i not in spikes:
            assert abs(interval - PERIOD) < EPS, i  # every tick not stalled is exactly on time
        else:
            assert abs(interval - spikes[i]) < EPS, i  # the stall itself, and nothing extra
    assert [round(x, 6) for x in lateness if x > 0] == [0.015, 0.08, 0.025, 0.23]


async def test_scheduler_overshoot_below_a_period_causes_no_drift() -> None:
    vt = VirtualTime()
    rng = random.Random(3)
    vt.overshoot = [rng.choice([0.0, 0.0, 0.0, 0.004, 0.012]) for _ in range(400)]
    clock = vt.clock()
    times, lateness = [], []
    for _ in range(400):
        lateness.append(await clock.wait_next())
        times.append(vt.now())
    grid = [times[0] + k * PERIOD for k in range(400)]
    # Each tick is late by its own overshoot only; the grid holds, so 400 ticks take 8 s.
    assert all(abs(t - g - late) < EPS for t, g, late in zip(times, grid, lateness, strict=True))
    assert max(lateness) <= 0.012 + EPS


async def test_a_sleep_overshooting_by_more_than_a_period_re_anchors() -> None:
    vt = VirtualTime()
    vt.overshoot = [0.0, 0.050]
    clock = vt.clock()
    times = []
    for _ in range(5):
        await clock.wait_next()
        times.append(vt.now())
    expected = [PERIOD, PERIOD + 0.050, PERIOD, PERIOD]
    assert all(abs(a - b) < EPS for a, b in zip(_intervals(times), expected, strict=True))
    assert clock.re_anchors == 1


async def test_clock_reset_ticks_at_once_and_anchors_anew() -> None:
    vt = VirtualTime()
    clock = vt.clock()
    await clock.wait_next()
    await clock.wait_next()
    vt.work(5.0)
    clock.reset()
    start = vt.now()
    assert await clock.wait_next() == 0.0 and vt.now() == start
    await clock.wait_next()
    assert abs(vt.now() - start - PERIOD) < EPS


# pacer -----------------------------------------------------------------------------------------


async def test_pacer_sends_one_frame_per_tick_speech_then_silence() -> None:
    vt = VirtualTime()
    sent: list[tuple[float, bytes]] = []
    buf = PlayoutBuffer(FRAME)
    pacer = Pacer(buf, lambda f: sent.append((vt.now(), f)), clock=vt.clock())
    buf.push(b"\x05" * FRAME * 100, "greeting")
    buf.flush("greeting")
    await pacer.run(max_ticks=400)
    assert len(sent) == 400 and all(len(f) == FRAME for _, f in sent)
    assert [f == bytes(FRAME) for _, f in sent] == [False] * 100 + [True] * 300
    assert buf.played_ms("greeting") == 2000
    stats = pacer.stats.summary()
    assert stats["speech_frames"] == 100 and stats["silence_frames"] == 300
    assert stats["underruns"] == 0 and stats["interval_error_max_ms"] < 1e-6


async def test_pacer_interval_error_stays_zero_under_load_below_a_period() -> None:
    vt = VirtualTime()
    rng = random.Random(11)
    sent: list[float] = []

    def send(frame: bytes) -> None:
        sent.append(vt.now())
        vt.work(rng.uniform(0, 0.018))  # a busy loop between ticks

    pacer = Pacer(PlayoutBuffer(FRAME), send, clock=vt.clock())
    await pacer.run(max_ticks=400)
    assert max(abs(i - PERIOD) for i in _intervals(sent)) < EPS
    assert pacer.stats.max_lateness == 0.0 and pacer.stats.re_anchors == 0


async def test_pacer_counts_a_re_anchor_for_a_stall_longer_than_a_period() -> None:
    vt = VirtualTime()
    sent: list[float] = []

    def send(frame: bytes) -> None:
        sent.append(vt.now())
        if len(sent) == 200:
            vt.work(0.070)

    pacer = Pacer(PlayoutBuffer(FRAME), send, clock=vt.clock())
    await pacer.run(max_ticks=400)
    assert pacer.stats.re_anchors == 1
    assert min(_intervals(sent)) >= PERIOD - EPS
    assert abs(pacer.stats.max_interval_error - 0.050) < EPS


async def test_interrupt_turns_the_very_next_tick_into_silence() -> None:
    vt = VirtualTime()
    sent: list[bytes] = []
    buf = PlayoutBuffer(FRAME)
    pacer = Pacer(buf, sent.append, clock=vt.clock())
    buf.push(b"\x07" * FRAME * 50, "answer")
    await pacer.run(max_ticks=10)
    pacer.interrupt()
    await pacer.tick()
    assert sent[:10] == [b"\x07" * FRAME] * 10
    assert sent[10] == bytes(FRAME)
    assert buf.played_ms("answer") == 200  # what the model may keep: exactly what was sent
    assert pacer.stats.interrupts == 1


async def test_underrun_counts_ticks_where_speech_is_under_way_but_no_frame_is_ready() -> None:
    vt = VirtualTime()
    buf = PlayoutBuffer(FRAME)
    pacer = Pacer(buf, lambda f: None, clock=vt.clock())
    buf.push(b"\x01" * (FRAME * 2 + 10), "slow")  # the model is behind real time
    await pacer.run(max_ticks=5)
    assert pacer.stats.underruns == 3
    buf.flush("slow")
    await pacer.run(max_ticks=3)
    assert pacer.stats.underruns == 3  # after the end of speech, silence is not an underrun


async def test_pacer_task_stops_on_close_and_logs_a_failing_send(
    caplog: pytest.LogCaptureFixture,
) -> None:
    sent: list[bytes] = []
    pacer = Pacer(PlayoutBuffer(FRAME), sent.append, clock=PacingClock(0.005))
    pacer.start()
    await asyncio.sleep(0.03)
    await pacer.close()
    count = len(sent)
    assert count >= 1 and not pacer.running
    await asyncio.sleep(0.02)
    assert len(sent) == count

    def broken(frame: bytes) -> None:
        raise ConnectionResetError("peer gone")

    failing = Pacer(PlayoutBuffer(FRAME), broken, name="pacer-test")
    with caplog.at_level(logging.ERROR, logger="asterisk.playout"):
        failing.start()
        await asyncio.sleep(0.01)
    assert not failing.running
    assert "pacer-test stopped" in caplog.text and "peer gone" in caplog.text
    await failing.close()


def test_percentile_uses_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 50) == 50.0
    assert percentile(values, 99) == 99.0
    assert percentile(values, 100) == 100.0
    assert percentile([3.0], 0) == 3.0
