"""CallActor → TaskActor messages: one kind enum and one typed payload per kind.

A CallActor never touches the database (DESIGN.md §2): it reports what happens on its call
as :class:`CallMessage` values carrying ``(call_id, seq)``, ``seq`` increasing per call from 1.
The TaskActor persists each one exactly once with :func:`db.repo.calls.apply_call_event`,
which drops any ``seq`` it has already applied, so delivery may be retried freely.

Imports only the standard library, pydantic and the SQLAlchemy-free ``db.states`` /
``db.shapes``, so the CallActor can build messages without SQLAlchemy.
"""

from __future__ import annotations

import enum
import uuid
from collections.abc import Mapping
from typing import Any, Final, cast

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, model_validator

from db.shapes import CallFigures, ToolCallRecord, TranscriptTurn, Usage
from db.states import AmdVerdict, EndReason, TelephonyResult

DTMF_DIGITS: Final = "0123456789*#ABCD"
"""The 16 DTMF symbols."""


class CallMessageKind(enum.StrEnum):
    """What a CallActor reports about its call."""

    ORIGINATED = "originated"
    ANSWERED = "answered"
    TRANSCRIPT_TURN = "transcript_turn"
    TOOL_CALL = "tool_call"
    DTMF_SENT = "dtmf_sent"
    DTMF_RECEIVED = "dtmf_received"
    AMD_VERDICT = "amd_verdict"
    HITL_REQUESTED = "hitl_requested"
    HITL_TIMED_OUT = "hitl_timed_out"
    ENDED = "ended"


class _Payload(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Originated(_Payload):
    """The PbxGateway queued the Originate for this call."""

    at: AwareDatetime


class Answered(_Payload):
    """The callee answered (the AudioSocket connected)."""

    at: AwareDatetime


class TranscriptTurnAdded(_Payload):
    """One finished turn of the conversation."""

    turn: TranscriptTurn


class ToolCalled(_Payload):
    """The model called a tool and got this result."""

    record: ToolCallRecord


class DtmfSent(_Payload):
    """The agent sent DTMF digits (``send_dtmf``)."""

    digits: str = Field(min_length=1, max_length=64, pattern=r"^[0-9*#A-D]+$")
    at: AwareDatetime


class DtmfReceived(_Payload):
    """The callee pressed a key (an AudioSocket ``0x03`` frame)."""

    digit: str = Field(min_length=1, max_length=1, pattern=r"^[0-9*#A-D]$")
    at: AwareDatetime


class AmdReported(_Payload):
    """Asterisk's answering-machine detection verdict for this call."""

    verdict: AmdVerdict
    cause: str = Field(default="", max_length=100)
    at: AwareDatetime


class HitlRequested(_Payload):
    """The model asked the task's creator a question (``request_user_info``).

    ``request_id`` is made by the CallActor and becomes the HitlRequest row's primary key.
    """

    request_id: uuid.UUID
    question: str = Field(min_length=1, max_length=4000)
    recipient_message: str = Field(default="", max_length=4000)
    timeout_seconds: float = Field(gt=0)
    at: AwareDatetime


class HitlTimedOut(_Payload):
    """The CallActor's timer for a question fired (the row decides whether it really did)."""

    request_id: uuid.UUID
    at: AwareDatetime


class Ended(_Payload):
    """The call is over: what the PBX said, why it ended, and what it cost."""

    telephony_result: TelephonyResult
    end_reason: EndReason
    originate_reason: int | None = None
    """AMI ``OriginateResponse`` Reason (4 answered, 3 no answer, 5 busy, 8 congestion, …)."""
    hangup_cause: int | None = None
    """The most specific non-zero Q.850 cause among the call's legs."""
    usage: Usage | None = None
    figures: CallFigures | None = None
    recording_path: str | None = Field(default=None, max_length=1000)
    at: AwareDatetime


CallPayload = (
    Originated
    | Answered
    | TranscriptTurnAdded
    | ToolCalled
    | DtmfSent
    | DtmfReceived
    | AmdReported
    | HitlRequested
    | HitlTimedOut
    | Ended
)

PAYLOAD_TYPES: Final[Mapping[CallMessageKind, type[_Payload]]] = {
    CallMessageKind.ORIGINATED: Originated,
    CallMessageKind.ANSWERED: Answered,
    CallMessageKind.TRANSCRIPT_TURN: TranscriptTurnAdded,
    CallMessageKind.TOOL_CALL: ToolCalled,
    CallMessageKind.DTMF_SENT: DtmfSent,
    CallMessageKind.DTMF_RECEIVED: DtmfReceived,
    CallMessageKind.AMD_VERDICT: AmdReported,
    CallMessageKind.HITL_REQUESTED: HitlRequested,
    CallMessageKind.HITL_TIMED_OUT: HitlTimedOut,
    CallMessageKind.ENDED: Ended,
}
"""The payload model of each message kind (the lookup table, STYLE.md habit 2)."""


def parse_payload(kind: CallMessageKind, payload: CallPayload | Mapping[str, Any]) -> CallPayload:
    """Check ``payload`` against ``kind``'s model; raise ``ValueError`` when it does not fit.

    Accepts the model itself or its JSON-able dict (what crosses a Ray boundary either way).
    """
    model = PAYLOAD_TYPES[CallMessageKind(kind)]
    if isinstance(payload, BaseModel):
        if not isinstance(payload, model):
            got = type(payload).__name__
            raise ValueError(f"a {kind} message carries {model.__name__}, not {got}")
        return payload
    # cast: the table maps every kind to a member of CallPayload.
    return cast(CallPayload, model.model_validate(dict(payload)))


class CallMessage(_Payload):
    """One message from a CallActor to its TaskActor (the envelope of a payload)."""

    call_id: uuid.UUID
    seq: int = Field(ge=1)
    """Increases by one per message of this call, from 1; duplicates are dropped."""
    kind: CallMessageKind
    payload: CallPayload

    @model_validator(mode="before")
    @classmethod
    def _payload_by_kind(cls, data: Any) -> Any:
        # Several payloads share a shape (Originated, Answered): the kind decides, not the union.
        if isinstance(data, Mapping) and "kind" in data and "payload" in data:
            kind = CallMessageKind(data["kind"])
            return {**data, "payload": parse_payload(kind, data["payload"])}
        return data

    @classmethod
    def of(
        cls, call_id: uuid.UUID, seq: int, kind: CallMessageKind, payload: CallPayload
    ) -> CallMessage:
        """Build a message, checking that ``payload`` is ``kind``'s model."""
        return cls(call_id=call_id, seq=seq, kind=kind, payload=parse_payload(kind, payload))
