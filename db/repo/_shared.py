"""Helpers the user-facing repository modules share: tenant-scoped loads, the guarded HITL
move, a task's calling window, and the retry loop for stale versions.

Tenant scoping: every load filters on ``tenant_id`` in SQL, so another tenant's id finds no
row and raises exactly the NotFoundError a missing id raises (same message, no hint that the
row exists).
"""

from __future__ import annotations

import datetime as dt
import uuid
import zoneinfo
from collections.abc import Awaitable, Callable
from typing import Any, Final, TypeVar

import phonenumbers
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from db.engine import Database
from db.models import HitlRequest, Task
from db.repo._core import ConflictError, NotFoundError, StaleVersionError, set_committed
from db.states import HitlStatus, transition_hitl
from db.windows import CallingWindow, resolve_zones

STALE_RETRIES: Final = 5
"""How often a unit of work re-reads and re-decides after losing a version race."""

_T = TypeVar("_T")


async def load_task(session: AsyncSession, tenant_id: uuid.UUID, task_id: uuid.UUID) -> Task:
    """The tenant's task ``task_id``; NotFoundError when missing or another tenant's."""
    row = await session.scalar(
        sa.select(Task).where(Task.id == task_id, Task.tenant_id == tenant_id)
    )
    if row is None:
        raise NotFoundError(f"no task {task_id}")
    return row


async def load_question(
    session: AsyncSession, tenant_id: uuid.UUID, request_id: uuid.UUID
) -> HitlRequest:
    """The tenant's HITL request ``request_id``; NotFoundError when missing or not theirs."""
    row = await session.scalar(
        sa.select(HitlRequest).where(
            HitlRequest.id == request_id, HitlRequest.tenant_id == tenant_id
        )
    )
    if row is None:
        raise NotFoundError(f"no question {request_id}")
    return row


async def move_question(
    session: AsyncSession, row: HitlRequest, target: HitlStatus, **changes: Any
) -> None:
    """Move a HITL row to ``target``: ``UPDATE … WHERE status = <read> AND version = <read>``.

    Of two writers racing on one row (an answer and a timeout), exactly one matches; the
    other gets StaleVersionError and re-reads. ``row`` is updated in place.
    """
    transition_hitl(row.status, target)
    table = HitlRequest.__table__
    assert isinstance(table, sa.Table)
    result = await session.execute(
        sa.update(table)
        .where(
            table.c.id == row.id,
            table.c.status == row.status,
            table.c.version == row.version,
        )
        .values(status=target, version=row.version + 1, **changes)
    )
    if result.rowcount != 1:  # type: ignore[attr-defined]
        raise StaleVersionError(f"question {row.id} changed meanwhile; re-read it")
    for key, value in {"status": target, "version": row.version + 1, **changes}.items():
        set_committed(row, key, value)


def task_window(task: Task) -> CallingWindow:
    """The calling window of a task row, in its callee's zone(s)."""
    return CallingWindow(
        start=task.window_start,
        end=task.window_end,
        days=frozenset(task.window_days),
        zones=resolve_zones(task.timezone, task.phone),
    )


def pretty_phone(e164: str) -> str:
    """``+14155550100`` as ``+1 415 555 0100`` for messages people read."""
    try:
        number = phonenumbers.parse(e164, None)
    except phonenumbers.NumberParseException:
        return e164
    formatted = phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.INTERNATIONAL)
    return formatted.replace("-", " ")


def local_time(at: dt.datetime, zones: tuple[str, ...]) -> str:
    """``at`` on the callee's wall clock, e.g. ``2026-11-25 15:00 Europe/Paris``."""
    zone = zones[0]
    local = at.astimezone(zoneinfo.ZoneInfo(zone))
    return f"{local:%Y-%m-%d %H:%M} {zone}"


def short(text: str, limit: int = 80) -> str:
    """``text`` on one line, cut at a word boundary to at most ``limit`` characters."""
    line = " ".join(text.split())
    if len(line) <= limit:
        return line
    cut = line[: limit - 1].rsplit(" ", 1)[0] or line[: limit - 1]
    return cut + "…"


async def retry_stale(db: Database, unit: Callable[[AsyncSession], Awaitable[_T]], what: str) -> _T:
    """Run ``unit`` in a write transaction; on a lost version race, re-read and re-decide."""
    for _ in range(STALE_RETRIES):
        try:
            async with db.write() as session:
                return await unit(session)
        except StaleVersionError:
            continue
    raise ConflictError(f"{what}: the row kept changing under us; try again")
