"""OpenAI Realtime (GA) wire events as typed models, found through a registry.

Client events are the ones we send; server events the ones we act on. Server models ignore
fields they do not name (the API adds fields over time); a server event whose type is not in
:data:`SERVER_EVENTS` is logged once per type and skipped; a known type that fails validation is
logged (field names and reasons only, never values: a value can be audio) and skipped. Beta-era
names (``response.audio.delta``, ``response.text.delta`` …) are deliberately unknown.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from typing import Any, Final, Literal

from pydantic import BaseModel, ConfigDict, ValidationError

from db.shapes import Usage

__all__ = [
    "IGNORED_SERVER_EVENTS",
    "SERVER_EVENTS",
    "ClientEvent",
    "ConversationItemCreate",
    "ConversationItemTruncate",
    "ConversationItemTruncated",
    "ErrorDetail",
    "ErrorEvent",
    "FunctionCallArgumentsDone",
    "FunctionCallOutputItem",
    "InputAudioBufferAppend",
    "InputAudioBufferCommitted",
    "InputAudioTranscriptionCompleted",
    "InputAudioTranscriptionDelta",
    "InputText",
    "ItemInfo",
    "OutputAudioDelta",
    "OutputAudioDone",
    "OutputAudioTranscriptDelta",
    "OutputAudioTranscriptDone",
    "OutputItemDone",
    "ResponseCancel",
    "ResponseCreate",
    "ResponseCreated",
    "ResponseDone",
    "ResponseInfo",
    "ResponseOptions",
    "ResponseStatusDetails",
    "ResponseUsage",
    "ServerEvent",
    "SessionCreated",
    "SessionUpdate",
    "SessionUpdated",
    "SpeechStarted",
    "SpeechStopped",
    "UserMessageItem",
    "decode_server_message",
    "parse_server_event",
]

logger = logging.getLogger(__name__)


# -- client events (what we send) ------------------------------------------------------------


class ClientEvent(BaseModel):
    """Base of the events we send; ``to_json`` is the exact text frame."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    type: str
    event_id: str | None = None

    def to_json(self) -> str:
        """The wire form: unset optional fields are left out, nested nulls kept."""
        return self.model_dump_json(exclude_none=True)


class SessionUpdate(ClientEvent):
    """``session.update``: the whole session configuration (built by ai.prompts)."""

    type: Literal["session.update"] = "session.update"
    session: dict[str, Any]


class InputAudioBufferAppend(ClientEvent):
    """``input_audio_buffer.append``: base64 audio in the session's input format."""

    type: Literal["input_audio_buffer.append"] = "input_audio_buffer.append"
    audio: str


class InputText(BaseModel):
    """One text part of a user message."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    type: Literal["input_text"] = "input_text"
    text: str


class UserMessageItem(BaseModel):
    """A user message made of text parts (DTMF notes, answers from the task's creator)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    type: Literal["message"] = "message"
    role: Literal["user"] = "user"
    content: list[InputText]


class FunctionCallOutputItem(BaseModel):
    """The result of a tool call, sent back to the model."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    type: Literal["function_call_output"] = "function_call_output"
    call_id: str
    output: str


class ConversationItemCreate(ClientEvent):
    """``conversation.item.create``: add a user text or a function call output."""

    type: Literal["conversation.item.create"] = "conversation.item.create"
    item: UserMessageItem | FunctionCallOutputItem
    previous_item_id: str | None = None


class ResponseOptions(BaseModel):
    """The per-response overrides we use."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    instructions: str | None = None


class ResponseCreate(ClientEvent):
    """``response.create``: ask the model to speak now."""

    type: Literal["response.create"] = "response.create"
    response: ResponseOptions | None = None


class ResponseCancel(ClientEvent):
    """``response.cancel``: stop the response in progress (or the one named)."""

    type: Literal["response.cancel"] = "response.cancel"
    response_id: str | None = None


class ConversationItemTruncate(ClientEvent):
    """``conversation.item.truncate``: forget assistant audio the callee never heard."""

    type: Literal["conversation.item.truncate"] = "conversation.item.truncate"
    item_id: str
    content_index: int = 0
    audio_end_ms: int


# -- server events (what we act on) ----------------------------------------------------------


class _Wire(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class ServerEvent(_Wire):
    """Base of the server events we model."""

    type: str
    event_id: str = ""


class SessionCreated(ServerEvent):
    """``session.created``: the first event on a new socket."""

    type: Literal["session.created"] = "session.created"
    session: dict[str, Any] = {}


class SessionUpdated(ServerEvent):
    """``session.updated``: the effective configuration after our ``session.update``."""

    type: Literal["session.updated"] = "session.updated"
    session: dict[str, Any] = {}


class SpeechStarted(ServerEvent):
    """``input_audio_buffer.speech_started``: the callee started talking (barge-in)."""

    type: Literal["input_audio_buffer.speech_started"] = "input_audio_buffer.speech_started"
    audio_start_ms: int
    item_id: str


class SpeechStopped(ServerEvent):
    """``input_audio_buffer.speech_stopped``: the callee stopped talking."""

    type: Literal["input_audio_buffer.speech_stopped"] = "input_audio_buffer.speech_stopped"
    audio_end_ms: int
    item_id: str


class InputAudioBufferCommitted(ServerEvent):
    """``input_audio_buffer.committed``: a user item was made from the buffered audio."""

    type: Literal["input_audio_buffer.committed"] = "input_audio_buffer.committed"
    item_id: str
    previous_item_id: str | None = None


class InputAudioTranscriptionDelta(ServerEvent):
    """``conversation.item.input_audio_transcription.delta``: part of the callee's words."""

    type: Literal["conversation.item.input_audio_transcription.delta"] = (
        "conversation.item.input_audio_transcription.delta"
    )
    item_id: str
    content_index: int = 0
    delta: str = ""


class InputAudioTranscriptionCompleted(ServerEvent):
    """``conversation.item.input_audio_transcription.completed``: the callee's turn as text."""

    type: Literal["conversation.item.input_audio_transcription.completed"] = (
        "conversation.item.input_audio_transcription.completed"
    )
    item_id: str
    content_index: int = 0
    transcript: str


class ResponseStatusDetails(_Wire):
    """Why a response ended the way it did."""

    type: str | None = None
    reason: str | None = None
    error: dict[str, Any] | None = None


class InputTokenDetails(_Wire):
    """Input tokens by kind."""

    text_tokens: int = 0
    audio_tokens: int = 0
    cached_tokens: int = 0


class OutputTokenDetails(_Wire):
    """Output tokens by kind."""

    text_tokens: int = 0
    audio_tokens: int = 0


class ResponseUsage(_Wire):
    """Token usage of one response, as billed."""

    input_tokens: int = 0
    output_tokens: int = 0
    total_tokens: int = 0
    input_token_details: InputTokenDetails | None = None
    output_token_details: OutputTokenDetails | None = None

    def to_usage(self) -> Usage:
        """The call's usage shape (DESIGN.md §3), summed per response by the caller."""
        inp = self.input_token_details or InputTokenDetails()
        out = self.output_token_details or OutputTokenDetails()
        return Usage(
            input_text_tokens=inp.text_tokens,
            input_audio_tokens=inp.audio_tokens,
            input_cached_tokens=inp.cached_tokens,
            output_text_tokens=out.text_tokens,
            output_audio_tokens=out.audio_tokens,
        )


class ItemInfo(_Wire):
    """A conversation item as the server reports it (messages and function calls)."""

    type: str
    id: str | None = None
    role: str | None = None
    status: str | None = None
    name: str | None = None
    call_id: str | None = None
    arguments: str | None = None
    content: list[dict[str, Any]] | None = None


class ResponseInfo(_Wire):
    """The response resource; statuses are plain strings so a new one never drops the event."""

    id: str | None = None
    status: str | None = None
    status_details: ResponseStatusDetails | None = None
    usage: ResponseUsage | None = None
    output: list[ItemInfo] | None = None


class ResponseCreated(ServerEvent):
    """``response.created``: the model started a response."""

    type: Literal["response.created"] = "response.created"
    response: ResponseInfo


class OutputAudioDelta(ServerEvent):
    """``response.output_audio.delta``: a chunk of the agent's voice (base64)."""

    type: Literal["response.output_audio.delta"] = "response.output_audio.delta"
    response_id: str
    item_id: str
    output_index: int = 0
    content_index: int = 0
    delta: str


class OutputAudioDone(ServerEvent):
    """``response.output_audio.done``: the item's audio is complete."""

    type: Literal["response.output_audio.done"] = "response.output_audio.done"
    response_id: str
    item_id: str
    output_index: int = 0
    content_index: int = 0


class OutputAudioTranscriptDelta(ServerEvent):
    """``response.output_audio_transcript.delta``: part of what the agent is saying."""

    type: Literal["response.output_audio_transcript.delta"] = (
        "response.output_audio_transcript.delta"
    )
    response_id: str
    item_id: str
    output_index: int = 0
    content_index: int = 0
    delta: str = ""


class OutputAudioTranscriptDone(ServerEvent):
    """``response.output_audio_transcript.done``: what the agent said in this item."""

    type: Literal["response.output_audio_transcript.done"] = "response.output_audio_transcript.done"
    response_id: str
    item_id: str
    output_index: int = 0
    content_index: int = 0
    transcript: str


class FunctionCallArgumentsDone(ServerEvent):
    """``response.function_call_arguments.done``: the model called a tool."""

    type: Literal["response.function_call_arguments.done"] = "response.function_call_arguments.done"
    response_id: str
    item_id: str
    output_index: int = 0
    call_id: str
    name: str
    arguments: str


class OutputItemDone(ServerEvent):
    """``response.output_item.done``: an item of the response is complete."""

    type: Literal["response.output_item.done"] = "response.output_item.done"
    response_id: str
    output_index: int = 0
    item: ItemInfo


class ResponseDone(ServerEvent):
    """``response.done``: a response ended (completed, cancelled, failed, incomplete)."""

    type: Literal["response.done"] = "response.done"
    response: ResponseInfo


class ConversationItemTruncated(ServerEvent):
    """``conversation.item.truncated``: the server confirmed our truncate."""

    type: Literal["conversation.item.truncated"] = "conversation.item.truncated"
    item_id: str
    content_index: int = 0
    audio_end_ms: int


class ErrorDetail(_Wire):
    """What went wrong; ``event_id`` names our client event when one caused it."""

    type: str = ""
    code: str | None = None
    message: str = ""
    param: str | None = None
    event_id: str | None = None


class ErrorEvent(ServerEvent):
    """``error``: usually recoverable; the socket stays open."""

    type: Literal["error"] = "error"
    error: ErrorDetail


def _registry(*classes: type[ServerEvent]) -> dict[str, type[ServerEvent]]:
    table: dict[str, type[ServerEvent]] = {}
    for cls in classes:
        name = cls.model_fields["type"].default
        if not isinstance(name, str) or name in table:
            raise TypeError(f"{cls.__name__} needs a unique literal type default")
        table[name] = cls
    return table


SERVER_EVENTS: Final[dict[str, type[ServerEvent]]] = _registry(
    SessionCreated,
    SessionUpdated,
    SpeechStarted,
    SpeechStopped,
    InputAudioBufferCommitted,
    InputAudioTranscriptionDelta,
    InputAudioTranscriptionCompleted,
    ResponseCreated,
    OutputAudioDelta,
    OutputAudioDone,
    OutputAudioTranscriptDelta,
    OutputAudioTranscriptDone,
    FunctionCallArgumentsDone,
    OutputItemDone,
    ResponseDone,
    ConversationItemTruncated,
    ErrorEvent,
)
"""Server event type -> model. Anything else is skipped."""

IGNORED_SERVER_EVENTS: Final = frozenset(
    {
        "conversation.created",
        "conversation.item.added",
        "conversation.item.created",
        "conversation.item.deleted",
        "conversation.item.done",
        "conversation.item.retrieved",
        "conversation.item.input_audio_transcription.failed",
        "conversation.item.input_audio_transcription.segment",
        "input_audio_buffer.cleared",
        "input_audio_buffer.timeout_triggered",
        "input_audio_buffer.dtmf_event_received",
        "output_audio_buffer.started",
        "output_audio_buffer.stopped",
        "output_audio_buffer.cleared",
        "rate_limits.updated",
        "response.content_part.added",
        "response.content_part.done",
        "response.function_call_arguments.delta",
        "response.output_item.added",
        "response.output_text.delta",
        "response.output_text.done",
    }
)
"""GA server events we knowingly do not act on: skipped quietly (debug, once per type)."""

_DELTA_MARK: Final = b'"response.output_audio.delta"'
_seen_unknown: set[str] = set()
_malformed: dict[str, int] = {}


def _note_unknown(kind: object) -> None:
    name = kind if isinstance(kind, str) else repr(type(kind).__name__)
    if name in _seen_unknown:
        return
    _seen_unknown.add(name)
    if name in IGNORED_SERVER_EVENTS:
        logger.debug("Realtime: skipping %s events (not used)", name)
    else:
        # Info, not debug: an unexpected name may mean a protocol change (or a beta-era peer).
        logger.info("Realtime: skipping unknown server event type %s", name)


def _note_malformed(kind: str, exc: ValidationError) -> None:
    count = _malformed[kind] = _malformed.get(kind, 0) + 1
    if count & (count - 1):  # warn at 1, 2, 4, 8 … so a broken stream cannot flood the log
        return
    problems = "; ".join(
        f"{'.'.join(str(p) for p in err['loc']) or '<event>'}: {err['msg']}"
        for err in exc.errors(include_url=False, include_input=False)[:5]
    )
    logger.warning("Realtime: dropped malformed %s event (#%d): %s", kind, count, problems)


def parse_server_event(raw: Mapping[str, Any]) -> ServerEvent | None:
    """The typed event for a decoded message; None if unknown or malformed. Never raises."""
    kind = raw.get("type")
    if not isinstance(kind, str) or (cls := SERVER_EVENTS.get(kind)) is None:
        _note_unknown(kind)
        return None
    try:
        return cls.model_validate(raw)
    except ValidationError as exc:
        _note_malformed(kind, exc)
        return None


def decode_server_message(data: str | bytes) -> ServerEvent | None:
    """Parse one websocket text frame; audio deltas skip the generic JSON pass (~50 a second)."""
    raw_bytes = data.encode() if isinstance(data, str) else data
    # Base64 and escaped JSON strings cannot hold this quoted token, so only a delta's type
    # field can match; validating straight from JSON is ~3x cheaper than json.loads + validate.
    if _DELTA_MARK in raw_bytes:
        try:
            return OutputAudioDelta.model_validate_json(raw_bytes)
        except ValidationError:
            pass  # not a well-formed delta after all: the generic path below logs it
    try:
        raw = json.loads(raw_bytes)
    except ValueError as exc:  # JSONDecodeError or UnicodeDecodeError
        logger.warning(
            "Realtime: dropped a server message that is not JSON (%s)", type(exc).__name__
        )
        return None
    if not isinstance(raw, dict):
        logger.warning("Realtime: dropped a server message that is not an object")
        return None
    return parse_server_event(raw)
