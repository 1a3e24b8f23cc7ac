"""Lifecycles of OpenDeep: every status enum, its transition table, and the one checker.

This module imports only the standard library, so a CallActor can use it without
SQLAlchemy (DESIGN.md §3). No status string literal may appear anywhere else.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from typing import Any, TypeVar


class IllegalTransitionError(ValueError):
    """Raised when a lifecycle move is not in its transition table."""

    def __init__(self, kind: str, current: enum.Enum, target: enum.Enum) -> None:
        super().__init__(f"illegal {kind} transition {current.value} -> {target.value}")
        self.kind = kind
        self.current = current
        self.target = target


class TaskStatus(enum.StrEnum):
    """Where a task is in its life."""

    PENDING = "PENDING"
    IN_PROGRESS = "IN_PROGRESS"
    ANALYZING = "ANALYZING"
    RETRY_SCHEDULED = "RETRY_SCHEDULED"
    PENDING_USER_INFO = "PENDING_USER_INFO"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"


class CallStatus(enum.StrEnum):
    """Where one call attempt is in its life."""

    CREATED = "CREATED"
    DIALING = "DIALING"
    ANSWERED = "ANSWERED"
    ENDED = "ENDED"
    NOT_ANSWERED = "NOT_ANSWERED"
    FAILED = "FAILED"


class HitlStatus(enum.StrEnum):
    """Where a human-in-the-loop question is in its life."""

    PENDING = "PENDING"
    ANSWERED = "ANSWERED"
    TIMED_OUT = "TIMED_OUT"
    CANCELLED = "CANCELLED"
    ANSWERED_LATE = "ANSWERED_LATE"
    EXPIRED = "EXPIRED"


class CallOutcome(enum.StrEnum):
    """What a call achieved, as decided by the post-call analysis."""

    SUCCESS = "SUCCESS"
    INCOMPLETE = "INCOMPLETE"
    FAILED_NO_ANSWER = "FAILED_NO_ANSWER"
    FAILED_BUSY = "FAILED_BUSY"
    FAILED_CONGESTION = "FAILED_CONGESTION"
    FAILED_VOICEMAIL = "FAILED_VOICEMAIL"
    FAILED_REJECTED = "FAILED_REJECTED"
    RESCHEDULE_REQUESTED = "RESCHEDULE_REQUESTED"
    NEEDS_USER_INFO = "NEEDS_USER_INFO"
    WRONG_NUMBER = "WRONG_NUMBER"
    DO_NOT_CALL = "DO_NOT_CALL"
    FAILED_TECHNICAL = "FAILED_TECHNICAL"


class EventKind(enum.StrEnum):
    """Kinds of rows in the append-only task_events audit log."""

    TASK_CREATED = "TASK_CREATED"
    SCHEDULED = "SCHEDULED"
    DIAL_STARTED = "DIAL_STARTED"
    CALL_ANSWERED = "CALL_ANSWERED"
    CALL_NOT_ANSWERED = "CALL_NOT_ANSWERED"
    VOICEMAIL_DETECTED = "VOICEMAIL_DETECTED"
    DTMF_SENT = "DTMF_SENT"
    DTMF_RECEIVED = "DTMF_RECEIVED"
    USER_INFO_REQUESTED = "USER_INFO_REQUESTED"
    USER_INFO_PROVIDED = "USER_INFO_PROVIDED"
    USER_INFO_TIMEOUT = "USER_INFO_TIMEOUT"
    USER_INFO_PROVIDED_LATE = "USER_INFO_PROVIDED_LATE"
    CALL_ENDED = "CALL_ENDED"
    ANALYZED = "ANALYZED"
    RETRY_SCHEDULED = "RETRY_SCHEDULED"
    RESCHEDULED_BY_CALLEE = "RESCHEDULED_BY_CALLEE"
    DEFERRED = "DEFERRED"
    CANCEL_REQUESTED = "CANCEL_REQUESTED"
    CANCELLED = "CANCELLED"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"
    EXPIRED = "EXPIRED"
    DNC_ADDED = "DNC_ADDED"
    RECOVERED = "RECOVERED"
    ANALYSIS_FALLBACK = "ANALYSIS_FALLBACK"
    TECHNICAL_FAILURE = "TECHNICAL_FAILURE"


class EndReason(enum.StrEnum):
    """Why a call ended (calls.end_reason)."""

    # Chosen by the model through the end_call tool.
    COMPLETED = "completed"
    CALLEE_DECLINED = "callee_declined"
    DO_NOT_CALL = "do_not_call"
    WRONG_NUMBER = "wrong_number"
    VOICEMAIL = "voicemail"
    IVR_DEAD_END = "ivr_dead_end"
    CALLBACK_REQUESTED = "callback_requested"
    OTHER = "other"
    # Set by the system.
    CALLEE_HUNG_UP = "callee_hung_up"
    MAX_DURATION = "max_duration"
    CANCELLED = "cancelled"
    USER_INFO_TIMEOUT = "user_info_timeout"
    NOT_ANSWERED = "not_answered"
    NOT_CONNECTED = "not_connected"
    TECHNICAL_ERROR = "technical_error"


MODEL_END_REASONS: frozenset[EndReason] = frozenset(
    {
        EndReason.COMPLETED,
        EndReason.CALLEE_DECLINED,
        EndReason.DO_NOT_CALL,
        EndReason.WRONG_NUMBER,
        EndReason.VOICEMAIL,
        EndReason.IVR_DEAD_END,
        EndReason.CALLBACK_REQUESTED,
        EndReason.OTHER,
    }
)
"""The end reasons the model may pass to ``end_call``; the rest are the system's."""


class TelephonyResult(enum.StrEnum):
    """What the PBX said about an Originate (the AMI client's typed result)."""

    ANSWERED = "answered"
    NO_ANSWER = "no_answer"
    BUSY = "busy"
    CONGESTION = "congestion"
    REJECTED = "rejected"
    FAILED = "failed"
    UNKNOWN = "unknown"


class AmdVerdict(enum.StrEnum):
    """Answering-machine detection verdicts (Asterisk's AMDSTATUS values)."""

    HUMAN = "HUMAN"
    MACHINE = "MACHINE"
    NOTSURE = "NOTSURE"
    HANGUP = "HANGUP"


_T = TaskStatus
TASK_TRANSITIONS: Mapping[TaskStatus, frozenset[TaskStatus]] = {
    _T.PENDING: frozenset({_T.IN_PROGRESS, _T.CANCELLED, _T.FAILED}),
    _T.IN_PROGRESS: frozenset({_T.ANALYZING, _T.RETRY_SCHEDULED, _T.CANCELLED}),
    _T.ANALYZING: frozenset(
        {_T.COMPLETED, _T.RETRY_SCHEDULED, _T.PENDING_USER_INFO, _T.FAILED, _T.CANCELLED}
    ),
    _T.RETRY_SCHEDULED: frozenset({_T.IN_PROGRESS, _T.CANCELLED, _T.FAILED}),
    _T.PENDING_USER_INFO: frozenset({_T.RETRY_SCHEDULED, _T.CANCELLED, _T.FAILED}),
    _T.COMPLETED: frozenset(),
    _T.FAILED: frozenset(),
    _T.CANCELLED: frozenset(),
}

_C = CallStatus
CALL_TRANSITIONS: Mapping[CallStatus, frozenset[CallStatus]] = {
    _C.CREATED: frozenset({_C.DIALING, _C.FAILED}),
    _C.DIALING: frozenset({_C.ANSWERED, _C.NOT_ANSWERED, _C.FAILED}),
    _C.ANSWERED: frozenset({_C.ENDED, _C.FAILED}),
    _C.ENDED: frozenset(),
    _C.NOT_ANSWERED: frozenset(),
    _C.FAILED: frozenset(),
}

_H = HitlStatus
HITL_TRANSITIONS: Mapping[HitlStatus, frozenset[HitlStatus]] = {
    _H.PENDING: frozenset({_H.ANSWERED, _H.TIMED_OUT, _H.CANCELLED}),
    _H.TIMED_OUT: frozenset({_H.ANSWERED_LATE, _H.EXPIRED}),
    _H.ANSWERED: frozenset(),
    _H.CANCELLED: frozenset(),
    _H.ANSWERED_LATE: frozenset(),
    _H.EXPIRED: frozenset(),
}

TERMINAL_TASK_STATUSES: frozenset[TaskStatus] = frozenset(
    s for s, targets in TASK_TRANSITIONS.items() if not targets
)
ACTIVE_TASK_STATUSES: frozenset[TaskStatus] = frozenset({_T.IN_PROGRESS, _T.ANALYZING})
"""Statuses in which only the task's TaskActor may change it (DESIGN.md §2)."""
CLAIMABLE_TASK_STATUSES: frozenset[TaskStatus] = frozenset({_T.PENDING, _T.RETRY_SCHEDULED})
"""Statuses the supervisor may claim when due."""
WAITING_TASK_STATUSES: frozenset[TaskStatus] = frozenset(
    {_T.PENDING, _T.RETRY_SCHEDULED, _T.PENDING_USER_INFO}
)
"""Statuses in which a task is a row, not an actor; the front may cancel it at once."""
TERMINAL_CALL_STATUSES: frozenset[CallStatus] = frozenset(
    s for s, targets in CALL_TRANSITIONS.items() if not targets
)

_S = TypeVar("_S", bound=enum.Enum)


def _check(kind: str, table: Mapping[_S, frozenset[_S]], current: _S, target: _S) -> _S:
    if target not in table[current]:
        raise IllegalTransitionError(kind, current, target)
    return target


def can_transition(table: Mapping[_S, frozenset[_S]], current: _S, target: _S) -> bool:
    """Whether ``current -> target`` is in ``table``."""
    return target in table[current]


def transition_task(current: TaskStatus, target: TaskStatus) -> TaskStatus:
    """Return ``target`` if a task may move there from ``current``, else raise."""
    return _check("task", TASK_TRANSITIONS, current, target)


def transition_call(current: CallStatus, target: CallStatus) -> CallStatus:
    """Return ``target`` if a call may move there from ``current``, else raise."""
    return _check("call", CALL_TRANSITIONS, current, target)


def transition_hitl(current: HitlStatus, target: HitlStatus) -> HitlStatus:
    """Return ``target`` if a HITL request may move there from ``current``, else raise."""
    return _check("hitl", HITL_TRANSITIONS, current, target)


_TABLES: Mapping[type[enum.Enum], tuple[str, Mapping[Any, frozenset[Any]]]] = {
    TaskStatus: ("task", TASK_TRANSITIONS),
    CallStatus: ("call", CALL_TRANSITIONS),
    HitlStatus: ("hitl", HITL_TRANSITIONS),
}


def transition(current: _S, target: _S) -> _S:
    """Check any lifecycle move by the type of ``current``; raise if it is illegal."""
    if type(current) is not type(target) or type(current) not in _TABLES:
        raise TypeError(f"no lifecycle for {type(current).__name__} -> {type(target).__name__}")
    kind, table = _TABLES[type(current)]
    checked: _S = _check(kind, table, current, target)
    return checked
