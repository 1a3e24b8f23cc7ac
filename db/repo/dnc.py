"""The per-tenant do-not-call list (DESIGN.md §7): numbers a tenant must never call again.

Numbers are stored in E.164, so ``+1 (415) 555-0100`` and ``+14155550100`` are one entry.
Adding a number twice is not an error: the first entry (and its reason) stays.
"""

from __future__ import annotations

import uuid
from typing import Final

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from db.engine import Database
from db.models import DncNumber
from db.phone import NumberRefusedError, normalize_destination
from db.repo import _input
from db.repo._core import InvalidInputError, append_event
from db.repo._shared import load_task, pretty_phone
from db.repo.views import DncView
from db.shapes import utcnow
from db.states import EventKind

MAX_REASON_CHARS: Final = 1000


class DoNotCallError(InvalidInputError):
    """The number is on the tenant's do-not-call list; a task for it is refused."""


async def refuse_dnc(session: AsyncSession, tenant_id: uuid.UUID, e164: str) -> None:
    """Raise DoNotCallError when the tenant's DNC list holds ``e164``."""
    if await dnc_entry(session, tenant_id, e164) is not None:
        raise DoNotCallError(f"{pretty_phone(e164)} is on this tenant's do-not-call list")


async def dnc_entry(session: AsyncSession, tenant_id: uuid.UUID, e164: str) -> DncNumber | None:
    """The tenant's DNC row for an E.164 number, inside a caller's unit of work."""
    row: DncNumber | None = await session.scalar(
        sa.select(DncNumber).where(DncNumber.tenant_id == tenant_id, DncNumber.phone == e164)
    )
    return row


async def add_dnc(
    db: Database,
    tenant_id: uuid.UUID,
    phone: str,
    *,
    reason: str,
    task_id: uuid.UUID | None = None,
) -> DncView:
    """Put ``phone`` on the tenant's DNC list (idempotent); event DNC_ADDED when a task is given.

    The number may lie outside the tenant's allowed countries (refusing more is always fine);
    numbers that can never be dialled anyway (emergency, short codes) are refused as input.
    """
    e164 = normalize_destination(phone)
    why = _input.text(reason, "reason", max_chars=MAX_REASON_CHARS, required=False)
    async with db.write() as session:
        task = await load_task(session, tenant_id, task_id) if task_id is not None else None
        existing = await dnc_entry(session, tenant_id, e164)
        if existing is not None:
            return DncView.of(existing)
        row = DncNumber(tenant_id=tenant_id, phone=e164, reason=why, task_id=task_id)
        row.added_at = utcnow()
        try:
            # A savepoint: on PostgreSQL a failed INSERT would otherwise abort the transaction.
            async with session.begin_nested():
                session.add(row)
        except IntegrityError:
            # Another request added the same number first: theirs is the entry.
            raced = await dnc_entry(session, tenant_id, e164)
            assert raced is not None
            return DncView.of(raced)
        if task is not None:
            await append_event(
                session,
                task_id=task.id,
                tenant_id=tenant_id,
                kind=EventKind.DNC_ADDED,
                message=f"{pretty_phone(e164)} added to the do-not-call list"
                + (f": {why}" if why else ""),
                data={"phone": e164, "reason": why},
                at=row.added_at,
            )
        return DncView.of(row)


async def is_dnc(db: Database, tenant_id: uuid.UUID, phone: str) -> bool:
    """Whether the tenant must not call ``phone`` (a number we cannot parse is not listed)."""
    try:
        e164 = normalize_destination(phone)
    except NumberRefusedError:
        return False
    async with db.read() as session:
        return await dnc_entry(session, tenant_id, e164) is not None


async def list_dnc(db: Database, tenant_id: uuid.UUID) -> list[DncView]:
    """The tenant's DNC list, newest first."""
    async with db.read() as session:
        rows = await session.scalars(
            sa.select(DncNumber)
            .where(DncNumber.tenant_id == tenant_id)
            .order_by(DncNumber.added_at.desc(), DncNumber.phone)
        )
        return [DncView.of(r) for r in rows]
