"""System functions: what the Supervisor and the TaskActors write. **Never exposed to users.**

No tenant scoping here, because no user is behind these calls; the API, the UI and the CLI use
the tenant-scoped repository modules instead. One unit of work each; every update is checked and
bumped by ``version`` (single conditional UPDATEs whose WHERE is the whole decision — the lease
renewal, the heartbeat — bump it too); every task status change writes its ``task_events`` row
in the same transaction (:func:`db.repo._core.move_task`).

This module holds leases and reconcile, the TaskActor's snapshot, the analysis/policy step and
the sweeps, and re-exports the claim (:mod:`db.repo.claim`) and the call-side functions
(:mod:`db.repo.calls`), so ``db.repo.system`` is the one place to find every system function.

Who calls what (DESIGN.md §2): the Supervisor claims, sweeps expired leases, expires
``PENDING_USER_INFO``; a TaskActor takes its lease over on start, renews it, creates calls,
applies its CallActor's messages, resolves HITL timeouts, runs the analysis step, defers or
cancels its task, and recovers a vanished call.
"""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from db.engine import Database
from db.models import Call, DncNumber, HitlRequest, Task
from db.policy import Decision, pending_user_info_expired
from db.repo._core import (
    ConflictError,
    StaleVersionError,
    append_event,
    move_task,
    update_row,
)
from db.repo.calls import (
    apply_call_event,
    check_owner,
    create_call,
    find_calls_without_heartbeat,
    heartbeat_call,
    hitl_on_callee_hangup,
    locked_call,
    locked_task,
    pending_answer,
    resolve_hitl_timeout,
    time_out_call_requests,
)
from db.repo.calls import bump_heartbeats as _bump_heartbeats
from db.repo.claim import ClaimedTask, claim_due_tasks
from db.repo.hitl import answers_to_collect
from db.repo.snapshots import (
    LIVE_CALL_STATUSES,
    CallSnapshot,
    HitlSnapshot,
    TaskSnapshot,
    late_answer_exists,
    load_task_snapshot,
    task_snapshot,
)
from db.shapes import require_aware
from db.states import (
    ACTIVE_TASK_STATUSES,
    TERMINAL_CALL_STATUSES,
    TERMINAL_TASK_STATUSES,
    CallOutcome,
    CallStatus,
    EndReason,
    EventKind,
    HitlStatus,
    TaskStatus,
    TelephonyResult,
    transition_call,
    transition_hitl,
)

__all__ = [
    "CallSnapshot",
    "ClaimedTask",
    "HitlSnapshot",
    "TaskSnapshot",
    "apply_call_event",
    "begin_analysis",
    "cancel_active_task",
    "claim_due_tasks",
    "create_call",
    "defer_task",
    "expire_pending_user_info",
    "find_calls_without_heartbeat",
    "find_expired_leases",
    "finish_analysis",
    "heartbeat_call",
    "hitl_on_callee_hangup",
    "load_task_snapshot",
    "note_task_event",
    "pending_answer",
    "recover_vanished_call",
    "renew_lease",
    "resolve_hitl_timeout",
    "take_over_lease",
]


# -- leases and reconcile ----------------------------------------------------------------------


async def renew_lease(
    db: Database, task_id: uuid.UUID, *, owner: str, now: dt.datetime, lease_seconds: float
) -> bool:
    """Extend ``owner``'s lease on its active task and beat its live call's heartbeat.

    ``False`` when ``owner`` no longer holds the task (taken over) or it is no longer active:
    the TaskActor must stop working on it.
    """
    now = require_aware(now, "now")
    table = Task.__table__
    assert isinstance(table, sa.Table)
    async with db.write() as session:
        result = await session.execute(
            sa.update(table)
            .where(
                table.c.id == task_id,
                table.c.owner == owner,
                table.c.status.in_(ACTIVE_TASK_STATUSES),
            )
            .values(
                lease_expires_at=now + dt.timedelta(seconds=lease_seconds),
                version=table.c.version + 1,
            )
        )
        if result.rowcount != 1:  # type: ignore[attr-defined]
            return False
        await _bump_heartbeats(session, now=now, task_id=task_id)
        return True


async def take_over_lease(
    db: Database, task_id: uuid.UUID, *, owner: str, now: dt.datetime, lease_seconds: float
) -> TaskSnapshot:
    """A (re)started TaskActor takes its active task's lease, whoever held it; its snapshot.

    Raises :class:`ConflictError` when the task is not active (nothing to take over).
    """
    now = require_aware(now, "now")
    async with db.write() as session:
        task = await locked_task(session, task_id)
        if task.status not in ACTIVE_TASK_STATUSES:
            raise ConflictError(f"task {task_id} is {task.status}: there is no lease to take")
        await update_row(
            session,
            task,
            owner=owner,
            lease_expires_at=now + dt.timedelta(seconds=lease_seconds),
            updated_at=now,
        )
        return await task_snapshot(session, task)


async def find_expired_leases(db: Database, *, now: dt.datetime, limit: int) -> list[uuid.UUID]:
    """Active tasks whose lease has expired (their TaskActor is gone or stuck), oldest first."""
    now = require_aware(now, "now")
    async with db.read() as session:
        rows = await session.scalars(
            sa.select(Task.id)
            .where(
                Task.status.in_(ACTIVE_TASK_STATUSES),
                sa.or_(Task.lease_expires_at <= now, Task.lease_expires_at.is_(None)),
            )
            .order_by(Task.lease_expires_at)
            .limit(limit)
        )
        return list(rows)


async def recover_vanished_call(
    db: Database, task_id: uuid.UUID, call_id: uuid.UUID, *, owner: str, now: dt.datetime
) -> bool:
    """A restarted TaskActor found its call's CallActor gone: the call ends ``FAILED``.

    End reason ``technical_error``, event ``RECOVERED``; an ``IN_PROGRESS`` task moves to
    ``ANALYZING`` with that event so the policy runs. ``False`` if the call had already ended.
    """
    now = require_aware(now, "now")
    async with db.write() as session:
        task = await locked_task(session, task_id)
        check_owner(task, owner)
        call = await locked_call(session, call_id, task_id=task_id)
        if call.status in TERMINAL_CALL_STATUSES:
            return False
        await time_out_call_requests(session, call.id, now=now, why="the call was lost")
        await update_row(
            session,
            call,
            status=transition_call(call.status, CallStatus.FAILED),
            end_reason=EndReason.TECHNICAL_ERROR,
            telephony_result=call.telephony_result or TelephonyResult.UNKNOWN,
            ended_at=now,
        )
        message = "Call lost (its CallActor is gone): recorded as a technical error"
        data = {"call_status": CallStatus.FAILED.value}
        if task.status is TaskStatus.IN_PROGRESS:
            await move_task(
                session,
                task,
                TaskStatus.ANALYZING,
                event=EventKind.RECOVERED,
                message=message,
                data=data,
                call_id=call.id,
                now=now,
            )
        else:
            await _event(
                session, task, EventKind.RECOVERED, message, call_id=call.id, now=now, data=data
            )
        return True


# -- the analysis / policy step ----------------------------------------------------------------


async def begin_analysis(
    db: Database, task_id: uuid.UUID, *, owner: str, call_id: uuid.UUID, now: dt.datetime
) -> None:
    """Make sure the task is ``ANALYZING`` for ``call_id`` before the analysis runs.

    Usually nothing is left to do: the call's ``ended`` message moved the task in the same
    transaction that recorded the end (so no crash can leave an ended call on an
    ``IN_PROGRESS`` task). A task still ``IN_PROGRESS`` moves now, with the call's end as its
    event; a call still live raises :class:`ConflictError`.
    """
    now = require_aware(now, "now")
    async with db.write() as session:
        task = await locked_task(session, task_id)
        check_owner(task, owner)
        call = await locked_call(session, call_id, task_id=task.id)
        if task.status is TaskStatus.ANALYZING:
            return
        if task.status is not TaskStatus.IN_PROGRESS:
            raise ConflictError(f"task {task_id} is {task.status}; nothing to analyse")
        if call.status not in TERMINAL_CALL_STATUSES:
            raise ConflictError(f"call {call_id} is still {call.status}; end it first")
        kind = EventKind.CALL_ENDED if call.answered_at else EventKind.CALL_NOT_ANSWERED
        await move_task(
            session,
            task,
            TaskStatus.ANALYZING,
            event=kind,
            message=f"Call over ({call.status.value}): analysing it",
            data={"call_status": call.status.value},
            call_id=call.id,
            now=now,
        )


async def finish_analysis(
    db: Database,
    task_id: uuid.UUID,
    *,
    owner: str,
    call_id: uuid.UUID,
    outcome: CallOutcome,
    summary: str,
    analysis_json: dict[str, Any],
    decision: Decision,
    now: dt.datetime,
) -> TaskStatus:
    """Record the analysis and apply the policy's decision; returns the status the task got.

    ``ANALYZING → decision.status`` with events ``ANALYZED`` and ``decision.event``; owner and
    lease cleared (every decision leaves the active states). ``DO_NOT_CALL`` also puts the
    number on the tenant's DNC list (``DNC_ADDED``). A cancel requested meanwhile wins over a
    non-final decision (→ ``CANCELLED``). If the decision waits for the creator's answer but a
    question of this call was already answered late, :class:`StaleVersionError` asks the
    caller to decide again with ``answer_ready=True``.
    """
    now = require_aware(now, "now")
    async with db.write() as session:
        task = await locked_task(session, task_id)
        if task.status is not TaskStatus.ANALYZING:
            raise ConflictError(f"task {task_id} is {task.status}, not ANALYZING")
        check_owner(task, owner)
        call = await locked_call(session, call_id, task_id=task.id)
        waiting = decision.status is TaskStatus.PENDING_USER_INFO
        if waiting and await late_answer_exists(session, call.id):
            raise StaleVersionError("a late answer arrived: decide again with answer_ready=True")
        await update_row(session, call, outcome=outcome, analysis=analysis_json)
        await _event(
            session,
            task,
            EventKind.ANALYZED,
            f"Analysed: {outcome.value} — {summary}",
            call_id=call.id,
            now=now,
            data={"outcome": outcome.value},
        )
        if outcome is CallOutcome.DO_NOT_CALL:
            await _add_to_dnc(session, task, now, reason=summary)
        return await _apply_decision(
            session,
            task,
            call_id=call.id,
            outcome=outcome,
            summary=summary,
            decision=decision,
            now=now,
        )


async def _apply_decision(
    session: AsyncSession,
    task: Task,
    *,
    call_id: uuid.UUID,
    outcome: CallOutcome,
    summary: str,
    decision: Decision,
    now: dt.datetime,
) -> TaskStatus:
    target, kind, message = decision.status, decision.event, decision.reason
    if task.cancel_requested_at is not None and target not in TERMINAL_TASK_STATUSES:
        target, kind, message = TaskStatus.CANCELLED, EventKind.CANCELLED, "Cancelled on request"
    if target is TaskStatus.RETRY_SCHEDULED and decision.next_action_time is None:
        raise ValueError("a RETRY_SCHEDULED decision needs a next_action_time")
    final = target in TERMINAL_TASK_STATUSES
    if target is TaskStatus.CANCELLED:
        await _close_questions(session, task.id)
    # Answers given while the task was active reached the HITL rows only (db.repo.hitl);
    # the callback's instructions need them in collected_info.
    questions = await session.scalars(sa.select(HitlRequest).where(HitlRequest.task_id == task.id))
    await move_task(
        session,
        task,
        target,
        event=kind,
        message=message,
        call_id=call_id,
        now=now,
        next_action_time=None if final else decision.next_action_time,
        current_attempt_count=decision.counted_attempts,
        outcome=outcome,
        result_summary=summary,
        collected_info=answers_to_collect(task.collected_info, questions),
        owner=None,
        lease_expires_at=None,
        finished_at=now if final else None,
    )
    return target


async def _add_to_dnc(session: AsyncSession, task: Task, now: dt.datetime, *, reason: str) -> None:
    """Put the task's number on its tenant's DNC list (once), with the ``DNC_ADDED`` event."""
    values = {
        "id": uuid.uuid4(),
        "tenant_id": task.tenant_id,
        "phone": task.phone,
        "reason": reason,
        "task_id": task.id,
        "added_at": now,
    }
    dialect = session.get_bind().dialect.name
    insert = (postgresql.insert if dialect == "postgresql" else sqlite.insert)(DncNumber)
    result = await session.execute(
        insert.values(**values).on_conflict_do_nothing(index_elements=["tenant_id", "phone"])
    )
    added = result.rowcount == 1  # type: ignore[attr-defined]
    message = f"{task.phone} added to the do-not-call list"
    if not added:
        message = f"{task.phone} was already on the do-not-call list"
    await _event(session, task, EventKind.DNC_ADDED, message, now=now, data={"already": not added})


async def defer_task(
    db: Database,
    task_id: uuid.UUID,
    *,
    owner: str,
    now: dt.datetime,
    next_action_time: dt.datetime,
    reason: str,
) -> None:
    """The TaskActor cannot dial now (no capacity, window closed): back to ``RETRY_SCHEDULED``.

    Event ``DEFERRED`` with ``reason``; owner and lease cleared. Not allowed with a live call.
    """
    now = require_aware(now, "now")
    next_action_time = require_aware(next_action_time, "next_action_time")
    async with db.write() as session:
        task = await locked_task(session, task_id)
        check_owner(task, owner)
        if task.status is not TaskStatus.IN_PROGRESS:
            raise ConflictError(f"task {task_id} is {task.status}; only a claimed task defers")
        live = await session.scalar(
            sa.select(Call.id).where(Call.task_id == task_id, Call.status.in_(LIVE_CALL_STATUSES))
        )
        if live is not None:
            raise ConflictError(f"task {task_id} has a live call {live}; it cannot be deferred")
        await move_task(
            session,
            task,
            TaskStatus.RETRY_SCHEDULED,
            event=EventKind.DEFERRED,
            message=reason,
            data={"next_action_time": next_action_time.isoformat()},
            now=now,
            next_action_time=next_action_time,
            owner=None,
            lease_expires_at=None,
        )


async def cancel_active_task(
    db: Database, task_id: uuid.UUID, *, owner: str, now: dt.datetime
) -> None:
    """The TaskActor honours ``cancel_requested_at``: its active task → ``CANCELLED``.

    Event ``CANCELLED``; owner and lease cleared; open questions cancelled. The live call, if
    any, is ended by the TaskActor; its result is then recorded on the call row only.
    """
    now = require_aware(now, "now")
    async with db.write() as session:
        task = await locked_task(session, task_id)
        check_owner(task, owner)
        if task.cancel_requested_at is None:
            raise ConflictError(f"task {task_id} was not asked to cancel")
        await _close_questions(session, task.id)
        await move_task(
            session,
            task,
            TaskStatus.CANCELLED,
            event=EventKind.CANCELLED,
            message="Cancelled on request",
            now=now,
            next_action_time=None,
            owner=None,
            lease_expires_at=None,
            finished_at=now,
        )


async def expire_pending_user_info(
    db: Database, *, now: dt.datetime, expiry_seconds: float, limit: int = 100
) -> int:
    """``PENDING_USER_INFO`` tasks that waited past ``expiry_seconds`` → ``FAILED`` (``EXPIRED``).

    Their ``TIMED_OUT`` questions become ``EXPIRED``. The wait counts from the task's last
    update, which is when it entered ``PENDING_USER_INFO`` (any later write moves it on).
    """
    now = require_aware(now, "now")
    cutoff = now - dt.timedelta(seconds=expiry_seconds)
    async with db.write() as session:
        tasks = (
            await session.scalars(
                sa.select(Task)
                .where(Task.status == TaskStatus.PENDING_USER_INFO, Task.updated_at <= cutoff)
                .order_by(Task.updated_at)
                .limit(limit)
                .with_for_update(skip_locked=True, key_share=True)
            )
        ).all()
        for task in tasks:
            if not pending_user_info_expired(task.updated_at, now, expiry_seconds):
                continue
            await _expire_questions(session, task.id)
            await move_task(
                session,
                task,
                TaskStatus.FAILED,
                event=EventKind.EXPIRED,
                message=f"No answer from the task's creator within {_days(expiry_seconds)}",
                now=now,
                next_action_time=None,
                finished_at=now,
            )
        return len(tasks)


async def _expire_questions(session: AsyncSession, task_id: uuid.UUID) -> None:
    await _move_questions(session, task_id, HitlStatus.TIMED_OUT, HitlStatus.EXPIRED)


async def _close_questions(session: AsyncSession, task_id: uuid.UUID) -> None:
    """A task being cancelled: its pending questions are cancelled, timed-out ones expire."""
    await _move_questions(session, task_id, HitlStatus.PENDING, HitlStatus.CANCELLED)
    await _move_questions(session, task_id, HitlStatus.TIMED_OUT, HitlStatus.EXPIRED)


async def _move_questions(
    session: AsyncSession, task_id: uuid.UUID, current: HitlStatus, target: HitlStatus
) -> None:
    """One conditional UPDATE: the status in the WHERE is the guard; the version is bumped."""
    transition_hitl(current, target)
    table = HitlRequest.__table__
    assert isinstance(table, sa.Table)
    await session.execute(
        sa.update(table)
        .where(table.c.task_id == task_id, table.c.status == current)
        .values(status=target, version=table.c.version + 1)
    )


NOTE_KINDS = frozenset({EventKind.ANALYSIS_FALLBACK, EventKind.TECHNICAL_FAILURE})
"""Events a TaskActor may write on their own: they record what happened, they change nothing."""


async def note_task_event(
    db: Database,
    task_id: uuid.UUID,
    *,
    owner: str,
    kind: EventKind,
    message: str,
    data: dict[str, Any],
    now: dt.datetime,
    call_id: uuid.UUID | None = None,
) -> None:
    """An informational event from the task's owner (``ANALYSIS_FALLBACK``, ``TECHNICAL_FAILURE``).

    Nothing else changes; refused (:class:`ConflictError`) when ``owner`` no longer holds the
    task, and (``ValueError``) for any kind that belongs to a state change.
    """
    if kind not in NOTE_KINDS:
        raise ValueError(f"{kind} records a state change; write it with that change")
    now = require_aware(now, "now")
    async with db.write() as session:
        task = await locked_task(session, task_id)
        check_owner(task, owner)
        await _event(session, task, kind, message, now=now, data=data, call_id=call_id)


# -- helpers -------------------------------------------------------------------------------------


async def _event(
    session: AsyncSession,
    task: Task,
    kind: EventKind,
    message: str,
    *,
    now: dt.datetime,
    data: dict[str, Any],
    call_id: uuid.UUID | None = None,
) -> None:
    await append_event(
        session,
        task_id=task.id,
        tenant_id=task.tenant_id,
        kind=kind,
        message=message,
        data=data,
        call_id=call_id,
        at=now,
    )


def _days(seconds: float) -> str:
    days = seconds / 86400
    if days >= 1 and days.is_integer():
        return f"{int(days)} day{'s' if days != 1 else ''}"
    return f"{seconds / 3600:g} hours"


async def live_call_ids(db: Database) -> list[uuid.UUID]:
    """Calls not yet ended (created, dialing or answered), oldest first: what a drain waits for."""
    async with db.read() as session:
        rows = await session.scalars(
            sa.select(Call.id).where(Call.status.in_(LIVE_CALL_STATUSES)).order_by(Call.created_at)
        )
        return list(rows)
