"""Reads of the web page's dashboard and questions box, scoped to one tenant.

Each is one cheap read: the page ticks every second or faster, so the tick itself asks only
:func:`change_marks` and re-reads the rest when a mark moved.
"""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass
from typing import Final

import sqlalchemy as sa

from db.engine import Database
from db.models import Call, Task, TaskEvent
from db.repo.snapshots import LIVE_CALL_STATUSES
from db.repo.views import CallView
from db.states import TaskStatus

__all__ = ["LIVE_LIMIT", "LiveCallView", "LiveMark", "change_marks", "live_calls", "task_states"]

LIVE_LIMIT: Final = 20  # live calls shown at once (a tenant's concurrency cap is 5 by default)

LiveMark = tuple[tuple[str, str, int], ...]
"""(call id, status, last applied message seq) of each live call."""


@dataclass(frozen=True, slots=True)
class LiveCallView:
    """A call in progress with its task's title and number."""

    call: CallView
    task_id: uuid.UUID
    task_title: str
    phone: str


async def change_marks(db: Database, tenant_id: uuid.UUID) -> tuple[int, LiveMark]:
    """The tenant's newest event id, and each live call's status and ``last_seq``, in one read.

    A new event or a grown transcript moves one of them: the page re-renders only then.
    """
    async with db.read() as session:
        last_event = await session.scalar(
            sa.select(sa.func.max(TaskEvent.id)).where(TaskEvent.tenant_id == tenant_id)
        )
        rows = await session.execute(
            sa.select(Call.id, Call.status, Call.last_seq)
            .where(Call.tenant_id == tenant_id, Call.status.in_(LIVE_CALL_STATUSES))
            .order_by(Call.created_at, Call.id)
            .limit(LIVE_LIMIT)
        )
        return int(last_event or 0), tuple((str(i), str(s), int(n)) for i, s, n in rows)


async def live_calls(db: Database, tenant_id: uuid.UUID) -> list[LiveCallView]:
    """The tenant's calls in progress with their transcripts so far, oldest first."""
    async with db.read() as session:
        rows = await session.execute(
            sa.select(Call, Task.title, Task.phone)
            .join(Task, Task.id == Call.task_id)
            .where(
                Call.tenant_id == tenant_id,
                Task.tenant_id == tenant_id,
                Call.status.in_(LIVE_CALL_STATUSES),
            )
            .order_by(Call.created_at, Call.id)
            .limit(LIVE_LIMIT)
        )
        return [
            LiveCallView(CallView.of(call), call.task_id, title, phone)
            for call, title, phone in rows
        ]


async def task_states(
    db: Database, tenant_id: uuid.UUID, task_ids: set[uuid.UUID]
) -> dict[uuid.UUID, tuple[TaskStatus, dt.datetime | None]]:
    """Status and next action time of some of the tenant's tasks (others' ids are absent)."""
    if not task_ids:
        return {}
    async with db.read() as session:
        rows = await session.execute(
            sa.select(Task.id, Task.status, Task.next_action_time).where(
                Task.tenant_id == tenant_id, Task.id.in_(task_ids)
            )
        )
        return {i: (s, n) for i, s, n in rows}
