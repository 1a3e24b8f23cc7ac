"""Rows and readers for the system-function tests (claim, leases, calls, analysis).

Tenants and tasks are written straight into the tables (bulk, through Core) so a test can set
any limit, window or status, and thousands of due tasks cost milliseconds.
"""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

import sqlalchemy as sa

from db.engine import Database
from db.models import Call, DncNumber, HitlRequest, Task, TaskEvent, Tenant
from db.states import CallStatus, EventKind, TaskStatus
from opendeep.settings import Settings

NOW = dt.datetime(2026, 3, 4, 12, 0, tzinfo=dt.UTC)
"""A Wednesday, noon UTC: inside a 09:00–20:00 Mon–Sat window in Europe/Paris and New York."""
ALL_DAY = (dt.time.min, dt.time.max, list(range(7)))


def settings(**values: Any) -> Settings:
    """Settings that ignore the machine's .env file (per-destination cap 3 by default)."""
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


async def add_tenant(
    db: Database,
    *,
    concurrent: int = 1000,
    rate: int = 100_000,
    quota: int = 1_000_000,
    exempt: bool = False,
) -> uuid.UUID:
    """A tenant with the given caps (generous by default) and an always-open default window."""
    tenant_id = uuid.uuid4()
    async with db.write() as session:
        session.add(
            Tenant(
                id=tenant_id,
                name=f"tenant-{tenant_id.hex[:8]}",
                allowed_countries=["*"],
                max_concurrent_calls=concurrent,
                dial_rate_per_minute=rate,
                daily_call_quota=quota,
                window_start=dt.time.min,
                window_end=dt.time.max,
                window_days=list(range(7)),
                destination_cap_exempt=exempt,
                created_at=NOW,
            )
        )
    return tenant_id


def task_values(tenant_id: uuid.UUID, **values: Any) -> dict[str, Any]:
    """Column values of a due PENDING task callable all day in UTC; ``values`` override."""
    start, end, days = values.pop("window", ALL_DAY)
    row: dict[str, Any] = {
        "id": uuid.uuid4(),
        "tenant_id": tenant_id,
        "title": "Move the appointment",
        "objective": "Move the dentist appointment to next week",
        "context": "",
        "phone": "+14155550100",
        "language": "en",
        "timezone": "UTC",
        "window_start": start,
        "window_end": end,
        "window_days": list(days),
        "retry_backoff": [300.0, 1800.0, 7200.0],
        "status": TaskStatus.PENDING,
        "max_attempts": 3,
        "current_attempt_count": 0,
        "total_calls": 0,
        "next_action_time": NOW - dt.timedelta(minutes=1),
        "collected_info": [],
        "created_at": NOW - dt.timedelta(hours=1),
        "updated_at": NOW - dt.timedelta(hours=1),
        "version": 1,
    }
    row.update(values)
    return row


async def add_tasks(db: Database, rows: list[dict[str, Any]]) -> list[uuid.UUID]:
    """Insert task rows (from :func:`task_values`) in one statement."""
    async with db.write() as session:
        await session.execute(sa.insert(Task), rows)
    return [row["id"] for row in rows]


async def add_task(db: Database, tenant_id: uuid.UUID, **values: Any) -> uuid.UUID:
    """One task (see :func:`task_values`)."""
    (task_id,) = await add_tasks(db, [task_values(tenant_id, **values)])
    return task_id


async def add_dnc(db: Database, tenant_id: uuid.UUID, phone: str) -> None:
    """Put a number on a tenant's DNC list."""
    async with db.write() as session:
        session.add(DncNumber(tenant_id=tenant_id, phone=phone, reason="asked", added_at=NOW))


async def add_past_call(
    db: Database,
    task_id: uuid.UUID,
    *,
    created_at: dt.datetime,
    status: CallStatus = CallStatus.NOT_ANSWERED,
) -> uuid.UUID:
    """A finished call of a task made at ``created_at`` (counts for the destination cap)."""
    async with db.write() as session:
        task = await session.get(Task, task_id)
        assert task is not None
        call = Call(
            id=uuid.uuid4(),
            task_id=task_id,
            tenant_id=task.tenant_id,
            destination=task.phone,
            attempt_number=1,
            status=status,
            created_at=created_at,
            transcript=[],
            tool_calls=[],
        )
        session.add(call)
    return call.id


async def task_row(db: Database, task_id: uuid.UUID) -> Task:
    """The task row as stored now."""
    async with db.read() as session:
        row = await session.get(Task, task_id)
        assert row is not None
        return row


async def call_row(db: Database, call_id: uuid.UUID) -> Call:
    """The call row as stored now."""
    async with db.read() as session:
        row = await session.get(Call, call_id)
        assert row is not None
        return row


async def question_row(db: Database, request_id: uuid.UUID) -> HitlRequest:
    """The HITL row as stored now."""
    async with db.read() as session:
        row = await session.get(HitlRequest, request_id)
        assert row is not None
        return row


async def events(db: Database, task_id: uuid.UUID) -> list[TaskEvent]:
    """A task's events, in order."""
    async with db.read() as session:
        rows = await session.scalars(
            sa.select(TaskEvent).where(TaskEvent.task_id == task_id).order_by(TaskEvent.id)
        )
        return list(rows)


async def kinds(db: Database, task_id: uuid.UUID) -> list[EventKind]:
    """The kinds of a task's events, in order."""
    return [e.kind for e in await events(db, task_id)]


async def statuses(db: Database, task_ids: list[uuid.UUID]) -> dict[uuid.UUID, TaskStatus]:
    """The status of each task."""
    async with db.read() as session:
        rows = await session.execute(sa.select(Task.id, Task.status).where(Task.id.in_(task_ids)))
        return dict(rows.all())
