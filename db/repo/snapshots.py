"""What actors read: frozen snapshots of a task, its last call and its open question.

Built inside the unit of work that read the rows, so they are safe to keep after the session
closed and to send across a Ray boundary. Used by the system functions
(:mod:`db.repo.system`); the user-facing views are in :mod:`db.repo.views`.
"""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass
from typing import Final

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from db.engine import Database
from db.models import Call, HitlRequest, Task
from db.repo._core import NotFoundError
from db.repo._shared import task_window
from db.shapes import CallFigures, CollectedInfo, ToolCallRecord, TranscriptTurn, Usage
from db.states import (
    TERMINAL_CALL_STATUSES,
    AmdVerdict,
    CallOutcome,
    CallStatus,
    EndReason,
    HitlStatus,
    TaskStatus,
    TelephonyResult,
)
from db.windows import CallingWindow

LIVE_CALL_STATUSES: Final = frozenset(CallStatus) - TERMINAL_CALL_STATUSES
"""A call in one of these is still going on (or about to)."""


@dataclass(frozen=True, slots=True)
class CallSnapshot:
    """One call row as the TaskActor needs it (JSON columns parsed into their shapes)."""

    id: uuid.UUID
    task_id: uuid.UUID
    tenant_id: uuid.UUID
    attempt_number: int
    destination: str
    status: CallStatus
    last_seq: int
    version: int
    telephony_result: TelephonyResult | None
    end_reason: EndReason | None
    outcome: CallOutcome | None
    hangup_cause: int | None
    originate_reason: int | None
    amd_verdict: AmdVerdict | None
    amd_cause: str | None
    created_at: dt.datetime
    originated_at: dt.datetime | None
    answered_at: dt.datetime | None
    ended_at: dt.datetime | None
    heartbeat_at: dt.datetime | None
    transcript: tuple[TranscriptTurn, ...]
    tool_calls: tuple[ToolCallRecord, ...]
    usage: Usage | None
    figures: CallFigures | None
    recording_path: str | None

    @property
    def live(self) -> bool:
        """Whether the call is still going on (not in a terminal status)."""
        return self.status in LIVE_CALL_STATUSES

    @classmethod
    def of(cls, row: Call) -> CallSnapshot:
        """The snapshot of a call row."""
        return cls(
            id=row.id,
            task_id=row.task_id,
            tenant_id=row.tenant_id,
            attempt_number=row.attempt_number,
            destination=row.destination,
            status=row.status,
            last_seq=row.last_seq,
            version=row.version,
            telephony_result=row.telephony_result,
            end_reason=row.end_reason,
            outcome=row.outcome,
            hangup_cause=row.hangup_cause,
            originate_reason=row.originate_reason,
            amd_verdict=row.amd_verdict,
            amd_cause=row.amd_cause,
            created_at=row.created_at,
            originated_at=row.originated_at,
            answered_at=row.answered_at,
            ended_at=row.ended_at,
            heartbeat_at=row.heartbeat_at,
            transcript=tuple(TranscriptTurn.model_validate(t) for t in row.transcript),
            tool_calls=tuple(ToolCallRecord.model_validate(t) for t in row.tool_calls),
            usage=None if row.usage is None else Usage.model_validate(row.usage),
            figures=None if row.figures is None else CallFigures.model_validate(row.figures),
            recording_path=row.recording_path,
        )


@dataclass(frozen=True, slots=True)
class HitlSnapshot:
    """A question the AI asked the task's creator."""

    id: uuid.UUID
    task_id: uuid.UUID
    call_id: uuid.UUID | None
    question: str
    recipient_message: str
    timeout_seconds: float
    status: HitlStatus
    asked_at: dt.datetime
    answered_at: dt.datetime | None
    answer: str | None
    version: int

    @classmethod
    def of(cls, row: HitlRequest) -> HitlSnapshot:
        """The snapshot of a HITL row."""
        return cls(
            id=row.id,
            task_id=row.task_id,
            call_id=row.call_id,
            question=row.question,
            recipient_message=row.recipient_message,
            timeout_seconds=row.timeout_seconds,
            status=row.status,
            asked_at=row.asked_at,
            answered_at=row.answered_at,
            answer=row.answer,
            version=row.version,
        )


@dataclass(frozen=True, slots=True)
class TaskSnapshot:
    """Everything a TaskActor needs to (re)start work on its task, read in one transaction."""

    id: uuid.UUID
    tenant_id: uuid.UUID
    created_by: uuid.UUID | None
    title: str
    objective: str
    context: str
    callee_name: str | None
    phone: str
    language: str
    voice: str | None
    window: CallingWindow
    """The task's window in the callee's zone(s) (``resolve_zones``)."""
    backoff: tuple[float, ...]
    voicemail_message: str | None
    status: TaskStatus
    version: int
    max_attempts: int
    current_attempt_count: int
    total_calls: int
    next_action_time: dt.datetime | None
    collected_info: tuple[CollectedInfo, ...]
    result_summary: str | None
    outcome: CallOutcome | None
    cancel_requested_at: dt.datetime | None
    owner: str | None
    lease_expires_at: dt.datetime | None
    created_at: dt.datetime
    updated_at: dt.datetime
    last_call: CallSnapshot | None
    """The latest call (highest attempt number), whatever its status."""
    open_question: HitlSnapshot | None
    """The task's ``PENDING`` HITL request, if one is waiting for an answer."""
    late_answer_ready: bool
    """A question of the last call was answered late: the policy may call back at once."""

    @property
    def current_call(self) -> CallSnapshot | None:
        """The last call if it is still live (what a restarted TaskActor must look for)."""
        return self.last_call if self.last_call is not None and self.last_call.live else None

    @property
    def cancel_requested(self) -> bool:
        """Whether the creator asked to cancel (the TaskActor must honour it)."""
        return self.cancel_requested_at is not None


async def load_task_snapshot(db: Database, task_id: uuid.UUID) -> TaskSnapshot:
    """The task, its window, its last call and its open question, as of now."""
    async with db.read() as session:
        task = await session.get(Task, task_id)
        if task is None:
            raise NotFoundError(f"no task {task_id}")
        return await task_snapshot(session, task)


async def task_snapshot(session: AsyncSession, task: Task) -> TaskSnapshot:
    """The snapshot of ``task`` with its last call and open question, in ``session``."""
    call = await session.scalar(
        sa.select(Call).where(Call.task_id == task.id).order_by(Call.attempt_number.desc())
    )
    question = await session.scalar(
        sa.select(HitlRequest)
        .where(HitlRequest.task_id == task.id, HitlRequest.status == HitlStatus.PENDING)
        .order_by(HitlRequest.asked_at.desc())
    )
    late = call is not None and await late_answer_exists(session, call.id)
    return TaskSnapshot(
        id=task.id,
        tenant_id=task.tenant_id,
        created_by=task.created_by,
        title=task.title,
        objective=task.objective,
        context=task.context,
        callee_name=task.callee_name,
        phone=task.phone,
        language=task.language,
        voice=task.voice,
        window=task_window(task),
        backoff=tuple(float(s) for s in task.retry_backoff),
        voicemail_message=task.voicemail_message,
        status=task.status,
        version=task.version,
        max_attempts=task.max_attempts,
        current_attempt_count=task.current_attempt_count,
        total_calls=task.total_calls,
        next_action_time=task.next_action_time,
        collected_info=tuple(CollectedInfo.model_validate(i) for i in task.collected_info),
        result_summary=task.result_summary,
        outcome=task.outcome,
        cancel_requested_at=task.cancel_requested_at,
        owner=task.owner,
        lease_expires_at=task.lease_expires_at,
        created_at=task.created_at,
        updated_at=task.updated_at,
        last_call=None if call is None else CallSnapshot.of(call),
        open_question=None if question is None else HitlSnapshot.of(question),
        late_answer_ready=late,
    )


async def late_answer_exists(session: AsyncSession, call_id: uuid.UUID) -> bool:
    """Whether a question of this call was answered after the call stopped waiting."""
    found = await session.scalar(
        sa.select(HitlRequest.id)
        .where(HitlRequest.call_id == call_id, HitlRequest.status == HitlStatus.ANSWERED_LATE)
        .limit(1)
    )
    return found is not None
