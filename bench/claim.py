"""How long the scheduler's claim takes: a batch of 50 due tasks among 1k, 10k and 100k waiting.

Prints figures; never passes or fails on time (DESIGN.md §8). For each backend (SQLite file,
PostgreSQL 15 started like the tests start it) and each size, it bulk-loads that many waiting
tasks (PENDING / RETRY_SCHEDULED, spread over 20 tenants, mostly due later, one in 20 due now),
then times ``claim_due_tasks(limit=50)`` repeatedly; between two timed claims the claimed tasks
are put back (re-armed), so every run sees the same table. Two extra shapes at the largest size:
``backlog`` (every waiting task is due, e.g. after an outage) and ``capped`` (one tenant at its
concurrency cap owns most of the due tasks, the longest-due ones; the others' must still be
found).

    python bench/claim.py [--sizes 1000,10000,100000] [--reps 30] [--backends sqlite,postgres]
                          [--shapes steady,backlog,capped]
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sqlalchemy as sa

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from db.engine import Database, open_database
from db.migrate import upgrade
from db.models import Task, TaskEvent, Tenant
from db.repo.claim import claim_due_tasks
from db.states import TaskStatus
from opendeep.settings import Settings

NOW = dt.datetime(2026, 3, 4, 15, 0, tzinfo=dt.UTC)
TENANTS = 20
BATCH = 50
CHUNK = 5000


@dataclass(slots=True)
class Shape:
    """What one measured table looks like."""

    name: str
    waiting: int
    due: int
    capped_share: float = 0.0
    """Fraction of the due tasks owned by a tenant at its concurrency cap."""


@dataclass(slots=True)
class Figures:
    """Timings of one shape on one backend."""

    backend: str
    shape: Shape
    times_ms: list[float]
    claimed: list[int]

    def line(self) -> str:
        ordered = sorted(self.times_ms)
        p99 = ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))]
        return (
            f"{self.backend:<9} {self.shape.name:<8} {self.shape.waiting:>8,} "
            f"{self.shape.due:>8,} {statistics.median(ordered):>8.2f} {p99:>8.2f} "
            f"{ordered[-1]:>8.2f} {min(self.claimed):>5}-{max(self.claimed):<5}"
        )


def _tenant_rows() -> list[dict[str, Any]]:
    return [
        {
            "id": uuid.uuid4(),
            "name": f"bench-{i}",
            "allowed_countries": ["*"],
            "max_concurrent_calls": 1_000_000,
            "dial_rate_per_minute": 1_000_000_000,
            "daily_call_quota": 1_000_000_000,
            "window_start": dt.time.min,
            "window_end": dt.time.max,
            "window_days": list(range(7)),
            "destination_cap_exempt": False,
            "created_at": NOW,
            "webhook_url": None,
        }
        for i in range(TENANTS)
    ]


def _task_row(i: int, tenant: uuid.UUID, due: bool) -> dict[str, Any]:
    when = NOW - dt.timedelta(seconds=i) if due else NOW + dt.timedelta(minutes=1 + i % 10_000)
    return {
        "id": uuid.uuid4(),
        "tenant_id": tenant,
        "title": "Move the appointment",
        "objective": "Move the dentist appointment to next week",
        "context": "",
        "phone": f"+1415{i:07d}",
        "language": "en",
        # Half name their zone, half have it derived from the number (phonenumbers).
        "timezone": "America/New_York" if i % 2 else None,
        "window_start": dt.time(9),
        "window_end": dt.time(20),
        "window_days": [0, 1, 2, 3, 4, 5],
        "retry_backoff": [300.0, 1800.0, 7200.0],
        "status": TaskStatus.RETRY_SCHEDULED if i % 3 == 0 else TaskStatus.PENDING,
        "max_attempts": 3,
        "current_attempt_count": 0,
        "total_calls": 0,
        "next_action_time": when,
        "collected_info": [],
        "created_at": NOW - dt.timedelta(days=1),
        "updated_at": NOW - dt.timedelta(days=1),
        "version": 1,
    }


async def load(db: Database, shape: Shape) -> tuple[uuid.UUID, ...]:
    """Bulk-insert the tenants and ``shape.waiting`` tasks; the tenant ids."""
    tenants = _tenant_rows()
    tenant_ids = tuple(t["id"] for t in tenants)
    capped_due = int(shape.due * shape.capped_share)
    first_capped = shape.due - capped_due  # the capped tenant's due tasks are the oldest
    async with db.write() as session:
        await session.execute(sa.insert(Tenant), tenants)
    for start in range(0, shape.waiting, CHUNK):
        rows = []
        for i in range(start, min(start + CHUNK, shape.waiting)):
            due = i < shape.due
            capped = due and i >= first_capped
            tenant = tenant_ids[0] if capped else tenant_ids[1 + i % (TENANTS - 1)]
            rows.append(_task_row(i, tenant, due))
        async with db.write() as session:
            await session.execute(sa.insert(Task), rows)
    if capped_due:
        async with db.write() as session:
            await session.execute(
                sa.update(Tenant).where(Tenant.id == tenant_ids[0]).values(max_concurrent_calls=0)
            )
    async with db.engine.connect() as conn:
        await conn.execute(sa.text("ANALYZE"))
        await conn.commit()
    return tenant_ids


async def rearm(db: Database, task_ids: list[uuid.UUID]) -> None:
    """Put claimed tasks back (untimed), and drop their dial events so rates stay flat."""
    async with db.write() as session:
        await session.execute(
            sa.update(Task)
            .where(Task.id.in_(task_ids))
            .values(status=TaskStatus.PENDING, owner=None, lease_expires_at=None)
        )
        await session.execute(sa.delete(TaskEvent).where(TaskEvent.task_id.in_(task_ids)))


async def measure(url: str, backend: str, shape: Shape, reps: int) -> Figures:
    """Load one shape into the empty database at ``url`` and time ``reps`` claims."""
    await upgrade(url)
    db = open_database(url)
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    times: list[float] = []
    claimed: list[int] = []
    try:
        await load(db, shape)
        for rep in range(reps + 3):
            start = time.perf_counter()
            got = await claim_due_tasks(
                db,
                owner="bench",
                now=NOW,
                limit=BATCH,
                lease_seconds=60,
                global_max_active=1_000_000,
                settings=settings,
            )
            elapsed = (time.perf_counter() - start) * 1000
            if rep >= 3:  # the first few warm caches and prepared statements
                times.append(elapsed)
                claimed.append(len(got))
            await rearm(db, [c.task_id for c in got])
    finally:
        await db.close()
    return Figures(backend, shape, times, claimed)


def shapes(sizes: list[int]) -> list[Shape]:
    """The measured shapes: each size with 1 in 20 due, plus backlog and capped at the largest."""
    out = [Shape("steady", n, max(2 * BATCH, n // 20)) for n in sizes]
    largest = max(sizes)
    out.append(Shape("backlog", largest, largest))
    out.append(Shape("capped", largest, largest // 2, capped_share=0.98))
    return out


async def run_backend(
    backend: str, fresh_url: Callable[[str], str], todo: list[Shape], reps: int
) -> list[Figures]:
    results = []
    for n, shape in enumerate(todo):
        figures = await measure(fresh_url(f"bench_{n}"), backend, shape, reps)
        print(figures.line(), flush=True)
        results.append(figures)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1000,10000,100000")
    parser.add_argument("--reps", type=int, default=30)
    parser.add_argument("--backends", default="sqlite,postgres")
    parser.add_argument("--shapes", default="steady,backlog,capped")
    args = parser.parse_args()
    wanted = args.shapes.split(",")
    todo = [s for s in shapes([int(n) for n in args.sizes.split(",")]) if s.name in wanted]
    backends = args.backends.split(",")
    print(f"claim_due_tasks(limit={BATCH}), {args.reps} timed runs each, times in ms")
    print(
        f"{'backend':<9} {'shape':<8} {'waiting':>8} {'due':>8} {'p50':>8} {'p99':>8} "
        f"{'max':>8} {'claimed':>11}"
    )
    if "sqlite" in backends:
        with tempfile.TemporaryDirectory(prefix="opendeep-bench-") as tmp:

            def sqlite_url(name: str) -> str:
                return f"sqlite+aiosqlite:///{tmp}/{name}.db"

            asyncio.run(run_backend("sqlite", sqlite_url, todo, args.reps))
    if "postgres" in backends:
        from tests.pg import start_postgres  # noqa: PLC0415 -- only when PostgreSQL is asked for

        server = start_postgres()
        try:

            def pg_url(name: str) -> str:
                server.psql(f"CREATE DATABASE {name}")
                return server.url(name)

            asyncio.run(run_backend("postgres", pg_url, todo, args.reps))
        finally:
            server.stop()


if __name__ == "__main__":
    main()
