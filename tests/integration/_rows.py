"""Rows the user-facing repository cannot reach by itself (an IN_PROGRESS task, a TIMED_OUT
question), inserted straight through the ORM, plus small readers for the repository tests."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

import sqlalchemy as sa

from db.engine import Database
from db.models import Call, HitlRequest, Task, TaskEvent, Tenant
from db.repo import accounts
from db.shapes import utcnow
from db.states import CallStatus, HitlStatus, TaskStatus
from opendeep.settings import Settings

WEEKDAYS = (0, 1, 2, 3, 4)


def settings(**values: Any) -> Settings:
    """Settings that ignore the machine's .env file."""
    return Settings(_env_file=None, **values)


async def tenant(
    db: Database,
    name: str,
    *,
    countries: list[str] | None = None,
    window: tuple[dt.time, dt.time, tuple[int, ...]] = (dt.time.min, dt.time.max, tuple(range(7))),
) -> accounts.TenantView:
    """A tenant calling US and FR numbers (by default) at any hour."""
    return await accounts.create_tenant(
        db,
        name=name,
        allowed_countries=countries if countries is not None else ["US", "FR"],
        window=window,
        settings=settings(),
    )


async def insert_task(
    db: Database, tenant_id: uuid.UUID, status: TaskStatus, **values: Any
) -> uuid.UUID:
    """A task row in any status, written directly."""
    now = utcnow()
    row = Task(
        id=uuid.uuid4(),
        tenant_id=tenant_id,
        title=values.pop("title", f"a {status.value.lower()} task"),
        objective="Ask about the order",
        context="",
        phone=values.pop("phone", "+14155550100"),
        language="en",
        window_start=dt.time.min,
        window_end=dt.time.max,
        window_days=list(range(7)),
        retry_backoff=[300.0],
        status=status,
        max_attempts=3,
        current_attempt_count=0,
        total_calls=0,
        next_action_time=values.pop("next_action_time", now),
        collected_info=[],
        created_at=now,
        updated_at=now,
        **values,
    )
    async with db.write() as session:
        session.add(row)
    return row.id


async def insert_call(db: Database, task_id: uuid.UUID, **fields: Any) -> uuid.UUID:
    """An answered call of a task; ``fields`` override any column."""
    async with db.write() as session:
        task = await session.get(Task, task_id)
        assert task is not None
        values: dict[str, Any] = {
            "id": uuid.uuid4(),
            "task_id": task_id,
            "tenant_id": task.tenant_id,
            "destination": task.phone,
            "attempt_number": 1,
            "status": CallStatus.ANSWERED,
            "created_at": utcnow(),
            "transcript": [{"speaker": "agent", "text": "Hello", "start_ms": 0, "end_ms": 500}],
            "tool_calls": [],
        }
        call = Call(**(values | fields))
        session.add(call)
    return call.id


async def insert_question(
    db: Database,
    task_id: uuid.UUID,
    status: HitlStatus = HitlStatus.PENDING,
    *,
    call_id: uuid.UUID | None = None,
    question: str = "What is the order number?",
) -> uuid.UUID:
    """A HITL row of a task in any status."""
    async with db.write() as session:
        task = await session.get(Task, task_id)
        assert task is not None
        row = HitlRequest(
            id=uuid.uuid4(),
            task_id=task_id,
            tenant_id=task.tenant_id,
            call_id=call_id,
            question=question,
            recipient_message="One moment please",
            timeout_seconds=10.0,
            status=status,
            asked_at=utcnow(),
        )
        session.add(row)
    return row.id


async def task_row(db: Database, task_id: uuid.UUID) -> Task:
    """The task row as stored now."""
    async with db.read() as session:
        row = await session.get(Task, task_id)
        assert row is not None
        return row


async def question_row(db: Database, request_id: uuid.UUID) -> HitlRequest:
    """The HITL row as stored now."""
    async with db.read() as session:
        row = await session.get(HitlRequest, request_id)
        assert row is not None
        return row


async def counts(db: Database) -> tuple[int, int]:
    """(tasks, task_events) row counts."""
    async with db.read() as session:
        tasks = await session.scalar(sa.select(sa.func.count()).select_from(Task))
        events = await session.scalar(sa.select(sa.func.count()).select_from(TaskEvent))
        return int(tasks or 0), int(events or 0)


async def event_kinds(db: Database, task_id: uuid.UUID) -> list[str]:
    """The kinds of a task's events, in order."""
    async with db.read() as session:
        rows = await session.scalars(
            sa.select(TaskEvent.kind).where(TaskEvent.task_id == task_id).order_by(TaskEvent.id)
        )
        return [str(k) for k in rows]


async def snapshot(db: Database, tenant_id: uuid.UUID) -> list[tuple[Any, ...]]:
    """Every row a tenant owns that a user could change, to compare before and after."""
    async with db.read() as session:
        tasks = await session.execute(
            sa.select(Task.id, Task.status, Task.version, Task.cancel_requested_at)
            .where(Task.tenant_id == tenant_id)
            .order_by(Task.id)
        )
        questions = await session.execute(
            sa.select(HitlRequest.id, HitlRequest.status, HitlRequest.version)
            .where(HitlRequest.tenant_id == tenant_id)
            .order_by(HitlRequest.id)
        )
        events = await session.scalar(
            sa.select(sa.func.count())
            .select_from(TaskEvent)
            .where(TaskEvent.tenant_id == tenant_id)
        )
        tenants = await session.scalar(sa.select(Tenant.version).where(Tenant.id == tenant_id))
        return [*map(tuple, tasks), *map(tuple, questions), (events, tenants)]
