"""System functions for calls: create the row, persist CallActor messages once, heartbeats, HITL.

**System functions, never exposed to users**: the TaskActor calls them (it is the only writer of
its task's lifecycle, DESIGN.md §2); no tenant scoping, because no user is behind them. One unit
of work each; every update checked and bumped by ``version``; every status change with its
``task_events`` row in the same transaction.

A CallActor's messages (:mod:`db.messages`) are applied **exactly once**: each carries
``(call_id, seq)``, ``calls.last_seq`` is bumped in the same transaction as the message's
effect, and a ``seq`` at or below it is dropped. When a call ends while its task is
``IN_PROGRESS``, the same transaction moves the task to ``ANALYZING``; the call's
``CALL_ENDED`` / ``CALL_NOT_ANSWERED`` event records both (see :func:`apply_call_event`).
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from db.engine import Database
from db.messages import (
    AmdReported,
    Answered,
    CallMessageKind,
    CallPayload,
    DtmfReceived,
    DtmfSent,
    Ended,
    HitlRequested,
    HitlTimedOut,
    Originated,
    ToolCalled,
    TranscriptTurnAdded,
    parse_payload,
)
from db.models import Call, HitlRequest, Task
from db.repo._core import ConflictError, NotFoundError, append_event, move_task, update_row
from db.repo.snapshots import LIVE_CALL_STATUSES, CallSnapshot
from db.shapes import require_aware
from db.states import (
    TERMINAL_CALL_STATUSES,
    AmdVerdict,
    CallStatus,
    EndReason,
    EventKind,
    HitlStatus,
    TaskStatus,
    TelephonyResult,
    transition_call,
    transition_hitl,
)

_NOT_REACHED: Final = frozenset(
    {
        TelephonyResult.NO_ANSWER,
        TelephonyResult.BUSY,
        TelephonyResult.CONGESTION,
        TelephonyResult.REJECTED,
    }
)
_RESULT_LABELS: Final = {
    TelephonyResult.ANSWERED: "Answered",
    TelephonyResult.NO_ANSWER: "No answer",
    TelephonyResult.BUSY: "Busy",
    TelephonyResult.CONGESTION: "Network congestion",
    TelephonyResult.REJECTED: "Call rejected",
    TelephonyResult.FAILED: "Call failed",
    TelephonyResult.UNKNOWN: "Call outcome unknown",
}
_FAILED_AFTER_ANSWER: Final = frozenset({EndReason.TECHNICAL_ERROR, EndReason.NOT_CONNECTED})


# Row locks are FOR NO KEY UPDATE (``key_share=True``): what a plain UPDATE takes. A FOR UPDATE
# lock would also block the FOR KEY SHARE that inserting a task_events row (foreign keys to the
# task and the call) takes, and the front answering a question does exactly that while holding
# the question's row: the two would deadlock. Rows are always locked task first, then call,
# then question, as the front does. SQLite ignores row locks (BEGIN IMMEDIATE covers it).


async def locked_task(session: AsyncSession, task_id: uuid.UUID) -> Task:
    """The task row, locked for this transaction (PostgreSQL; SQLite's write lock covers it)."""
    task = await session.scalar(
        sa.select(Task).where(Task.id == task_id).with_for_update(key_share=True)
    )
    if task is None:
        raise NotFoundError(f"no task {task_id}")
    return task


async def locked_call(
    session: AsyncSession, call_id: uuid.UUID, *, task_id: uuid.UUID | None = None
) -> Call:
    """The call row, locked for this transaction; with ``task_id``, it must be that task's."""
    call = await session.scalar(
        sa.select(Call).where(Call.id == call_id).with_for_update(key_share=True)
    )
    if call is None or (task_id is not None and call.task_id != task_id):
        raise NotFoundError(f"no call {call_id}" + (f" of task {task_id}" if task_id else ""))
    return call


def check_owner(task: Task, owner: str, *, live_lease_at: dt.datetime | None = None) -> None:
    """Refuse a writer that is not the task's owner (a TaskActor that was taken over).

    With ``live_lease_at``, also refuse when the lease has expired by then: starting new work
    (a call) needs a live lease, while finishing work needs only to still be the owner.
    """
    if task.owner != owner:
        raise ConflictError(f"task {task.id} is held by {task.owner!r}, not {owner!r}")
    expires = task.lease_expires_at
    if live_lease_at is not None and (expires is None or expires <= live_lease_at):
        raise ConflictError(f"the lease on task {task.id} expired; renew or take it over first")


# -- create -----------------------------------------------------------------------------------


async def create_call(
    db: Database, *, task_id: uuid.UUID, call_id: uuid.UUID, owner: str, now: dt.datetime
) -> CallSnapshot:
    """Create the Call row (``DIALING``) of the task's next attempt; ``total_calls`` += 1.

    The task must be ``IN_PROGRESS``, held by ``owner`` with a live lease, not asked to cancel,
    and without another live call. Repeating it with the same ``call_id`` returns that call.
    """
    now = require_aware(now, "now")
    async with db.write() as session:
        task = await locked_task(session, task_id)
        existing = await session.get(Call, call_id)
        if existing is not None:
            if existing.task_id != task_id:
                raise ConflictError(f"call id {call_id} belongs to another task")
            return CallSnapshot.of(existing)
        if task.status is not TaskStatus.IN_PROGRESS:
            raise ConflictError(f"task {task_id} is {task.status}, not IN_PROGRESS")
        check_owner(task, owner, live_lease_at=now)
        if task.cancel_requested_at is not None:
            raise ConflictError(f"task {task_id} was asked to cancel; do not dial")
        live = await session.scalar(
            sa.select(Call.id).where(Call.task_id == task_id, Call.status.in_(LIVE_CALL_STATUSES))
        )
        if live is not None:
            raise ConflictError(f"task {task_id} already has a live call {live}")
        call = Call(
            id=call_id,
            task_id=task.id,
            tenant_id=task.tenant_id,
            destination=task.phone,
            attempt_number=task.total_calls + 1,
            status=transition_call(CallStatus.CREATED, CallStatus.DIALING),
            created_at=now,
            heartbeat_at=now,
            last_seq=0,
            transcript=[],
            tool_calls=[],
        )
        session.add(call)
        await session.flush()
        await update_row(session, task, total_calls=task.total_calls + 1, updated_at=now)
        return CallSnapshot.of(call)


# -- CallActor messages ------------------------------------------------------------------------


@dataclass(slots=True)
class _Apply:
    """What an applier works on: one locked call, its task, and the unit of work's clock."""

    session: AsyncSession
    call: Call
    task: Task
    now: dt.datetime

    async def event(self, kind: EventKind, message: str, **data: Any) -> None:
        await append_event(
            self.session,
            task_id=self.task.id,
            tenant_id=self.task.tenant_id,
            call_id=self.call.id,
            kind=kind,
            message=message,
            data=data,
            at=self.now,
        )


_Values = dict[str, Any]


async def apply_call_event(
    db: Database,
    *,
    call_id: uuid.UUID,
    seq: int,
    kind: CallMessageKind,
    payload: CallPayload | Mapping[str, Any],
    now: dt.datetime,
) -> bool:
    """Persist one CallActor message exactly once; ``False`` when ``seq`` was already applied.

    The payload is checked against ``kind`` before anything is written (``ValueError``).
    """
    if seq < 1:
        raise ValueError(f"message seq starts at 1, got {seq}")
    kind = CallMessageKind(kind)
    parsed = parse_payload(kind, payload)
    now = require_aware(now, "now")
    async with db.write() as session:
        # Lock order everywhere: task, then call, then question (renew_lease does the same).
        task_id = await session.scalar(sa.select(Call.task_id).where(Call.id == call_id))
        if task_id is None:
            raise NotFoundError(f"no call {call_id}")
        task = await locked_task(session, task_id)
        call = await locked_call(session, call_id)
        if seq <= call.last_seq:
            return False
        values = await _APPLIERS[kind](_Apply(session, call, task, now), parsed)
        await update_row(session, call, last_seq=seq, **values)
        return True


async def _originated(ctx: _Apply, msg: Originated) -> _Values:
    return {"originated_at": require_aware(msg.at)} if ctx.call.originated_at is None else {}


async def _answered(ctx: _Apply, msg: Answered) -> _Values:
    if ctx.call.status in TERMINAL_CALL_STATUSES:
        return {}  # the call was already settled (e.g. recovered); the first end wins
    status = transition_call(ctx.call.status, CallStatus.ANSWERED)
    await ctx.event(EventKind.CALL_ANSWERED, "Call answered")
    return {"status": status, "answered_at": require_aware(msg.at)}


async def _transcript_turn(ctx: _Apply, msg: TranscriptTurnAdded) -> _Values:
    return {"transcript": [*ctx.call.transcript, msg.turn.model_dump(mode="json")]}


async def _tool_call(ctx: _Apply, msg: ToolCalled) -> _Values:
    return {"tool_calls": [*ctx.call.tool_calls, msg.record.model_dump(mode="json")]}


async def _dtmf_sent(ctx: _Apply, msg: DtmfSent) -> _Values:
    await ctx.event(EventKind.DTMF_SENT, f"Sent DTMF {msg.digits}", digits=msg.digits)
    return {}


async def _dtmf_received(ctx: _Apply, msg: DtmfReceived) -> _Values:
    await ctx.event(EventKind.DTMF_RECEIVED, f"Callee pressed {msg.digit}", digit=msg.digit)
    return {}


async def _amd_verdict(ctx: _Apply, msg: AmdReported) -> _Values:
    if msg.verdict is AmdVerdict.MACHINE:
        cause = f" ({msg.cause})" if msg.cause else ""
        await ctx.event(
            EventKind.VOICEMAIL_DETECTED,
            f"Answering machine detected{cause}",
            verdict=msg.verdict.value,
            cause=msg.cause,
        )
    return {"amd_verdict": msg.verdict, "amd_cause": msg.cause or None}


async def _hitl_requested(ctx: _Apply, msg: HitlRequested) -> _Values:
    if ctx.call.status in TERMINAL_CALL_STATUSES:
        return {}  # the call was settled (recovered as vanished): nobody is waiting on the line
    existing = await ctx.session.get(HitlRequest, msg.request_id)
    if existing is not None:
        if existing.call_id != ctx.call.id:
            raise ConflictError(f"HITL request id {msg.request_id} belongs to another call")
        return {}
    ctx.session.add(
        HitlRequest(
            id=msg.request_id,
            task_id=ctx.task.id,
            tenant_id=ctx.task.tenant_id,
            call_id=ctx.call.id,
            question=msg.question,
            recipient_message=msg.recipient_message,
            timeout_seconds=msg.timeout_seconds,
            status=HitlStatus.PENDING,
            asked_at=require_aware(msg.at),
        )
    )
    await ctx.session.flush()
    await ctx.event(
        EventKind.USER_INFO_REQUESTED,
        f"The AI asks: {msg.question}",
        request_id=str(msg.request_id),
        timeout_seconds=msg.timeout_seconds,
    )
    return {}


async def _hitl_timed_out(ctx: _Apply, msg: HitlTimedOut) -> _Values:
    await time_out_request(ctx.session, msg.request_id, now=ctx.now)
    return {}


async def _ended(ctx: _Apply, msg: Ended) -> _Values:
    call, at = ctx.call, require_aware(msg.at)
    if call.status in TERMINAL_CALL_STATUSES:
        return {}  # settled already (recovered as vanished); the first end wins
    answered = (
        call.status is CallStatus.ANSWERED or msg.telephony_result is TelephonyResult.ANSWERED
    )
    values: _Values = {}
    if answered and call.status is not CallStatus.ANSWERED:
        transition_call(call.status, CallStatus.ANSWERED)  # the answer was never reported
        values["status"] = CallStatus.ANSWERED
        values["answered_at"] = call.answered_at or at
    if answered:
        failed = msg.end_reason in _FAILED_AFTER_ANSWER
        target = CallStatus.FAILED if failed else CallStatus.ENDED
    elif msg.telephony_result in _NOT_REACHED:
        target = CallStatus.NOT_ANSWERED
    else:
        target = CallStatus.FAILED
    transition_call(values.get("status", call.status), target)
    values.update(
        status=target,
        telephony_result=msg.telephony_result,
        end_reason=msg.end_reason,
        originate_reason=msg.originate_reason,
        hangup_cause=msg.hangup_cause,
        usage=None if msg.usage is None else msg.usage.model_dump(mode="json"),
        figures=None if msg.figures is None else msg.figures.model_dump(mode="json"),
        recording_path=msg.recording_path,
        ended_at=at,
    )
    await time_out_call_requests(ctx.session, call.id, now=ctx.now, why="the call ended")
    kind = EventKind.CALL_ENDED if answered else EventKind.CALL_NOT_ANSWERED
    answered_at = values.get("answered_at", call.answered_at)
    message = _ended_message(msg, answered=answered, answered_at=answered_at)
    await _end_task_call(ctx, kind, message, target)
    return values


async def _end_task_call(ctx: _Apply, kind: EventKind, message: str, status: CallStatus) -> None:
    """Record a call's end; an ``IN_PROGRESS`` task moves to ``ANALYZING`` with that event."""
    data = {"call_status": status.value}
    if ctx.task.status is TaskStatus.IN_PROGRESS:
        await move_task(
            ctx.session,
            ctx.task,
            TaskStatus.ANALYZING,
            event=kind,
            message=message,
            data=data,
            call_id=ctx.call.id,
            now=ctx.now,
        )
    else:
        # A cancelled (terminal) task: the call's end is recorded, the task stays as it is.
        await ctx.event(kind, message, **data)


def _ended_message(msg: Ended, *, answered: bool, answered_at: dt.datetime | None) -> str:
    """ "No answer (cause 19)", "Call ended (callee_hung_up) after 2m 13s", …"""
    if not answered:
        label = _RESULT_LABELS[msg.telephony_result]
        if msg.hangup_cause:
            return f"{label} (cause {msg.hangup_cause})"
        if msg.originate_reason is not None:
            return f"{label} (reason {msg.originate_reason})"
        return label
    after = ""
    if answered_at is not None:
        seconds = max(0, round((require_aware(msg.at) - answered_at).total_seconds()))
        minutes, seconds = divmod(seconds, 60)
        after = f" after {minutes}m {seconds:02d}s" if minutes else f" after {seconds}s"
    verb = "failed" if msg.end_reason in _FAILED_AFTER_ANSWER else "ended"
    return f"Call {verb} ({msg.end_reason.value}){after}"


_APPLIERS: Final[Mapping[CallMessageKind, Callable[[_Apply, Any], Awaitable[_Values]]]] = {
    CallMessageKind.ORIGINATED: _originated,
    CallMessageKind.ANSWERED: _answered,
    CallMessageKind.TRANSCRIPT_TURN: _transcript_turn,
    CallMessageKind.TOOL_CALL: _tool_call,
    CallMessageKind.DTMF_SENT: _dtmf_sent,
    CallMessageKind.DTMF_RECEIVED: _dtmf_received,
    CallMessageKind.AMD_VERDICT: _amd_verdict,
    CallMessageKind.HITL_REQUESTED: _hitl_requested,
    CallMessageKind.HITL_TIMED_OUT: _hitl_timed_out,
    CallMessageKind.ENDED: _ended,
}


# -- heartbeats ------------------------------------------------------------------------------


async def heartbeat_call(db: Database, call_id: uuid.UUID, *, now: dt.datetime) -> bool:
    """Stamp ``calls.heartbeat_at`` of a live call; ``False`` if the call is over or unknown."""
    now = require_aware(now, "now")
    async with db.write() as session:
        return await bump_heartbeats(session, now=now, call_id=call_id) == 1


async def bump_heartbeats(
    session: AsyncSession,
    *,
    now: dt.datetime,
    call_id: uuid.UUID | None = None,
    task_id: uuid.UUID | None = None,
) -> int:
    """Stamp the heartbeat of live calls by id or by task; one conditional UPDATE.

    A single statement whose WHERE is the whole decision (the call is live) cannot act on a
    stale read, so it bumps ``version`` without checking it, like any other write.
    """
    table = Call.__table__
    assert isinstance(table, sa.Table)
    query = sa.update(table).where(table.c.status.in_(LIVE_CALL_STATUSES))
    if call_id is not None:
        query = query.where(table.c.id == call_id)
    if task_id is not None:
        query = query.where(table.c.task_id == task_id)
    result = await session.execute(query.values(heartbeat_at=now, version=table.c.version + 1))
    count: int = result.rowcount  # type: ignore[attr-defined]
    return count


async def find_calls_without_heartbeat(
    db: Database, *, now: dt.datetime, max_age_seconds: float, limit: int = 100
) -> list[uuid.UUID]:
    """Live calls whose heartbeat is older than ``max_age_seconds`` (oldest first)."""
    cutoff = require_aware(now, "now") - dt.timedelta(seconds=max_age_seconds)
    async with db.read() as session:
        rows = await session.scalars(
            sa.select(Call.id)
            .where(
                Call.status.in_(LIVE_CALL_STATUSES),
                sa.or_(Call.heartbeat_at < cutoff, Call.heartbeat_at.is_(None)),
            )
            .order_by(Call.heartbeat_at)
            .limit(limit)
        )
        return list(rows)


# -- HITL, the system side -------------------------------------------------------------------


async def resolve_hitl_timeout(
    db: Database, request_id: uuid.UUID, *, now: dt.datetime
) -> HitlStatus:
    """The question's timer fired: ``PENDING → TIMED_OUT`` unless an answer won first.

    Returns the status that stands: ``TIMED_OUT`` (the timeout won, now or before) or
    ``ANSWERED`` (the answer won; inject it). The row decides, so exactly one side wins.
    """
    now = require_aware(now, "now")
    async with db.write() as session:
        return await time_out_request(session, request_id, now=now)


async def time_out_request(
    session: AsyncSession, request_id: uuid.UUID, *, now: dt.datetime, why: str = ""
) -> HitlStatus:
    """``PENDING → TIMED_OUT`` with its event, in the caller's transaction; the standing status."""
    row = await session.scalar(
        sa.select(HitlRequest).where(HitlRequest.id == request_id).with_for_update(key_share=True)
    )
    if row is None:
        raise NotFoundError(f"no HITL request {request_id}")
    if row.status is not HitlStatus.PENDING:
        return row.status
    await update_row(session, row, status=transition_hitl(row.status, HitlStatus.TIMED_OUT))
    suffix = f" ({why})" if why else ""
    await append_event(
        session,
        task_id=row.task_id,
        tenant_id=row.tenant_id,
        call_id=row.call_id,
        kind=EventKind.USER_INFO_TIMEOUT,
        message=f"No answer in time to: {row.question}{suffix} — a callback will follow",
        data={"request_id": str(row.id)},
        at=now,
    )
    return HitlStatus.TIMED_OUT


async def time_out_call_requests(
    session: AsyncSession, call_id: uuid.UUID, *, now: dt.datetime, why: str
) -> int:
    """Time out every pending question of a call (it ended); how many there were."""
    pending = await session.scalars(
        sa.select(HitlRequest.id).where(
            HitlRequest.call_id == call_id, HitlRequest.status == HitlStatus.PENDING
        )
    )
    ids = list(pending)
    for request_id in ids:
        await time_out_request(session, request_id, now=now, why=why)
    return len(ids)


async def hitl_on_callee_hangup(db: Database, call_id: uuid.UUID, *, now: dt.datetime) -> int:
    """The callee hung up: the call's pending questions become ``TIMED_OUT``; how many."""
    now = require_aware(now, "now")
    async with db.write() as session:
        return await time_out_call_requests(session, call_id, now=now, why="the callee hung up")


async def pending_answer(db: Database, request_id: uuid.UUID) -> str | None:
    """The creator's answer once the question is ``ANSWERED`` (the TaskActor polls this)."""
    async with db.read() as session:
        row = (
            await session.execute(
                sa.select(HitlRequest.status, HitlRequest.answer).where(
                    HitlRequest.id == request_id
                )
            )
        ).one_or_none()
    if row is None:
        raise NotFoundError(f"no HITL request {request_id}")
    status, answer = row
    return answer if status is HitlStatus.ANSWERED else None
