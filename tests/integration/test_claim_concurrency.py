"""Eight schedulers in eight OS processes claim 1,000 due tasks at once: none is claimed twice.

Each claimer is a separate Python process with its own engine (what two supervisors, or two
Ray clusters sharing one database, look like), started together on a shared deadline.
"""

from __future__ import annotations

import collections
import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
import sqlalchemy as sa

from db.engine import Database
from db.models import TaskEvent
from db.states import EventKind, TaskStatus
from tests.integration._system_rows import NOW, add_tasks, add_tenant, statuses, task_values

pytestmark = pytest.mark.integration

CLAIMERS = 8
TASKS = 1000
BATCH = 7
ROOT = Path(__file__).resolve().parents[2]

WORKER = """
import asyncio, datetime as dt, json, sys, time
from db.engine import open_database
from db.repo.claim import claim_due_tasks
from opendeep.settings import Settings

async def main(url, owner, start_at, now, batch):
    db = open_database(url, pool_size=1)
    settings = Settings(_env_file=None, destination_daily_cap=0)
    claimed = []
    await asyncio.sleep(max(0.0, start_at - time.time()))
    try:
        while True:
            got = await claim_due_tasks(
                db, owner=owner, now=now, limit=batch, lease_seconds=60,
                global_max_active=10**6, settings=settings,
            )
            if not got:
                break
            claimed.extend(str(c.task_id) for c in got)
    finally:
        await db.close()
    print(json.dumps(claimed))

url, owner, start_at, now, batch = sys.argv[1:6]
asyncio.run(main(url, owner, float(start_at), dt.datetime.fromisoformat(now), int(batch)))
"""


def run_claimers(url: str) -> dict[str, list[str]]:
    """Start the claimers together; what each one claimed, by owner."""
    start_at = time.time() + 4.0  # after every interpreter has imported SQLAlchemy
    args = [str(start_at), NOW.isoformat(), str(BATCH)]
    procs = {
        f"claimer-{i}": subprocess.Popen(
            [sys.executable, "-c", WORKER, url, f"claimer-{i}", *args],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(CLAIMERS)
    }
    claimed: dict[str, list[str]] = {}
    for owner, proc in procs.items():
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, f"{owner} failed:\n{err}"
        claimed[owner] = json.loads(out.strip().splitlines()[-1])
    return claimed


async def test_eight_process_claimers_never_claim_a_task_twice(database: Database) -> None:
    tenant = await add_tenant(database)
    rows = [task_values(tenant, phone=f"+1415555{i:04d}") for i in range(TASKS)]
    task_ids = await add_tasks(database, rows)

    claimed = run_claimers(database.url)

    every_claim = [task for tasks in claimed.values() for task in tasks]
    assert len(every_claim) == len(set(every_claim)), "a task was claimed twice"
    assert set(every_claim) == {str(t) for t in task_ids}
    assert sum(1 for tasks in claimed.values() if tasks) >= 2, "the claimers did not overlap"
    assert set((await statuses(database, task_ids)).values()) == {TaskStatus.IN_PROGRESS}
    async with database.read() as session:
        rows_ = await session.execute(
            sa.select(TaskEvent.task_id, TaskEvent.data).where(
                TaskEvent.kind == EventKind.DIAL_STARTED
            )
        )
        dial_events = list(rows_)
    per_task = collections.Counter(str(task_id) for task_id, _ in dial_events)
    assert len(per_task) == TASKS
    assert set(per_task.values()) == {1}
    owner_of = {task: owner for owner, tasks in claimed.items() for task in tasks}
    assert all(data["owner"] == owner_of[str(task_id)] for task_id, data in dial_events)
