"""Read models the user-facing repository returns: frozen dataclasses, never ORM rows.

A view is built inside the unit of work that read the row and is safe to use after the
session closed (no lazy loads, no accidental writes back).
"""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass
from typing import Any

from db.models import Call, DncNumber, HitlRequest, Task, TaskEvent
from db.shapes import CallFigures, CollectedInfo, ToolCallRecord, TranscriptTurn, Usage
from db.states import (
    AmdVerdict,
    CallOutcome,
    CallStatus,
    EndReason,
    EventKind,
    HitlStatus,
    TaskStatus,
    TelephonyResult,
)


@dataclass(frozen=True, slots=True)
class TaskSummary:
    """One line of a task list."""

    id: uuid.UUID
    title: str
    phone: str
    callee_name: str | None
    status: TaskStatus
    outcome: CallOutcome | None
    next_action_time: dt.datetime | None
    total_calls: int
    current_attempt_count: int
    max_attempts: int
    cancel_requested: bool
    created_at: dt.datetime
    updated_at: dt.datetime

    @classmethod
    def of(cls, row: Task) -> TaskSummary:
        """The summary of a task row."""
        return cls(
            id=row.id,
            title=row.title,
            phone=row.phone,
            callee_name=row.callee_name,
            status=row.status,
            outcome=row.outcome,
            next_action_time=row.next_action_time,
            total_calls=row.total_calls,
            current_attempt_count=row.current_attempt_count,
            max_attempts=row.max_attempts,
            cancel_requested=row.cancel_requested_at is not None,
            created_at=row.created_at,
            updated_at=row.updated_at,
        )


@dataclass(frozen=True, slots=True)
class TaskView:
    """Everything about a task row (its calls and events are in :class:`TaskDetail`)."""

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
    timezone: str | None
    window_start: dt.time
    window_end: dt.time
    window_days: tuple[int, ...]
    retry_backoff: tuple[float, ...]
    voicemail_message: str | None
    status: TaskStatus
    max_attempts: int
    current_attempt_count: int
    total_calls: int
    next_action_time: dt.datetime | None
    collected_info: tuple[CollectedInfo, ...]
    result_summary: str | None
    outcome: CallOutcome | None
    cancel_requested_at: dt.datetime | None
    created_at: dt.datetime
    updated_at: dt.datetime
    finished_at: dt.datetime | None
    version: int

    @classmethod
    def of(cls, row: Task) -> TaskView:
        """The view of a task row."""
        return cls(
            id=row.id,
            tenant_id=row.tenant_id,
            created_by=row.created_by,
            title=row.title,
            objective=row.objective,
            context=row.context,
            callee_name=row.callee_name,
            phone=row.phone,
            language=row.language,
            voice=row.voice,
            timezone=row.timezone,
            window_start=row.window_start,
            window_end=row.window_end,
            window_days=tuple(row.window_days),
            retry_backoff=tuple(row.retry_backoff),
            voicemail_message=row.voicemail_message,
            status=row.status,
            max_attempts=row.max_attempts,
            current_attempt_count=row.current_attempt_count,
            total_calls=row.total_calls,
            next_action_time=row.next_action_time,
            collected_info=tuple(CollectedInfo.model_validate(i) for i in row.collected_info),
            result_summary=row.result_summary,
            outcome=row.outcome,
            cancel_requested_at=row.cancel_requested_at,
            created_at=row.created_at,
            updated_at=row.updated_at,
            finished_at=row.finished_at,
            version=row.version,
        )


@dataclass(frozen=True, slots=True)
class CallView:
    """One call attempt with its transcript, tool calls and figures."""

    id: uuid.UUID
    attempt_number: int
    status: CallStatus
    telephony_result: TelephonyResult | None
    end_reason: EndReason | None
    outcome: CallOutcome | None
    hangup_cause: int | None
    amd_verdict: AmdVerdict | None
    created_at: dt.datetime
    originated_at: dt.datetime | None
    answered_at: dt.datetime | None
    ended_at: dt.datetime | None
    transcript: tuple[TranscriptTurn, ...]
    tool_calls: tuple[ToolCallRecord, ...]
    analysis: dict[str, Any] | None
    usage: Usage | None
    figures: CallFigures | None
    recording_path: str | None

    @classmethod
    def of(cls, row: Call) -> CallView:
        """The view of a call row (JSON columns parsed into their shapes)."""
        return cls(
            id=row.id,
            attempt_number=row.attempt_number,
            status=row.status,
            telephony_result=row.telephony_result,
            end_reason=row.end_reason,
            outcome=row.outcome,
            hangup_cause=row.hangup_cause,
            amd_verdict=row.amd_verdict,
            created_at=row.created_at,
            originated_at=row.originated_at,
            answered_at=row.answered_at,
            ended_at=row.ended_at,
            transcript=tuple(TranscriptTurn.model_validate(t) for t in row.transcript),
            tool_calls=tuple(ToolCallRecord.model_validate(t) for t in row.tool_calls),
            analysis=row.analysis,
            usage=Usage.model_validate(row.usage) if row.usage is not None else None,
            figures=CallFigures.model_validate(row.figures) if row.figures is not None else None,
            recording_path=row.recording_path,
        )


@dataclass(frozen=True, slots=True)
class EventView:
    """One line of a task's audit trail."""

    id: int
    task_id: uuid.UUID
    call_id: uuid.UUID | None
    at: dt.datetime
    kind: EventKind
    message: str
    data: dict[str, Any]

    @classmethod
    def of(cls, row: TaskEvent) -> EventView:
        """The view of an event row."""
        return cls(
            id=row.id,
            task_id=row.task_id,
            call_id=row.call_id,
            at=row.at,
            kind=row.kind,
            message=row.message,
            data=dict(row.data),
        )


@dataclass(frozen=True, slots=True)
class QuestionView:
    """A question the AI asked the task's creator, with its task's title and deadline."""

    id: uuid.UUID
    task_id: uuid.UUID
    task_title: str
    call_id: uuid.UUID | None
    question: str
    recipient_message: str
    status: HitlStatus
    asked_at: dt.datetime
    timeout_seconds: float
    deadline: dt.datetime
    """When the call stops waiting for the answer (asked_at + timeout)."""
    answered_at: dt.datetime | None
    answer: str | None
    answered_by: str | None

    @classmethod
    def of(cls, row: HitlRequest, task_title: str) -> QuestionView:
        """The view of a HITL row; ``task_title`` comes from its task."""
        return cls(
            id=row.id,
            task_id=row.task_id,
            task_title=task_title,
            call_id=row.call_id,
            question=row.question,
            recipient_message=row.recipient_message,
            status=row.status,
            asked_at=row.asked_at,
            timeout_seconds=row.timeout_seconds,
            deadline=row.asked_at + dt.timedelta(seconds=row.timeout_seconds),
            answered_at=row.answered_at,
            answer=row.answer,
            answered_by=row.answered_by,
        )


@dataclass(frozen=True, slots=True)
class TaskDetail:
    """A task with its calls (by attempt), events (in order) and questions (as asked)."""

    task: TaskView
    calls: tuple[CallView, ...]
    events: tuple[EventView, ...]
    questions: tuple[QuestionView, ...]


@dataclass(frozen=True, slots=True)
class DncView:
    """A number a tenant must never call."""

    id: uuid.UUID
    tenant_id: uuid.UUID
    phone: str
    reason: str
    task_id: uuid.UUID | None
    added_at: dt.datetime

    @classmethod
    def of(cls, row: DncNumber) -> DncView:
        """The view of a DNC row."""
        return cls(
            id=row.id,
            tenant_id=row.tenant_id,
            phone=row.phone,
            reason=row.reason,
            task_id=row.task_id,
            added_at=row.added_at,
        )
