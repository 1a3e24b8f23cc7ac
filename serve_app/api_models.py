"""Request and response bodies of the REST API (pydantic at the edge, STYLE.md 7).

Requests forbid unknown fields, so a misspelt ``objectve`` is a 422 rather than silently
ignored. Responses are built from the repository's views; every timestamp is ISO-8601 UTC
(``2026-05-04T13:00:00Z``). Each model carries an example for the OpenAPI schema.
"""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Annotated, Any, Final, Literal

from pydantic import AwareDatetime, BaseModel, BeforeValidator, ConfigDict, Field

from db.repo import hitl, tasks
from db.repo.hitl import AnswerResult
from db.repo.views import CallView, EventView, QuestionView, TaskDetail, TaskSummary, TaskView
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

END_OF_DAY: Final = "24:00"
_CLOCK: Final = r"^([01][0-9]|2[0-3]):[0-5][0-9]$"
_CLOCK_OR_END: Final = r"^(([01][0-9]|2[0-3]):[0-5][0-9]|24:00)$"
_LANGUAGE: Final = r"^[A-Za-z]{2,3}(-[A-Za-z0-9]{1,8}){0,3}$"

TASK_ID: Final = "3f1c2a9e-8d4b-4c1e-9a57-2b6f0d8e7c11"
CALL_ID: Final = "b7e2d4f0-5a1c-4e3b-8f6d-9c0a1b2e3d4f"
QUESTION_ID: Final = "c4d5e6f7-1a2b-4c3d-9e8f-0a1b2c3d4e5f"
CREATED: Final = "2026-05-04T13:00:00Z"
WINDOW_EXAMPLE: Final = {"start": "09:00", "end": "18:00", "days": [0, 1, 2, 3, 4]}


def _whole_number(value: object) -> object:
    """JSON's idea of an integer: 3 and 3.0 yes; true, "3" and 3.5 no (JSON Schema agrees)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError("must be a whole number")
    if isinstance(value, float):
        if not value.is_integer():
            raise ValueError("must be a whole number")
        return int(value)
    return value


# Integer fields that take neither booleans nor numbers written as text. The bounds come before
# the validator so the JSON schema shows them as minimum/maximum.
Weekday = Annotated[int, Field(ge=0, le=6), BeforeValidator(_whole_number)]
Attempts = Annotated[int, Field(ge=1, le=1000), BeforeValidator(_whole_number)]


def _example(example: dict[str, Any]) -> dict[str, Any]:
    return {"examples": [example]}


def _clock(value: dt.time) -> str:
    return END_OF_DAY if value == dt.time.max else f"{value:%H:%M}"


def _time_of(text: str) -> dt.time:
    if text == END_OF_DAY:
        return dt.time.max
    return dt.time.fromisoformat(text)


# -- requests -------------------------------------------------------------------------------


class WindowIn(BaseModel):
    """A calling window: local hours ``[start, end)`` on weekdays (Monday = 0)."""

    model_config = ConfigDict(extra="forbid", json_schema_extra=_example(WINDOW_EXAMPLE))

    start: str = Field(pattern=_CLOCK, description="Local opening time, HH:MM.")
    end: str = Field(
        pattern=_CLOCK_OR_END, description="Local closing time, HH:MM; 24:00 = midnight."
    )
    days: list[Weekday] = Field(
        min_length=1, max_length=7, description="Allowed weekdays, 0 = Monday … 6 = Sunday."
    )

    def spec(self) -> tuple[dt.time, dt.time, list[int]]:
        """As the repository takes it."""
        return _time_of(self.start), _time_of(self.end), self.days


class TaskCreate(BaseModel):
    """A new task: whom to call, what to achieve, and when."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra=_example(
            {
                "to": "+1 415 555 0100",
                "objective": "Book a table for two on Friday at 8pm",
                "context": "The booking is in the name of Alex Martin; a terrace table if any.",
                "callee_name": "Chez Marcel",
                "language": "en",
                "timezone": "America/Los_Angeles",
                "window": WINDOW_EXAMPLE,
                "at": "2026-05-04T16:00:00-07:00",
                "max_attempts": 3,
            }
        ),
    )

    to: str = Field(
        min_length=1, max_length=64, description="The number to call, with + and country code."
    )
    objective: str = Field(
        min_length=1, max_length=tasks.MAX_OBJECTIVE_CHARS, description="What the call is for."
    )
    context: str = Field(
        default="",
        max_length=tasks.MAX_CONTEXT_CHARS,
        description="Facts the AI may use and share during the call.",
    )
    title: str | None = Field(default=None, max_length=tasks.MAX_TITLE_CHARS)
    callee_name: str | None = Field(default=None, max_length=tasks.MAX_CALLEE_NAME_CHARS)
    language: str = Field(default="en", max_length=16, pattern=_LANGUAGE)
    voice: str | None = Field(default=None, max_length=tasks.MAX_VOICE_CHARS)
    timezone: str | None = Field(
        default=None, max_length=64, description="The callee's IANA zone; else from the number."
    )
    window: WindowIn | None = Field(default=None, description="Default: the tenant's window.")
    at: AwareDatetime | None = Field(
        default=None,
        description="When to call, ISO-8601 with an offset; omitted = as soon as possible.",
    )
    max_attempts: Attempts | None = None
    voicemail_message: str | None = Field(default=None, max_length=tasks.MAX_VOICEMAIL_CHARS)


class AnswerIn(BaseModel):
    """The answer to a question the AI asked during a call."""

    model_config = ConfigDict(
        extra="forbid", json_schema_extra=_example({"answer": "The order number is 4417."})
    )

    answer: str = Field(min_length=1, max_length=hitl.MAX_ANSWER_CHARS)


# -- responses ------------------------------------------------------------------------------


class _Out(BaseModel):
    # The repository's datetimes are always aware UTC (db.models.UtcDateTime), which pydantic
    # writes as ISO-8601 with a Z.
    model_config = ConfigDict(from_attributes=True)


class WindowOut(BaseModel):
    """A calling window as stored."""

    model_config = ConfigDict(json_schema_extra=_example(WINDOW_EXAMPLE))

    start: str
    end: str
    days: list[int]

    @classmethod
    def of(cls, start: dt.time, end: dt.time, days: tuple[int, ...]) -> WindowOut:
        """From a view's window columns."""
        return cls(start=_clock(start), end=_clock(end), days=list(days))


_SUMMARY_EXAMPLE: Final[dict[str, Any]] = {
    "id": TASK_ID,
    "title": "Book a table for two on Friday at 8pm",
    "phone": "+14155550100",
    "callee_name": "Chez Marcel",
    "status": "PENDING",
    "outcome": None,
    "next_action_time": CREATED,
    "total_calls": 0,
    "current_attempt_count": 0,
    "max_attempts": 3,
    "cancel_requested": False,
    "created_at": CREATED,
    "updated_at": CREATED,
}


class TaskSummaryOut(_Out):
    """One line of the task list."""

    model_config = ConfigDict(json_schema_extra=_example(_SUMMARY_EXAMPLE))

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
    def of(cls, view: TaskSummary) -> TaskSummaryOut:
        """From the repository's summary."""
        return cls.model_validate(view)


class TaskListOut(BaseModel):
    """A page of the tenant's tasks, newest first, and how many there are in all."""

    model_config = ConfigDict(json_schema_extra=_example({"items": [_SUMMARY_EXAMPLE], "total": 1}))

    items: list[TaskSummaryOut]
    total: int


_CALL_EXAMPLE: Final[dict[str, Any]] = {
    "id": CALL_ID,
    "attempt_number": 1,
    "status": "ENDED",
    "telephony_result": "answered",
    "end_reason": "completed",
    "outcome": "SUCCESS",
    "hangup_cause": 16,
    "amd_verdict": None,
    "created_at": CREATED,
    "originated_at": "2026-05-04T13:00:01Z",
    "answered_at": "2026-05-04T13:00:06Z",
    "ended_at": "2026-05-04T13:01:30Z",
    "transcript": [
        {
            "speaker": "agent",
            "text": "Hello, I am an AI assistant calling for Alex Martin.",
            "start_ms": 0,
            "end_ms": 2400,
            "interrupted": False,
        },
    ],
    "tool_calls": [],
    "analysis": {"summary": "Table booked for Friday 8pm."},
    "usage": None,
    "figures": {"setup_ms": 1450.0, "underruns": 0},
    "has_recording": False,
}


class CallOut(_Out):
    """One call attempt: times, what the PBX said, why it ended, what it achieved."""

    model_config = ConfigDict(json_schema_extra=_example(_CALL_EXAMPLE))

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
    transcript: list[TranscriptTurn]
    tool_calls: list[ToolCallRecord]
    analysis: dict[str, Any] | None
    usage: Usage | None
    figures: CallFigures | None
    has_recording: bool = Field(description="Whether a recording of this call was kept.")

    @classmethod
    def of(cls, view: CallView) -> CallOut:
        """From the repository's call view (the recording's server path stays private)."""
        values = {k: getattr(view, k) for k in cls.model_fields if k != "has_recording"}
        return cls(**values, has_recording=view.recording_path is not None)


_EVENT_EXAMPLE: Final[dict[str, Any]] = {
    "id": 42,
    "task_id": TASK_ID,
    "call_id": None,
    "at": CREATED,
    "kind": "TASK_CREATED",
    "message": "Task created: call +1 415 555 0100 — scheduled for 2026-05-04 06:00 "
    "America/Los_Angeles",
    "data": {"phone": "+14155550100"},
}


class EventOut(_Out):
    """One line of a task's audit trail."""

    model_config = ConfigDict(json_schema_extra=_example(_EVENT_EXAMPLE))

    id: int
    task_id: uuid.UUID
    call_id: uuid.UUID | None
    at: dt.datetime
    kind: EventKind
    message: str
    data: dict[str, Any]

    @classmethod
    def of(cls, view: EventView) -> EventOut:
        """From the repository's event view."""
        return cls.model_validate(view)


_QUESTION_EXAMPLE: Final[dict[str, Any]] = {
    "id": QUESTION_ID,
    "task_id": TASK_ID,
    "task_title": "Book a table for two on Friday at 8pm",
    "call_id": CALL_ID,
    "question": "They only have 8:30pm; is that all right?",
    "recipient_message": "Let me check that with Alex, one moment please.",
    "status": "PENDING",
    "asked_at": CREATED,
    "timeout_seconds": 60.0,
    "deadline": "2026-05-04T13:01:00Z",
    "answered_at": None,
    "answer": None,
    "answered_by": None,
}


class QuestionOut(_Out):
    """A question the AI asked the task's creator, and its answer when there is one."""

    model_config = ConfigDict(json_schema_extra=_example(_QUESTION_EXAMPLE))

    id: uuid.UUID
    task_id: uuid.UUID
    task_title: str
    call_id: uuid.UUID | None
    question: str
    recipient_message: str
    status: HitlStatus
    asked_at: dt.datetime
    timeout_seconds: float
    deadline: dt.datetime = Field(description="When the live call stops waiting for the answer.")
    answered_at: dt.datetime | None
    answer: str | None
    answered_by: str | None

    @classmethod
    def of(cls, view: QuestionView) -> QuestionOut:
        """From the repository's question view."""
        return cls.model_validate(view)


class QuestionListOut(BaseModel):
    """The tenant's questions (open ones oldest first; all of them newest first)."""

    model_config = ConfigDict(json_schema_extra=_example({"items": [_QUESTION_EXAMPLE]}))

    items: list[QuestionOut]


_TASK_EXAMPLE: Final[dict[str, Any]] = {
    **_SUMMARY_EXAMPLE,
    "objective": "Book a table for two on Friday at 8pm",
    "context": "The booking is in the name of Alex Martin.",
    "language": "en",
    "voice": None,
    "timezone": "America/Los_Angeles",
    "window": WINDOW_EXAMPLE,
    "retry_backoff": [300.0, 1800.0, 7200.0],
    "voicemail_message": None,
    "collected_info": [],
    "result_summary": None,
    "cancel_requested_at": None,
    "finished_at": None,
    "version": 1,
    "calls": [],
    "events": [_EVENT_EXAMPLE],
    "questions": [],
}


class TaskOut(_Out):
    """A task with its calls (by attempt), events (in order) and questions (as asked)."""

    model_config = ConfigDict(json_schema_extra=_example(_TASK_EXAMPLE))

    id: uuid.UUID
    title: str
    objective: str
    context: str
    callee_name: str | None
    phone: str
    language: str
    voice: str | None
    timezone: str | None
    window: WindowOut
    retry_backoff: list[float]
    voicemail_message: str | None
    status: TaskStatus
    outcome: CallOutcome | None
    max_attempts: int
    current_attempt_count: int
    total_calls: int
    next_action_time: dt.datetime | None
    collected_info: list[CollectedInfo]
    result_summary: str | None
    cancel_requested: bool
    cancel_requested_at: dt.datetime | None
    created_at: dt.datetime
    updated_at: dt.datetime
    finished_at: dt.datetime | None
    version: int
    calls: list[CallOut]
    events: list[EventOut]
    questions: list[QuestionOut]

    @classmethod
    def of(cls, detail: TaskDetail) -> TaskOut:
        """From the repository's task detail."""
        task: TaskView = detail.task
        skip = {"window", "cancel_requested", "calls", "events", "questions"}
        values = {k: getattr(task, k) for k in cls.model_fields if k not in skip}
        return cls(
            **values,
            window=WindowOut.of(task.window_start, task.window_end, task.window_days),
            cancel_requested=task.cancel_requested_at is not None,
            calls=[CallOut.of(c) for c in detail.calls],
            events=[EventOut.of(e) for e in detail.events],
            questions=[QuestionOut.of(q) for q in detail.questions],
        )


AnswerEffect = Literal["delivered", "callback_scheduled"]


class AnswerOut(_Out):
    """What an answer did: reached the live call, or came late and set up a callback."""

    model_config = ConfigDict(
        json_schema_extra=_example(
            {
                "effect": "delivered",
                "late": False,
                "message": "The answer was sent to the call in progress.",
                "task_status": "IN_PROGRESS",
                "next_action_time": None,
                "question": {
                    **_QUESTION_EXAMPLE,
                    "status": "ANSWERED",
                    "answer": "Yes, 8:30pm is fine.",
                    "answered_at": CREATED,
                    "answered_by": "api:crm",
                },
            }
        )
    )

    effect: AnswerEffect = Field(
        description="delivered: the live call gets it; callback_scheduled: the call had "
        "stopped waiting, and the task's next call will use the answer."
    )
    late: bool = Field(description="Whether the call had stopped waiting for it.")
    message: str
    task_status: TaskStatus
    next_action_time: dt.datetime | None
    question: QuestionOut

    @classmethod
    def of(cls, result: AnswerResult) -> AnswerOut:
        """From the repository's answer result."""
        effect, message = _effect(result)
        return cls(
            effect=effect,
            late=result.late,
            message=message,
            task_status=result.task_status,
            next_action_time=result.next_action_time,
            question=QuestionOut.of(result.question),
        )


_WAITING: Final = (TaskStatus.PENDING, TaskStatus.RETRY_SCHEDULED)


def _effect(result: AnswerResult) -> tuple[AnswerEffect, str]:
    if not result.late:
        return "delivered", "The answer was sent to the call in progress."
    if result.next_action_time is not None and result.task_status in _WAITING:
        when = result.next_action_time.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
        return "callback_scheduled", f"The call had ended; the next call ({when}) will use it."
    return "callback_scheduled", "The call had stopped waiting; the task will call back with it."


class HealthOut(BaseModel):
    """Liveness of the API and its database."""

    model_config = ConfigDict(json_schema_extra=_example({"status": "ok", "database": "ok"}))

    status: Literal["ok", "degraded"]
    database: Literal["ok", "unavailable"]


class ErrorBody(BaseModel):
    """What went wrong, for a program (status, code) and for a person (message)."""

    status: int
    code: str = Field(description="A stable identifier, e.g. not_found, do_not_call.")
    message: str = Field(description="A sentence a person understands.")
    fields: list[dict[str, str]] | None = Field(
        default=None, description="For 422: each invalid field and what is wrong with it."
    )


class ErrorOut(BaseModel):
    """Every error response: ``{"error": {...}}``."""

    model_config = ConfigDict(
        json_schema_extra=_example(
            {"error": {"status": 404, "code": "not_found", "message": f"No task {TASK_ID}."}}
        )
    )

    error: ErrorBody
