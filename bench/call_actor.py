"""Figures of the CallActor (DESIGN.md §8, issue 4): memory, CPU, latency, pacing, ramp.

Prints, never asserts. Three parts:

- ``floor``: PSS of a bare Ray actor, of one that imported numpy + the openai SDK (what every
  call needs), and of an idle CallActor — the floor a live call is judged against;
- ``ramp``: how long 1, 10, 50 CallActors take to be ready when asked for together, with Ray's
  default worker start-up concurrency (= CPUs) and with it raised (one fresh Ray per setting);
- ``calls``: N concurrent calls through PbxGateway → simulated PBX → AudioSocket → CallActor →
  SDK → Realtime stand-in: PSS per CallActor mid-call, CPU per call-second, inbound forwarding
  latency, sender lateness and receiver interval error (the simulated PBX's frame log), barge-in
  reaction, setup time, voice-to-voice.

    python bench/call_actor.py [--parts floor,ramp,calls] [--calls 1,10,20,50] [--ramp 1,10,50]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import ray

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from actors.call import CallActorRemote  # noqa: E402
from actors.call_spec import CallSpec  # noqa: E402
from actors.options import call_actor_options, pbx_gateway_options  # noqa: E402
from actors.pbx import PbxGatewayActor  # noqa: E402
from ai.brief import CallBrief  # noqa: E402
from asterisk.playout import percentile  # noqa: E402
from opendeep.settings import Settings  # noqa: E402

STARTUP_ENV = "RAY_worker_maximum_startup_concurrency"  # Ray reads RAY_<its exact name>


def pss_mb(pid: int) -> float:
    """Proportional set size of a process in MB (shared pages split among their users)."""
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
        if line.startswith("Pss:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def uss_mb(pid: int) -> float:
    """Unique set size (private pages only) in MB."""
    total = 0
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
        if line.startswith(("Private_Clean:", "Private_Dirty:")):
            total += int(line.split()[1])
    return total / 1024


def cpu_seconds_of(pid: int) -> float:
    """User + system CPU seconds a process has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def start_ray(startup_concurrency: int | None = None) -> str:
    """A fresh local Ray for the bench; returns its temp dir (removed by stop_ray)."""
    temp = tempfile.mkdtemp(prefix="odb", dir="/tmp")
    if startup_concurrency is not None:  # Ray reads its config from RAY_<exact name>
        os.environ[STARTUP_ENV] = str(startup_concurrency)
    ray.init(
        address="local",
        num_cpus=2,
        resources={"call_slot": 500},
        include_dashboard=False,
        namespace="bench",
        _temp_dir=temp,
        log_to_driver=False,
    )
    return temp


def stop_ray(temp: str) -> None:
    """Shut Ray down and remove its temp dir."""
    ray.shutdown()
    shutil.rmtree(temp, ignore_errors=True)


def brief() -> CallBrief:
    """The task every bench call works on."""
    return CallBrief(
        task_id=uuid.uuid4(),
        objective="Move the dental appointment to next week.",
        context="Patient: Alex Smith.",
        on_behalf_of="Alex Smith",
    )


# -- floor -------------------------------------------------------------------------------------
@ray.remote(num_cpus=0)
class BareActor:
    """A Ray worker and nothing else."""

    async def pid(self) -> int:
        return os.getpid()


@ray.remote(num_cpus=0)
class ImportsActor:
    """A Ray worker with what every call needs anyway: numpy, the openai SDK's realtime client."""

    async def pid(self) -> int:
        import numpy  # noqa: F401, PLC0415
        import openai  # noqa: PLC0415
        from openai.resources.realtime import realtime  # noqa: F401, PLC0415
        from websockets.asyncio import client  # noqa: F401, PLC0415

        openai.AsyncOpenAI(api_key="x", websocket_base_url="ws://127.0.0.1:9")
        return os.getpid()


def idle_call_actor(namespace: str) -> Any:
    """A CallActor that was created but not started (its imports, no call)."""
    spec = CallSpec.for_task(
        call_id=uuid.uuid4(), number="+14155550100", namespace=namespace, brief=brief()
    )
    settings = Settings(_env_file=None)
    return CallActorRemote.options(**call_actor_options(spec.call_id, namespace)).remote(
        spec, settings, exit_when_done=False
    )


async def floor_part() -> dict[str, float]:
    """PSS of the floor actors and of an idle CallActor."""
    temp = start_ray()
    try:
        out: dict[str, float] = {}
        floors: list[tuple[str, Any]] = [
            ("bare Ray actor", BareActor.remote()),  # type: ignore[attr-defined]
            ("+ numpy + openai SDK", ImportsActor.remote()),  # type: ignore[attr-defined]
        ]
        for name, handle in floors:
            pid = await handle.pid.remote()
            await asyncio.sleep(1.0)
            out[name] = pss_mb(pid)
            out[name + " (USS)"] = uss_mb(pid)
        call = idle_call_actor("bench")
        pid = (await call.status.remote())["pid"]
        await asyncio.sleep(1.0)
        out["CallActor idle (imports only)"] = pss_mb(pid)
        out["CallActor idle (USS)"] = uss_mb(pid)
        return out
    finally:
        stop_ray(temp)


# -- ramp --------------------------------------------------------------------------------------
async def ramp_child(count: int) -> dict[str, float]:
    """In a fresh Ray: create ``count`` CallActors together, time until each answers."""
    namespace = f"ramp-{uuid.uuid4().hex[:6]}"
    start = time.monotonic()
    handles = [idle_call_actor(namespace) for _ in range(count)]
    ready: list[float] = []

    async def one(handle: Any) -> None:
        await handle.status.remote()
        ready.append(time.monotonic() - start)

    await asyncio.gather(*(one(h) for h in handles))
    for handle in handles:
        ray.kill(handle)
    return {"first_s": min(ready), "p50_s": statistics.median(ready), "all_s": max(ready)}


def ramp_part(counts: list[int], concurrencies: list[int | None]) -> list[dict[str, Any]]:
    """One subprocess (fresh Ray) per (concurrency, count)."""
    rows = []
    for concurrency in concurrencies:
        for count in counts:
            cmd = [sys.executable, __file__, "--ramp-child", str(count)]
            env = dict(os.environ)
            env.pop(STARTUP_ENV, None)
            if concurrency is not None:
                env[STARTUP_ENV] = str(concurrency)
            done = subprocess.run(
                cmd, check=False, capture_output=True, text=True, env=env, timeout=600
            )
            lines = [ln for ln in done.stdout.splitlines() if ln.startswith("{")]
            row: dict[str, Any] = {"concurrency": concurrency or "default (2)", "calls": count}
            row.update(json.loads(lines[-1]) if lines else {"error": done.stderr[-300:]})
            rows.append(row)
            row["load_avg"] = round(os.getloadavg()[0], 1)
            print(f"  ramp {row}", flush=True)
    return rows


# -- calls -------------------------------------------------------------------------------------
BENCH_NUMBER = "+14155550300"
AMI_USER, AMI_SECRET = "opendeep", "bench-secret"
SPEECH_CACHE = Path("/tmp/opendeep-bench-speech")
LONG_REPLY = (
    "I am calling because Alex would like to move the appointment that is currently booked for "
    "Monday morning at nine to some time next week, ideally on Tuesday or Wednesday."
)
BENCH_SCENARIO: dict[str, Any] = {
    # The callee lets the greeting play (setup time), answers, talks over the long reply
    # (barge-in), answers again; the agent says goodbye and ends the call (~20 s in all).
    "number": BENCH_NUMBER,
    "name": "bench-talk",
    "callee": {
        "ring": 0.5,
        "script": [
            {"listen": 10.0},
            {"say": "Hi, this is Bright Smile Dental. How can I help?"},
            {"pause": 1.4},
            {"say": "Sorry, one second please."},
            {"listen": 10.0},
            {"say": "Okay, Tuesday at ten works. Anything else?"},
            {"listen": 10.0},
            {"hangup": True},
        ],
    },
    "agent": {
        "greeting": "Hello, this is an AI assistant calling on behalf of Alex Smith.",
        "turns": [
            {"say": LONG_REPLY},
            {"say": "Of course, take your time."},
            {
                "say": "No, that's all. Thank you very much, goodbye!",
                "tool": {"name": "end_call", "arguments": {"reason": "completed"}},
            },
        ],
    },
}


class BenchWorld:
    """The simulated PBX and the Realtime stand-in, in this process, on free ports."""

    ami_user, ami_secret = AMI_USER, AMI_SECRET

    def __init__(self) -> None:
        from ai.sim.world import SimulatedWorld  # noqa: PLC0415 -- only the calls part needs it
        from asterisk.sim.scenarios import World  # noqa: PLC0415

        world = World.model_validate({"scenario": [BENCH_SCENARIO]})
        self.sim = SimulatedWorld(
            ami_port=0,
            realtime_port=0,
            username=AMI_USER,
            secret=AMI_SECRET,
            world=world,
            speech_cache=SPEECH_CACHE,
        )

    @property
    def pbx(self) -> Any:
        return self.sim.pbx

    @property
    def ami_port(self) -> int:
        return int(self.sim.pbx.ami_port)

    @property
    def realtime_url(self) -> str:
        return str(self.sim.realtime_url)

    async def stop(self) -> None:
        await self.sim.stop()


async def start_bench_world() -> BenchWorld:
    """Start the bench's simulated world."""
    world = BenchWorld()
    await world.sim.start()
    return world


def _pct(values: list[float]) -> str:
    if not values:
        return "-"
    return (
        f"{percentile(values, 50):.1f} / {percentile(values, 99):.1f} / {max(values):.1f}"
        f" (n={len(values)})"
    )


def receiver_interval_errors(arrivals: list[float], skip: int = 5) -> list[float]:
    """|interval - 20 ms| in ms between consecutive audio frames the simulated callee received."""
    gaps = [b - a for a, b in zip(arrivals[skip:], arrivals[skip + 1 :], strict=False)]
    return [abs(g - 0.020) * 1e3 for g in gaps]


async def calls_part(counts: list[int], frames_per_append: int) -> list[dict[str, Any]]:
    """N concurrent calls through the simulated world, for each N."""
    temp = start_ray(startup_concurrency=int(os.environ.get("BENCH_STARTUP", "4")))
    rows = []
    try:
        for count in counts:
            world = await start_bench_world()
            try:
                row = await one_load(world, count, BENCH_NUMBER, frames_per_append)
            finally:
                await world.stop()
            rows.append(row)
            print_call_row(row)
    finally:
        stop_ray(temp)
    return rows


def load_settings(world: Any, namespace: str) -> Settings:
    """Settings pointing at the bench world (generous timeouts: we measure, not fail)."""
    return Settings(
        _env_file=None,
        ami_host="127.0.0.1",
        ami_port=world.ami_port,
        ami_user=world.ami_user,
        ami_secret=world.ami_secret,
        realtime_base_url=world.realtime_url,
        ring_timeout=10.0,
        connect_timeout=10.0,
        max_call_duration=120.0,
        ray_namespace=namespace,
        log_level="WARNING",
    )


async def make_owners(
    count: int, number: str, namespace: str, tmp: Path
) -> tuple[list[CallSpec], list[Any]]:
    """One recording owner (the TaskActor's stand-in) and one call spec per call."""
    from tests.e2e.owner import RecordingOwner  # noqa: PLC0415

    specs, owners = [], []
    for _ in range(count):
        b = brief()
        owner = RecordingOwner.options(  # type: ignore[attr-defined]
            name=f"task:{b.task_id}", namespace=namespace, lifetime="detached"
        ).remote(str(tmp / f"{b.task_id}.jsonl"))
        spec = CallSpec.for_task(call_id=uuid.uuid4(), number=number, namespace=namespace, brief=b)
        specs.append(spec)
        owners.append(owner)
    await asyncio.gather(*(o.info.remote() for o in owners))
    return specs, owners


async def sample_processes(pids: list[int], before: float, span: float) -> tuple[list[float], ...]:
    """PSS and CPU % of each call's process over ``span`` s, starting ``before`` s from now."""
    await asyncio.sleep(before)
    cpu0 = {}
    for pid in pids:
        with contextlib.suppress(OSError):
            cpu0[pid] = cpu_seconds_of(pid)
    t0 = time.monotonic()
    await asyncio.sleep(span)
    span = time.monotonic() - t0
    pss: list[float] = []
    cpu: list[float] = []
    for pid in pids:
        with contextlib.suppress(OSError, KeyError):  # that call already ended
            pss.append(pss_mb(pid))
            cpu.append((cpu_seconds_of(pid) - cpu0[pid]) / span * 100)
    return pss, cpu


async def one_load(world: Any, count: int, number: str, frames_per_append: int) -> dict[str, Any]:
    """Place ``count`` calls together and collect their figures."""
    namespace = f"load-{uuid.uuid4().hex[:6]}"
    settings = load_settings(world, namespace)
    gateway: Any = PbxGatewayActor.options(**pbx_gateway_options(namespace)).remote(
        settings, namespace
    )
    await gateway.ping.remote()
    tmp = Path(tempfile.mkdtemp(prefix="odo"))
    specs, owners = await make_owners(count, number, namespace, tmp)
    calls: list[Any] = []
    # The actors are created first and the calls started together once all are up: the ramp
    # (actor start-up, CPU-heavy) is its own figure and must not pollute the live calls' pacing.
    created = time.monotonic()
    for spec in specs:
        calls.append(
            CallActorRemote.options(**call_actor_options(spec.call_id, namespace)).remote(
                spec, settings, frames_per_append=frames_per_append
            )
        )
    pids = await asyncio.gather(*(c.status.remote() for c in calls))
    ready_s = time.monotonic() - created
    await asyncio.sleep(2.0)  # let the start-up CPU settle
    started_wall = dt.datetime.now(dt.UTC)
    world_cpu0, world_t0 = time.process_time(), time.monotonic()
    await asyncio.gather(*(c.start.remote() for c in calls))
    ask_offsets = [(started_wall - spec.asked_at).total_seconds() * 1e3 for spec in specs]
    # Greeting playing by 4 s (session up); 8 s of conversation, barge-in included.
    pss, steady = await sample_processes([status["pid"] for status in pids], 4.0, 8.0)
    ended = []
    for owner in owners:
        ended.append(await wait_ended(owner, 180))
    world_cpu = (time.process_time() - world_cpu0) / (time.monotonic() - world_t0) * 100
    records = [world.pbx.calls.get(str(s.call_id)) for s in specs]
    ray.kill(gateway)
    for owner in owners:
        ray.kill(owner)
    shutil.rmtree(tmp, ignore_errors=True)
    row = summarise(count, ready_s, pss, ended, records)
    row["cpu_steady_pct"] = steady
    row["world_cpu_pct"] = world_cpu
    # setup measured from start() (the actors were created before): subtract the wait.
    row["setup_ms"] = [
        e["figures"]["setup_ms"] - off
        for e, off in zip(ended, ask_offsets, strict=True)
        if e and e.get("figures") and e["figures"].get("setup_ms") is not None
    ]
    row["originate_ms"] = [
        e["figures"]["originate_ms"] - off
        for e, off in zip(ended, ask_offsets, strict=True)
        if e and e.get("figures") and e["figures"].get("originate_ms") is not None
    ]
    return row


async def wait_ended(owner: Any, within: float) -> dict[str, Any] | None:
    """The Ended payload the owner got (None if none in time)."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        for msg in await owner.messages.remote():
            if msg["kind"] == "ended":
                payload: dict[str, Any] = msg["payload"]
                return payload
        await asyncio.sleep(0.25)
    return None


def _pool(ended: list[dict[str, Any] | None], key: str, part: str = "p99") -> list[float]:
    return [
        e["figures"][key][part]
        for e in ended
        if e and e.get("figures") and e["figures"][key]["count"]
    ]


def summarise(
    count: int,
    ready_s: float,
    pss: list[float],
    ended: list[dict[str, Any] | None],
    records: list[Any],
) -> dict[str, Any]:
    """One row of figures for ``count`` concurrent calls."""
    done = [e for e in ended if e]
    figures = [e["figures"] for e in done if e.get("figures")]
    cpu = [
        f["cpu_seconds"] / f["duration_s"] * 100
        for f in figures
        if f.get("cpu_seconds") and f.get("duration_s")
    ]
    receiver: list[float] = []
    for record in records:
        if record is not None:
            receiver.extend(receiver_interval_errors(record.audio_arrivals()))
    return {
        "calls": count,
        "ended": len(done),
        "end_reasons": sorted({e["end_reason"] for e in done}),
        "ready_s": round(ready_s, 2),
        "pss_mb": pss,
        "cpu_pct": cpu,
        "setup_ms": [f["setup_ms"] for f in figures if f.get("setup_ms") is not None],
        "originate_ms": [f["originate_ms"] for f in figures if f.get("originate_ms") is not None],
        "connect_ms": [f["connect_ms"] for f in figures if f.get("connect_ms") is not None],
        "inbound_p99": _pool(ended, "inbound_forward_ms"),
        "inbound_p50": _pool(ended, "inbound_forward_ms", "p50"),
        "lateness_p99": _pool(ended, "sender_lateness_ms"),
        "lateness_max": _pool(ended, "sender_lateness_ms", "max"),
        "sender_err_p99": _pool(ended, "pacing_interval_error_ms"),
        "barge_in": _pool(ended, "barge_in_ms", "max"),
        "v2v_p50": _pool(ended, "voice_to_voice_ms", "p50"),
        "underruns": sum(f.get("underruns", 0) for f in figures),
        "receiver_err": receiver,
    }


def print_call_row(row: dict[str, Any]) -> None:
    """Human-readable figures of one load level."""
    print(f"\n== {row['calls']} concurrent call(s): {row['ended']} ended {row['end_reasons']}")
    print(f"  machine load average (1 min) after   {os.getloadavg()[0]:.1f}")
    print(f"  actors created, all ready in         {row['ready_s']} s (then started together)")
    print(f"  simulated world's own CPU (% core)   {row['world_cpu_pct']:.0f}")
    print(f"  PSS per CallActor mid-call (MB)      {_pct(row['pss_mb'])}  p50/p99/max")
    print(f"  CPU per call-second, whole call (%)  {_pct(row['cpu_pct'])}")
    print(f"  CPU per call-second, mid-call (%)    {_pct(row['cpu_steady_pct'])}")
    print(f"  setup: start -> first agent frame ms {_pct(row['setup_ms'])}")
    print(f"  setup: start -> Originate sent ms    {_pct(row['originate_ms'])}")
    print(f"  setup: Originate -> AudioSocket ms   {_pct(row['connect_ms'])}")
    print(f"  inbound forward p50 per call (ms)    {_pct(row['inbound_p50'])}")
    print(f"  inbound forward p99 per call (ms)    {_pct(row['inbound_p99'])}")
    print(f"  sender lateness p99 per call (ms)    {_pct(row['lateness_p99'])}")
    print(f"  sender lateness max per call (ms)    {_pct(row['lateness_max'])}")
    print(f"  sender interval err p99/call (ms)    {_pct(row['sender_err_p99'])}")
    print(f"  receiver interval error, pooled (ms) {_pct(row['receiver_err'])}")
    print(f"  barge-in reaction max/call (ms)      {_pct(row['barge_in'])}")
    print(f"  voice-to-voice p50 per call (ms)     {_pct(row['v2v_p50'])}")
    print(f"  underruns (all calls)                {row['underruns']}")


def main() -> None:
    """Run the parts asked for and print their figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--parts", default="floor,ramp,calls")
    parser.add_argument("--calls", default="1,10,20,50")
    parser.add_argument("--ramp", default="1,10,50")
    parser.add_argument("--ramp-concurrency", default="default,8,32")
    parser.add_argument("--frames-per-append", type=int, default=1)
    parser.add_argument("--ramp-child", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.ramp_child is not None:
        temp = start_ray()
        try:
            print(json.dumps(asyncio.run(ramp_child(args.ramp_child))))
        finally:
            stop_ray(temp)
        return
    parts = set(args.parts.split(","))
    print(f"CallActor figures on {os.cpu_count()} CPUs (DESIGN.md §8 floors in docs/benchmarks.md)")
    if "floor" in parts:
        print("\n== memory floor (PSS, MB)")
        for name, value in asyncio.run(floor_part()).items():
            print(f"  {name:34s} {value:6.1f}")
    if "ramp" in parts:
        print("\n== ramp: CallActors asked for together -> all ready (fresh Ray each)")
        concurrencies = [
            None if c == "default" else int(c) for c in args.ramp_concurrency.split(",")
        ]
        ramp_part([int(c) for c in args.ramp.split(",")], concurrencies)
    if "calls" in parts:
        asyncio.run(calls_part([int(c) for c in args.calls.split(",")], args.frames_per_append))


if __name__ == "__main__":
    main()
