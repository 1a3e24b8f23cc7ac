"""Figures of the task lifecycle (issue 5, DESIGN.md §8): scheduling latency, HITL, throughput.

Prints, never asserts. Everything real but the far ends: local Ray, a Supervisor, TaskActors,
CallActors, the PbxGateway, the simulated PBX and the Realtime stand-in (in this process), a
SQLite database (or ``--database URL``) holding 1k waiting tasks (due tomorrow) besides the
measured ones. Three parts:

- ``due``: a task becomes due (created due now) → the simulated PBX receives its Originate;
  sequentially (an idle system, one task at a time), once by the Supervisor's own tick
  (``OPENDEEP_SCHEDULER_TICK``, default 1 s) and once with ``wake()`` (what the API does);
  then a burst of 20 due at once (the actor start-up ramp);
- ``hitl``: an answer committed (``answer_question`` returned, 0–0.5 s after the question
  appeared) → the answer's text item reaches the Realtime stand-in, for answers followed by
  ``nudge()`` and for polling alone (the TaskActor looks at an open question every 100 ms);
- ``throughput``: tasks pushed through their whole life at once (busy numbers, one attempt:
  PENDING → IN_PROGRESS → ANALYZING → FAILED, three transitions each), and the Supervisor's
  own loop with hand-overs stubbed out (claims per second it sustains).

    python bench/task_lifecycle.py [--parts due,hitl,throughput] [--samples 15] [--database URL]
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import os
import random
import shutil
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import ray
from pydantic import SecretStr

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from actors.options import pbx_gateway_options, supervisor_options, task_actor_name  # noqa: E402
from actors.pbx import PbxGatewayActor  # noqa: E402
from actors.supervisor import Supervisor, SupervisorRemote  # noqa: E402
from ai.sim.world import SimulatedWorld  # noqa: E402
from asterisk.sim.scenarios import World  # noqa: E402
from db.engine import Database, open_database  # noqa: E402
from db.migrate import upgrade  # noqa: E402
from db.repo import accounts, hitl, tasks  # noqa: E402
from db.states import HitlStatus, TaskStatus  # noqa: E402
from opendeep.settings import Settings  # noqa: E402

BUSY = "+14155550301"
ASKS = "+14155550302"
WAITING = 1000
QUESTIONS = 40
END = {"name": "end_call", "arguments": {"reason": "completed"}}


def _asking_world(questions: int) -> dict[str, Any]:
    """A callee who asks ``questions`` times for a number; the agent asks its creator each time."""
    script: list[dict[str, Any]] = [{"say": "Hello?"}, {"listen": 20.0}]
    turns: list[dict[str, Any]] = [{"say": "Hi, AI for Acme."}]
    for k in range(2, questions + 2):
        script += [{"say": "Number?"}, {"listen": 60.0}]
        ask = {"question": f"Number {k}?", "timeout_seconds": 120, "recipient_message": "Wait."}
        turns.append({"callee": k, "tool": {"name": "request_user_info", "arguments": ask}})
    script += [{"say": "Bye."}, {"hangup": True}]
    turns += [
        {"tool_output": "request_user_info", "say": "{recipient_message}", "repeat": True},
        {"text": ':\\s*["“](?P<answer>[^"”]+)["”]', "say": "It is {answer}.", "repeat": True},
    ]
    return {
        "number": ASKS,
        "name": "asks",
        "callee": {"ring": 0.1, "script": script},
        "agent": {"greeting": None, "turns": turns},
    }


WORLD = World.model_validate(
    {
        "pbx": {"silence_hangup": 2.0, "context_rate": 24000, "connect_timeout": 1.0},
        "scenario": [
            {"number": BUSY, "name": "busy", "callee": {"behavior": "busy", "ring": 0}},
            _asking_world(QUESTIONS),
        ],
    }
)


def pct(values: list[float], q: float) -> float:
    """The q-quantile (nearest rank) of ``values``."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


def line(label: str, values: list[float], unit: str = "ms") -> str:
    """``label  n  p50  p99  max`` for a list of samples."""
    if not values:
        return f"{label:<58} (no samples)"
    return (
        f"{label:<58} n={len(values):<3} p50 {pct(values, 0.5):8.1f}  p99 {pct(values, 0.99):8.1f}"
        f"  max {max(values):8.1f} {unit}"
    )


class Bench:
    """The running system the parts measure."""

    def __init__(self, args: argparse.Namespace, tmp: Path) -> None:
        self.args = args
        self.tmp = tmp
        self.namespace = f"bench-{uuid.uuid4().hex[:8]}"
        self.sim = SimulatedWorld(
            host="127.0.0.1",
            ami_port=0,
            realtime_port=0,
            username="opendeep",
            secret="bench-secret",
            world=WORLD,
            speech_cache=Path("/tmp/opendeep-e2e-speech"),
        )
        self.url = args.database or f"sqlite+aiosqlite:///{tmp / 'bench.db'}"
        self.db: Database | None = None
        self.settings: Settings | None = None
        self.tenant_id: uuid.UUID | None = None
        self.supervisor: Any = None

    async def start(self) -> None:
        """World, database (1k waiting tasks), gateway and Supervisor."""
        await self.sim.start()
        await upgrade(self.url)
        self.settings = Settings(  # type: ignore[call-arg]
            _env_file=None,
            database_url=self.url,
            ami_host="127.0.0.1",
            ami_port=self.sim.pbx.ami_port,
            ami_user="opendeep",
            ami_secret="bench-secret",
            realtime_base_url=self.sim.realtime_url,
            var_dir=self.tmp / "var",
            ring_timeout=2.0,
            connect_timeout=2.0,
            hitl_timeout_min=1.0,
            hitl_timeout_default=60.0,
            hitl_timeout_max=120.0,
            destination_daily_cap=0,
            analysis="rules",
            scheduler_tick=self.args.tick,
            log_level="WARNING",
        )
        self.db = open_database(self.url, pool_size=2)
        tenant = await accounts.create_tenant(
            self.db,
            name="Bench",
            allowed_countries=None,
            max_concurrent_calls=100,
            dial_rate_per_minute=10_000,
            daily_call_quota=100_000,
            window=(dt.time.min, dt.time.max, tuple(range(7))),
            destination_cap_exempt=True,
            settings=self.settings,
        )
        self.tenant_id = tenant.id
        tomorrow = dt.datetime.now(dt.UTC) + dt.timedelta(days=1)
        for _ in range(WAITING):
            await self.add(BUSY, at=tomorrow)
        gateway = PbxGatewayActor.options(**pbx_gateway_options(self.namespace)).remote(
            self.settings, self.namespace
        )
        assert await gateway.ping.remote()
        self.supervisor = SupervisorRemote.options(**supervisor_options(self.namespace)).remote(
            self.settings, self.namespace
        )
        await self.supervisor.start.remote()

    async def add(self, number: str, **values: Any) -> uuid.UUID:
        """A new task (one attempt) calling ``number``."""
        assert self.db is not None and self.settings is not None and self.tenant_id is not None
        view = await tasks.create_task(
            self.db,
            self.tenant_id,
            objective="Benchmark the lifecycle.",
            phone=number,
            max_attempts=1,
            settings=self.settings,
            **values,
        )
        return view.id

    async def stop(self) -> None:
        """Kill the namespace's actors; stop the world."""
        names = await asyncio.to_thread(ray.util.list_named_actors, all_namespaces=True)
        for entry in names:
            if entry["namespace"] == self.namespace:
                try:
                    handle = ray.get_actor(entry["name"], namespace=self.namespace)
                    ray.kill(handle)
                except (ValueError, ray.exceptions.RayError):
                    pass
        if self.db is not None:
            await self.db.close()
        await self.sim.stop()

    async def status_of(self, task_id: uuid.UUID) -> TaskStatus:
        assert self.db is not None and self.tenant_id is not None
        return (await tasks.get_task(self.db, self.tenant_id, task_id)).task.status

    async def originated_after(self, task_id: uuid.UUID, since: float, within: float = 60) -> float:
        """ms from ``since`` (loop time) to the PBX receiving the task's Originate."""
        assert self.db is not None and self.tenant_id is not None
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within
        while loop.time() < deadline:
            detail = await tasks.get_task(self.db, self.tenant_id, task_id)
            for call in detail.calls:
                record = self.sim.pbx.calls.get(str(call.id))
                if record is not None:
                    return (record.originated_at - since) * 1000
            await asyncio.sleep(0.01)
        raise TimeoutError(f"task {task_id} was not dialed within {within} s")

    async def settle(self, ids: list[uuid.UUID], within: float = 120) -> None:
        """Wait until none of ``ids`` is active any more."""
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            states = [await self.status_of(i) for i in ids]
            if all(
                s not in (TaskStatus.PENDING, TaskStatus.IN_PROGRESS, TaskStatus.ANALYZING)
                for s in states
            ):
                return
            await asyncio.sleep(0.1)


async def part_due(bench: Bench, samples: int) -> list[str]:
    out = []
    loop = asyncio.get_running_loop()
    for wake in (False, True):
        values = []
        for _ in range(samples):
            start = loop.time()
            task_id = await bench.add(BUSY)
            if wake:
                bench.supervisor.wake.remote()
            values.append(await bench.originated_after(task_id, start))
            await bench.settle([task_id])
        how = "wake()" if wake else f"tick {bench.args.tick:g} s, no wake"
        out.append(line(f"due → Originate, one at a time ({how})", values))
    start = loop.time()
    burst = [await bench.add(BUSY) for _ in range(20)]
    bench.supervisor.wake.remote()
    values = [await bench.originated_after(t, start, within=180) for t in burst]
    out.append(line("due → Originate, 20 due at once (wake)", values))
    await bench.settle(burst, within=180)
    return out


async def part_hitl(bench: Bench, samples: int) -> list[str]:
    assert bench.db is not None and bench.tenant_id is not None
    out = []
    for nudge in (True, False):
        task_id = await bench.add(ASKS)
        bench.supervisor.wake.remote()
        actor = None
        values: list[float] = []
        while len(values) < samples:
            question = await _pending_question(bench, task_id)
            if actor is None:
                actor = ray.get_actor(task_actor_name(task_id), namespace=bench.namespace)
            answer = f"A{len(values)}-{uuid.uuid4().hex[:6]}"
            # A person answers at no particular moment: don't answer in step with the polls.
            await asyncio.sleep(random.uniform(0.0, 0.5))
            await hitl.answer_question(
                bench.db, bench.tenant_id, question, answer, answered_by="bench"
            )
            start = asyncio.get_running_loop().time()
            if nudge:
                actor.nudge.remote()
            values.append(await _injected(bench, task_id, answer, start))
        label = "with nudge()" if nudge else "polling alone (100 ms)"
        out.append(line(f"HITL answer committed → in the live call ({label})", values))
        await tasks.request_cancel(bench.db, bench.tenant_id, task_id, by="bench")
        actor.nudge.remote()
        await bench.settle([task_id], within=60)
    return out


async def _pending_question(bench: Bench, task_id: uuid.UUID) -> uuid.UUID:
    assert bench.db is not None and bench.tenant_id is not None
    while True:
        for q in await hitl.list_open_questions(bench.db, bench.tenant_id):
            if q.task_id == task_id and q.status is HitlStatus.PENDING:
                return q.id
        await asyncio.sleep(0.005)


async def _injected(bench: Bench, task_id: uuid.UUID, answer: str, start: float) -> float:
    """ms from ``start`` until the stand-in holds a text item carrying ``answer``."""
    loop = asyncio.get_running_loop()
    while loop.time() - start < 30:
        for session in bench.sim.realtime.sessions:
            if any(answer in item.text for item in session.texts):
                return (loop.time() - start) * 1000
        await asyncio.sleep(0.001)
    raise TimeoutError("the answer never reached the call")


async def part_throughput(bench: Bench, count: int) -> list[str]:
    loop = asyncio.get_running_loop()
    start = loop.time()
    ids = [await bench.add(BUSY) for _ in range(count)]
    bench.supervisor.wake.remote()
    await bench.settle(ids, within=600)
    took = loop.time() - start
    out = [
        f"{count} tasks through their whole life at once: {took:.1f} s → "
        f"{count / took:.2f} tasks/s, {3 * count / took:.2f} transitions/s "
        "(end to end, actor start-up bound)"
    ]
    out.append(await _supervisor_only(bench))
    return out


async def _supervisor_only(bench: Bench) -> str:
    """The Supervisor's loop in this process, hand-overs stubbed: claims per second.

    On a database of its own (2,000 due tasks of an uncapped tenant besides the 1k waiting),
    so the claimed tasks never reach the running system's sweep.
    """
    assert bench.settings is not None
    url = f"sqlite+aiosqlite:///{bench.tmp / 'claims.db'}"
    if not bench.url.startswith("sqlite"):
        return "Supervisor loop alone: measured on SQLite only"
    await upgrade(url)
    settings = bench.settings.model_copy(
        update={"database_url": SecretStr(url), "max_concurrent_calls": 1_000_000}
    )
    db = open_database(url, pool_size=2)
    tenant = await accounts.create_tenant(
        db,
        name="Bulk",
        allowed_countries=None,
        max_concurrent_calls=1_000_000,
        dial_rate_per_minute=1_000_000,
        daily_call_quota=1_000_000,
        window=(dt.time.min, dt.time.max, tuple(range(7))),
        destination_cap_exempt=True,
        settings=settings,
    )
    tomorrow = dt.datetime.now(dt.UTC) + dt.timedelta(days=1)
    count = 2000
    for n in range(WAITING + count):
        at = tomorrow if n < WAITING else None
        await tasks.create_task(
            db, tenant.id, objective="Claim me.", phone=BUSY, at=at, settings=settings
        )
    await db.close()
    sup = Supervisor(settings, "bench-local", home="bench-local@bench")
    await sup.close()  # stop the loop __init__ started: the ticks are driven by hand below
    sup._hand_over = lambda task_id: None  # type: ignore[method-assign]  # count claims only
    start = time.perf_counter()
    ticks = 0
    while sup._figures["claimed"] < count:
        await sup.tick()
        ticks += 1
    took = time.perf_counter() - start
    await sup.close()
    return (
        f"Supervisor loop alone (hand-over stubbed, SQLite, {WAITING} waiting): {count} claims "
        f"in {ticks} ticks, {took:.2f} s → {count / took:.0f} PENDING→IN_PROGRESS/s"
    )


async def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--parts", default="due,hitl,throughput")
    parser.add_argument("--samples", type=int, default=15)
    parser.add_argument("--tick", type=float, default=1.0)
    parser.add_argument("--throughput", type=int, default=30)
    parser.add_argument("--database", default=None)
    args = parser.parse_args()
    parts = set(args.parts.split(","))
    tmp = Path(tempfile.mkdtemp(prefix="odb", dir="/tmp"))
    os.environ.setdefault("RAY_worker_maximum_startup_concurrency", "4")
    ray.init(
        address="local",
        num_cpus=2,
        resources={"call_slot": 200},
        include_dashboard=False,
        _temp_dir=str(tmp / "ray"),
        log_to_driver=False,
    )
    bench = Bench(args, tmp)
    lines: list[str] = []
    try:
        await bench.start()
        print(
            f"# task lifecycle on {os.cpu_count()} CPUs, {WAITING} waiting tasks, "
            f"{bench.url.split(':')[0]}"
        )
        if "due" in parts:
            lines += await part_due(bench, args.samples)
        if "hitl" in parts:
            lines += await part_hitl(bench, max(args.samples, 20))
        if "throughput" in parts:
            lines += await part_throughput(bench, args.throughput)
    finally:
        for text in lines:
            print(text)
        await bench.stop()
        ray.shutdown()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    asyncio.run(main())
