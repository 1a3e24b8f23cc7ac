"""What every repository module shares: errors, the guarded update, the event writer.

Every update checks and bumps ``version``; every status change writes its ``task_events``
row in the same transaction (DESIGN.md §2, §3).
"""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from db.models import Base, Task, TaskEvent
from db.shapes import utcnow
from db.states import EventKind, TaskStatus, transition_task


class RepoError(Exception):
    """Base of the repository's own errors; the message is meant for a person."""


class NotFoundError(RepoError, LookupError):
    """No such row for this tenant (also what another tenant's ids look like)."""


class ConflictError(RepoError):
    """The request does not fit the row's current state (e.g. cancelling a finished task)."""


class StaleVersionError(ConflictError):
    """Someone else changed the row first; re-read and re-decide."""


class InvalidInputError(RepoError, ValueError):
    """Input refused before anything was written."""


_M = TypeVar("_M", bound=Base)


async def guarded_update(
    session: AsyncSession, model: type[_M], row_id: Any, expected_version: int, **values: Any
) -> None:
    """UPDATE one row only if its version is still ``expected_version``; bump the version.

    Raises StaleVersionError when the row changed (or vanished) meanwhile.
    """
    table = model.__table__
    assert isinstance(table, sa.Table)
    result = await session.execute(
        sa.update(table)
        .where(table.c.id == row_id, table.c.version == expected_version)
        .values(version=expected_version + 1, **values)
    )
    if result.rowcount != 1:  # type: ignore[attr-defined]
        raise StaleVersionError(f"{table.name} {row_id} changed meanwhile; re-read it")


async def append_event(
    session: AsyncSession,
    *,
    task_id: uuid.UUID,
    tenant_id: uuid.UUID,
    kind: EventKind,
    message: str,
    data: dict[str, Any] | None = None,
    call_id: uuid.UUID | None = None,
    at: dt.datetime | None = None,
) -> TaskEvent:
    """Add one audit-trail row to the current transaction."""
    event = TaskEvent(
        task_id=task_id,
        tenant_id=tenant_id,
        call_id=call_id,
        at=at or utcnow(),
        kind=kind,
        message=message,
        data=data or {},
    )
    session.add(event)
    await session.flush()
    return event


async def move_task(
    session: AsyncSession,
    task: Task,
    target: TaskStatus,
    *,
    event: EventKind,
    message: str,
    data: dict[str, Any] | None = None,
    call_id: uuid.UUID | None = None,
    now: dt.datetime | None = None,
    **changes: Any,
) -> None:
    """Move ``task`` to ``target`` (checked against the transition table) with its event.

    The UPDATE is guarded by the version ``task`` was read with; ``changes`` are further
    columns to set in the same statement. ``task`` is updated in place.
    """
    transition_task(task.status, target)
    now = now or utcnow()
    values = {"status": target, "updated_at": now, **changes}
    await guarded_update(session, Task, task.id, task.version, **values)
    for key, value in values.items():
        set_committed(task, key, value)
    set_committed(task, "version", task.version + 1)
    await append_event(
        session,
        task_id=task.id,
        tenant_id=task.tenant_id,
        kind=event,
        message=message,
        data=data,
        call_id=call_id,
        at=now,
    )


def set_committed(row: Base, key: str, value: Any) -> None:
    """Set an attribute without marking it dirty (the UPDATE already wrote it)."""
    sa.orm.attributes.set_committed_value(row, key, value)


async def update_row(session: AsyncSession, row: Base, **values: Any) -> None:
    """Guarded UPDATE of an ORM ``row`` by the version it was read with; refresh it in place."""
    version: int = getattr(row, "version")  # noqa: B009 -- Base has no version; Versioned rows do
    await guarded_update(session, type(row), getattr(row, "id"), version, **values)  # noqa: B009
    for key, value in values.items():
        set_committed(row, key, value)
    set_committed(row, "version", version + 1)
