"""What the stand-in sends: GA server events built from the ``openai`` SDK's own models.

Building each event from the SDK's model (and serializing only the fields set) means mypy checks
every field name against the GA definitions the real client parses, so the stand-in cannot drift
into beta shapes.
"""

from __future__ import annotations

import secrets
from itertools import count
from typing import Any, Literal

from openai import BaseModel as SdkModel
from openai.types.realtime import (
    ConversationItemAdded,
    ConversationItemDeletedEvent,
    ConversationItemDone,
    ConversationItemInputAudioTranscriptionCompletedEvent,
    ConversationItemTruncatedEvent,
    InputAudioBufferClearedEvent,
    InputAudioBufferCommittedEvent,
    InputAudioBufferSpeechStartedEvent,
    InputAudioBufferSpeechStoppedEvent,
    RealtimeConversationItemAssistantMessage,
    RealtimeConversationItemFunctionCall,
    RealtimeConversationItemFunctionCallOutput,
    RealtimeConversationItemSystemMessage,
    RealtimeConversationItemUserMessage,
    RealtimeError,
    RealtimeErrorEvent,
    RealtimeResponse,
    RealtimeResponseStatus,
    RealtimeResponseUsage,
    RealtimeSessionCreateRequest,
    ResponseAudioDeltaEvent,
    ResponseAudioDoneEvent,
    ResponseAudioTranscriptDeltaEvent,
    ResponseAudioTranscriptDoneEvent,
    ResponseContentPartAddedEvent,
    ResponseContentPartDoneEvent,
    ResponseCreatedEvent,
    ResponseDoneEvent,
    ResponseFunctionCallArgumentsDeltaEvent,
    ResponseFunctionCallArgumentsDoneEvent,
    ResponseOutputItemAddedEvent,
    ResponseOutputItemDoneEvent,
    SessionCreatedEvent,
    SessionUpdatedEvent,
)
from openai.types.realtime.conversation_item import ConversationItem
from openai.types.realtime.conversation_item_input_audio_transcription_completed_event import (
    UsageTranscriptTextUsageTokens,
    UsageTranscriptTextUsageTokensInputTokenDetails,
)
from openai.types.realtime.realtime_conversation_item_assistant_message import (
    Content as AssistantContent,
)
from openai.types.realtime.realtime_conversation_item_system_message import (
    Content as SystemContent,
)
from openai.types.realtime.realtime_conversation_item_user_message import Content as UserContent
from openai.types.realtime.realtime_response_usage_input_token_details import (
    RealtimeResponseUsageInputTokenDetails,
)
from openai.types.realtime.realtime_response_usage_output_token_details import (
    RealtimeResponseUsageOutputTokenDetails,
)
from openai.types.realtime.response_content_part_added_event import Part as AddedPart
from openai.types.realtime.response_content_part_done_event import Part as DonePart

__all__ = [
    "ItemStatus",
    "Usage",
    "assistant_item",
    "audio_delta",
    "audio_done",
    "content_part_added",
    "content_part_done",
    "encode",
    "error",
    "function_call_arguments_delta",
    "function_call_arguments_done",
    "function_call_item",
    "function_call_output_item",
    "input_cleared",
    "input_committed",
    "item_added",
    "item_deleted",
    "item_done",
    "item_truncated",
    "new_id",
    "output_item_added",
    "output_item_done",
    "response",
    "response_created",
    "response_done",
    "session_created",
    "session_updated",
    "speech_started",
    "speech_stopped",
    "system_item",
    "transcript_delta",
    "transcript_done",
    "transcription_completed",
    "user_audio_item",
    "user_text_item",
]

ItemStatus = Literal["completed", "incomplete", "in_progress"]
_PREFIX = secrets.token_hex(4)
_COUNTER = count(1)


def new_id(kind: str) -> str:
    """An id like the API's (``event_…``, ``item_…``, ``resp_…``, ``call_…``, ``sess_…``)."""
    return f"{kind}_{_PREFIX}{next(_COUNTER):08x}"


def encode(event: SdkModel) -> str:
    """One server event as the JSON text sent on the wire (only the fields set)."""
    return event.model_dump_json(exclude_unset=True)


# -- session and errors ----------------------------------------------------------------------
def session_created(session: dict[str, Any]) -> SessionCreatedEvent:
    """``session.created`` with the effective session."""
    body = RealtimeSessionCreateRequest.model_validate(session)
    return SessionCreatedEvent(event_id=new_id("event"), type="session.created", session=body)


def session_updated(session: dict[str, Any]) -> SessionUpdatedEvent:
    """``session.updated`` with the effective session."""
    body = RealtimeSessionCreateRequest.model_validate(session)
    return SessionUpdatedEvent(event_id=new_id("event"), type="session.updated", session=body)


def error(
    message: str,
    *,
    kind: str = "invalid_request_error",
    code: str | None = None,
    param: str | None = None,
    event_id: str | None = None,
) -> RealtimeErrorEvent:
    """``error`` (the socket stays open)."""
    detail = RealtimeError(message=message, type=kind, code=code, param=param, event_id=event_id)
    return RealtimeErrorEvent(event_id=new_id("event"), type="error", error=detail)


# -- input audio buffer ----------------------------------------------------------------------
def speech_started(audio_start_ms: int, item_id: str) -> InputAudioBufferSpeechStartedEvent:
    """``input_audio_buffer.speech_started``."""
    return InputAudioBufferSpeechStartedEvent(
        event_id=new_id("event"),
        type="input_audio_buffer.speech_started",
        audio_start_ms=audio_start_ms,
        item_id=item_id,
    )


def speech_stopped(audio_end_ms: int, item_id: str) -> InputAudioBufferSpeechStoppedEvent:
    """``input_audio_buffer.speech_stopped``."""
    return InputAudioBufferSpeechStoppedEvent(
        event_id=new_id("event"),
        type="input_audio_buffer.speech_stopped",
        audio_end_ms=audio_end_ms,
        item_id=item_id,
    )


def input_committed(item_id: str, previous_item_id: str | None) -> InputAudioBufferCommittedEvent:
    """``input_audio_buffer.committed``."""
    return InputAudioBufferCommittedEvent(
        event_id=new_id("event"),
        type="input_audio_buffer.committed",
        item_id=item_id,
        previous_item_id=previous_item_id,
    )


def input_cleared() -> InputAudioBufferClearedEvent:
    """``input_audio_buffer.cleared``."""
    return InputAudioBufferClearedEvent(event_id=new_id("event"), type="input_audio_buffer.cleared")


def transcription_completed(
    item_id: str, transcript: str, audio_ms: int
) -> ConversationItemInputAudioTranscriptionCompletedEvent:
    """``conversation.item.input_audio_transcription.completed`` with token usage."""
    audio_tokens = max(1, audio_ms // 100)
    text_tokens = max(1, len(transcript) // 4)
    usage = UsageTranscriptTextUsageTokens(
        type="tokens",
        input_tokens=audio_tokens,
        output_tokens=text_tokens,
        total_tokens=audio_tokens + text_tokens,
        input_token_details=UsageTranscriptTextUsageTokensInputTokenDetails(
            audio_tokens=audio_tokens, text_tokens=0
        ),
    )
    return ConversationItemInputAudioTranscriptionCompletedEvent(
        event_id=new_id("event"),
        type="conversation.item.input_audio_transcription.completed",
        item_id=item_id,
        content_index=0,
        transcript=transcript,
        usage=usage,
    )


# -- conversation items ----------------------------------------------------------------------
def user_audio_item(item_id: str, status: ItemStatus = "completed") -> ConversationItem:
    """The user message made from committed audio (no transcript yet, as the API sends it)."""
    return RealtimeConversationItemUserMessage(
        id=item_id,
        object="realtime.item",
        type="message",
        role="user",
        status=status,
        content=[UserContent(type="input_audio", transcript=None)],
    )


def user_text_item(item_id: str, text: str) -> ConversationItem:
    """A user text message (echo of a client item)."""
    return RealtimeConversationItemUserMessage(
        id=item_id,
        object="realtime.item",
        type="message",
        role="user",
        status="completed",
        content=[UserContent(type="input_text", text=text)],
    )


def system_item(item_id: str, text: str) -> ConversationItem:
    """A system text message (echo of a client item)."""
    return RealtimeConversationItemSystemMessage(
        id=item_id,
        object="realtime.item",
        type="message",
        role="system",
        status="completed",
        content=[SystemContent(type="input_text", text=text)],
    )


def assistant_item(item_id: str, status: ItemStatus, transcript: str | None) -> ConversationItem:
    """An assistant audio message: empty while in progress, with its transcript when done."""
    content = (
        [] if transcript is None else [AssistantContent(type="output_audio", transcript=transcript)]
    )
    return RealtimeConversationItemAssistantMessage(
        id=item_id,
        object="realtime.item",
        type="message",
        role="assistant",
        status=status,
        content=content,
    )


def function_call_item(
    item_id: str, call_id: str, name: str, arguments: str, status: ItemStatus
) -> ConversationItem:
    """A function call item."""
    return RealtimeConversationItemFunctionCall(
        id=item_id,
        object="realtime.item",
        type="function_call",
        status=status,
        call_id=call_id,
        name=name,
        arguments=arguments,
    )


def function_call_output_item(item_id: str, call_id: str, output: str) -> ConversationItem:
    """A function call output item (echo of a client item)."""
    return RealtimeConversationItemFunctionCallOutput(
        id=item_id,
        object="realtime.item",
        type="function_call_output",
        status="completed",
        call_id=call_id,
        output=output,
    )


def item_added(item: ConversationItem, previous_item_id: str | None) -> ConversationItemAdded:
    """``conversation.item.added``."""
    return ConversationItemAdded(
        event_id=new_id("event"),
        type="conversation.item.added",
        item=item,
        previous_item_id=previous_item_id,
    )


def item_done(item: ConversationItem, previous_item_id: str | None) -> ConversationItemDone:
    """``conversation.item.done``."""
    return ConversationItemDone(
        event_id=new_id("event"),
        type="conversation.item.done",
        item=item,
        previous_item_id=previous_item_id,
    )


def item_truncated(
    item_id: str, content_index: int, audio_end_ms: int
) -> ConversationItemTruncatedEvent:
    """``conversation.item.truncated``."""
    return ConversationItemTruncatedEvent(
        event_id=new_id("event"),
        type="conversation.item.truncated",
        item_id=item_id,
        content_index=content_index,
        audio_end_ms=audio_end_ms,
    )


def item_deleted(item_id: str) -> ConversationItemDeletedEvent:
    """``conversation.item.deleted``."""
    return ConversationItemDeletedEvent(
        event_id=new_id("event"), type="conversation.item.deleted", item_id=item_id
    )


# -- responses -------------------------------------------------------------------------------
class Usage:
    """Token counts of one response (plausible figures: ~10 audio tokens/s in, ~20 out)."""

    __slots__ = ("cached", "input_audio", "input_text", "output_audio", "output_text")

    def __init__(
        self,
        *,
        input_text: int = 0,
        input_audio: int = 0,
        cached: int = 0,
        output_text: int = 0,
        output_audio: int = 0,
    ) -> None:
        self.input_text = input_text
        self.input_audio = input_audio
        self.cached = cached
        self.output_text = output_text
        self.output_audio = output_audio

    def model(self) -> RealtimeResponseUsage:
        """The SDK's usage object."""
        inputs = self.input_text + self.input_audio
        outputs = self.output_text + self.output_audio
        return RealtimeResponseUsage(
            total_tokens=inputs + outputs,
            input_tokens=inputs,
            output_tokens=outputs,
            input_token_details=RealtimeResponseUsageInputTokenDetails(
                text_tokens=self.input_text,
                audio_tokens=self.input_audio,
                cached_tokens=min(self.cached, inputs),
                image_tokens=0,
            ),
            output_token_details=RealtimeResponseUsageOutputTokenDetails(
                text_tokens=self.output_text, audio_tokens=self.output_audio
            ),
        )


def response(
    response_id: str,
    status: Literal["in_progress", "completed", "cancelled", "failed", "incomplete"],
    *,
    output: list[ConversationItem] | None = None,
    usage: Usage | None = None,
    reason: Literal["turn_detected", "client_cancelled"] | None = None,
    metadata: dict[str, str] | None = None,
) -> RealtimeResponse:
    """The ``response`` object of ``response.created`` / ``response.done``."""
    fields: dict[str, Any] = {
        "id": response_id,
        "object": "realtime.response",
        "status": status,
        "conversation_id": "conv_default",
        "output_modalities": ["audio"],
        "output": output or [],
        "metadata": metadata,
    }
    if status == "cancelled":
        fields["status_details"] = RealtimeResponseStatus(type="cancelled", reason=reason)
    elif status != "in_progress":
        fields["status_details"] = RealtimeResponseStatus(type=status)
    if usage is not None:
        fields["usage"] = usage.model()
    return RealtimeResponse(**fields)


def response_created(body: RealtimeResponse) -> ResponseCreatedEvent:
    """``response.created``."""
    return ResponseCreatedEvent(event_id=new_id("event"), type="response.created", response=body)


def response_done(body: RealtimeResponse) -> ResponseDoneEvent:
    """``response.done``."""
    return ResponseDoneEvent(event_id=new_id("event"), type="response.done", response=body)


def output_item_added(
    response_id: str, output_index: int, item: ConversationItem
) -> ResponseOutputItemAddedEvent:
    """``response.output_item.added``."""
    return ResponseOutputItemAddedEvent(
        event_id=new_id("event"),
        type="response.output_item.added",
        response_id=response_id,
        output_index=output_index,
        item=item,
    )


def output_item_done(
    response_id: str, output_index: int, item: ConversationItem
) -> ResponseOutputItemDoneEvent:
    """``response.output_item.done``."""
    return ResponseOutputItemDoneEvent(
        event_id=new_id("event"),
        type="response.output_item.done",
        response_id=response_id,
        output_index=output_index,
        item=item,
    )


def content_part_added(
    response_id: str, item_id: str, output_index: int
) -> ResponseContentPartAddedEvent:
    """``response.content_part.added`` for the audio part."""
    return ResponseContentPartAddedEvent(
        event_id=new_id("event"),
        type="response.content_part.added",
        response_id=response_id,
        item_id=item_id,
        output_index=output_index,
        content_index=0,
        part=AddedPart(type="audio", transcript=""),
    )


def content_part_done(
    response_id: str, item_id: str, output_index: int, transcript: str
) -> ResponseContentPartDoneEvent:
    """``response.content_part.done`` for the audio part."""
    return ResponseContentPartDoneEvent(
        event_id=new_id("event"),
        type="response.content_part.done",
        response_id=response_id,
        item_id=item_id,
        output_index=output_index,
        content_index=0,
        part=DonePart(type="audio", transcript=transcript),
    )


def audio_delta(
    response_id: str, item_id: str, output_index: int, delta: str
) -> ResponseAudioDeltaEvent:
    """``response.output_audio.delta`` (``delta`` is base64 audio in the output format)."""
    return ResponseAudioDeltaEvent(
        event_id=new_id("event"),
        type="response.output_audio.delta",
        response_id=response_id,
        item_id=item_id,
        output_index=output_index,
        content_index=0,
        delta=delta,
    )


def audio_done(response_id: str, item_id: str, output_index: int) -> ResponseAudioDoneEvent:
    """``response.output_audio.done``."""
    return ResponseAudioDoneEvent(
        event_id=new_id("event"),
        type="response.output_audio.done",
        response_id=response_id,
        item_id=item_id,
        output_index=output_index,
        content_index=0,
    )


def transcript_delta(
    response_id: str, item_id: str, output_index: int, delta: str
) -> ResponseAudioTranscriptDeltaEvent:
    """``response.output_audio_transcript.delta``."""
    return ResponseAudioTranscriptDeltaEvent(
        event_id=new_id("event"),
        type="response.output_audio_transcript.delta",
        response_id=response_id,
        item_id=item_id,
        output_index=output_index,
        content_index=0,
        delta=delta,
    )


def transcript_done(
    response_id: str, item_id: str, output_index: int, transcript: str
) -> ResponseAudioTranscriptDoneEvent:
    """``response.output_audio_transcript.done``."""
    return ResponseAudioTranscriptDoneEvent(
        event_id=new_id("event"),
        type="response.output_audio_transcript.done",
        response_id=response_id,
        item_id=item_id,
        output_index=output_index,
        content_index=0,
        transcript=transcript,
    )


def function_call_arguments_delta(
    response_id: str, item_id: str, output_index: int, call_id: str, delta: str
) -> ResponseFunctionCallArgumentsDeltaEvent:
    """``response.function_call_arguments.delta``."""
    return ResponseFunctionCallArgumentsDeltaEvent(
        event_id=new_id("event"),
        type="response.function_call_arguments.delta",
        response_id=response_id,
        item_id=item_id,
        output_index=output_index,
        call_id=call_id,
        delta=delta,
    )


def function_call_arguments_done(
    response_id: str, item_id: str, output_index: int, call_id: str, *, name: str, arguments: str
) -> ResponseFunctionCallArgumentsDoneEvent:
    """``response.function_call_arguments.done``."""
    return ResponseFunctionCallArgumentsDoneEvent(
        event_id=new_id("event"),
        type="response.function_call_arguments.done",
        response_id=response_id,
        item_id=item_id,
        output_index=output_index,
        call_id=call_id,
        name=name,
        arguments=arguments,
    )
