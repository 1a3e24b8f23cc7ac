"""What a GA Realtime client may send: strict models of the client events, looked up by type.

The SDK's own models accept unknown fields, so they cannot catch a beta-era client. These forbid
unknown fields at every level, so a field GA does not define is refused; :mod:`ai.sim.validate`
parses messages against them and names the GA place of the usual beta mistakes.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "CLIENT_EVENTS",
    "AssistantMessage",
    "AudioConfig",
    "AudioFormat",
    "ClientEvent",
    "ClientEventError",
    "ConversationItemCreate",
    "ConversationItemDelete",
    "ConversationItemRetrieve",
    "ConversationItemTruncate",
    "FunctionCall",
    "FunctionCallOutput",
    "FunctionTool",
    "InputAudioBufferAppend",
    "InputAudioBufferClear",
    "InputAudioBufferCommit",
    "Item",
    "Message",
    "OutputAudioBufferClear",
    "ResponseCancel",
    "ResponseCreate",
    "SemanticVad",
    "ServerVad",
    "Session",
    "SessionUpdate",
    "SystemMessage",
    "TracingConfig",
    "UserMessage",
]

MAX_APPEND_BYTES = 15 * 1024 * 1024  # the API's limit for one input_audio_buffer.append


class ClientEventError(Exception):
    """A client event the stand-in refuses; ``protocol`` marks a shape (GA/beta) violation."""

    def __init__(
        self,
        message: str,
        *,
        code: str = "invalid_value",
        param: str | None = None,
        event_id: str | None = None,
        protocol: bool = True,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.param = param
        self.event_id = event_id
        self.protocol = protocol


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# -- session ---------------------------------------------------------------------------------
class AudioPcm(_Strict):
    """PCM 16-bit little-endian mono; only 24 kHz exists in GA."""

    type: Literal["audio/pcm"]
    rate: Literal[24000] = 24000


class AudioPcmu(_Strict):
    """G.711 µ-law at 8 kHz."""

    type: Literal["audio/pcmu"]


class AudioPcma(_Strict):
    """G.711 A-law at 8 kHz (valid GA; the stand-in refuses it as unsupported)."""

    type: Literal["audio/pcma"]


AudioFormat = Annotated[AudioPcm | AudioPcmu | AudioPcma, Field(discriminator="type")]


class ServerVad(_Strict):
    """Energy-style turn detection (what the stand-in simulates)."""

    type: Literal["server_vad"]
    create_response: bool = True
    idle_timeout_ms: int | None = None
    interrupt_response: bool = True
    prefix_padding_ms: int = Field(default=300, ge=0)
    silence_duration_ms: int = Field(default=500, ge=0)
    threshold: float = Field(default=0.5, ge=0.0, le=1.0)


class SemanticVad(_Strict):
    """Model-based turn detection (simulated like server_vad with eagerness-based silence)."""

    type: Literal["semantic_vad"]
    create_response: bool = True
    eagerness: Literal["low", "medium", "high", "auto"] = "auto"
    interrupt_response: bool = True


TurnDetection = Annotated[ServerVad | SemanticVad, Field(discriminator="type")]


class Transcription(_Strict):
    """Input transcription settings (any model name is accepted)."""

    model: str | None = None
    language: str | None = None
    languages: list[str] | None = None
    prompt: str | None = None
    delay: Literal["minimal", "low", "medium", "high", "xhigh"] | None = None
    keywords: list[str] | None = None


class NoiseReduction(_Strict):
    """Input noise reduction (accepted, not simulated)."""

    type: Literal["near_field", "far_field"] | None = None
    strength: float | None = None


class AudioInput(_Strict):
    """``session.audio.input``."""

    format: AudioFormat | None = None
    noise_reduction: NoiseReduction | None = None
    transcription: Transcription | None = None
    turn_detection: TurnDetection | None = None


class VoiceId(_Strict):
    """A custom voice."""

    id: str


class AudioOutput(_Strict):
    """``session.audio.output``."""

    format: AudioFormat | None = None
    speed: float | None = Field(default=None, ge=0.25, le=1.5)
    voice: str | VoiceId | None = None


class AudioConfig(_Strict):
    """``session.audio``."""

    input: AudioInput | None = None
    output: AudioOutput | None = None


class FunctionTool(_Strict):
    """A function the model may call."""

    type: Literal["function"] = "function"
    name: str = Field(min_length=1)
    description: str | None = None
    parameters: dict[str, Any] | None = None


class McpTool(BaseModel):
    """An MCP server (accepted as is; the stand-in never calls it)."""

    model_config = ConfigDict(extra="allow", frozen=True)

    type: Literal["mcp"]
    server_label: str


Tool = Annotated[FunctionTool | McpTool, Field(discriminator="type")]


class TracingConfig(_Strict):
    """Tracing; OpenDeep puts the call id in ``group_id``."""

    group_id: str | None = None
    metadata: Any = None
    workflow_name: str | None = None


class Session(_Strict):
    """``session`` of a GA ``session.update`` (type ``realtime``)."""

    type: Literal["realtime"]
    audio: AudioConfig | None = None
    include: list[Literal["item.input_audio_transcription.logprobs"]] | None = None
    instructions: str | None = None
    max_output_tokens: int | Literal["inf"] | None = None
    model: str | None = None
    output_modalities: list[Literal["text", "audio"]] | None = None
    parallel_tool_calls: bool | None = None
    prompt: dict[str, Any] | None = None
    reasoning: dict[str, Any] | None = None
    tool_choice: str | dict[str, Any] | None = None
    tools: list[Tool] | None = None
    tracing: Literal["auto"] | TracingConfig | None = None
    truncation: Literal["auto", "disabled"] | dict[str, Any] | None = None


# -- conversation items ----------------------------------------------------------------------
class InputText(_Strict):
    """Text from the user or the system."""

    type: Literal["input_text"]
    text: str


class InputAudio(_Strict):
    """Audio in a user message."""

    type: Literal["input_audio"]
    audio: str | None = None
    transcript: str | None = None


class InputImage(_Strict):
    """An image in a user message."""

    type: Literal["input_image"]
    image_url: str | None = None
    detail: Literal["auto", "low", "high"] | None = None


class OutputText(_Strict):
    """Text in an assistant message."""

    type: Literal["output_text"]
    text: str


class OutputAudio(_Strict):
    """Audio in an assistant message."""

    type: Literal["output_audio"]
    audio: str | None = None
    transcript: str | None = None


UserContent = Annotated[InputText | InputAudio | InputImage, Field(discriminator="type")]
AssistantContent = Annotated[OutputText | OutputAudio, Field(discriminator="type")]


class _ItemBase(_Strict):
    id: str | None = None
    object: Literal["realtime.item"] | None = None
    status: Literal["completed", "incomplete", "in_progress"] | None = None


class Message(_ItemBase):
    """A message item of any role (content validated per role by :func:`_parse_item`)."""

    type: Literal["message"]
    role: Literal["system", "user", "assistant"]
    content: list[UserContent] | list[AssistantContent]

    def text(self) -> str:
        """The message's text parts (and transcripts), joined."""
        parts: list[str] = []
        for part in self.content:
            if isinstance(part, InputText | OutputText):
                parts.append(part.text)
            elif isinstance(part, InputAudio | OutputAudio) and part.transcript:
                parts.append(part.transcript)
        return " ".join(parts)


class SystemMessage(_ItemBase):
    type: Literal["message"]
    role: Literal["system"]
    content: list[InputText]


class UserMessage(_ItemBase):
    type: Literal["message"]
    role: Literal["user"]
    content: list[UserContent]


class AssistantMessage(_ItemBase):
    type: Literal["message"]
    role: Literal["assistant"]
    content: list[AssistantContent]


class FunctionCall(_ItemBase):
    """A function call item inserted by the client."""

    type: Literal["function_call"]
    name: str
    arguments: str
    call_id: str | None = None


class FunctionCallOutput(_ItemBase):
    """The client's answer to a function call."""

    type: Literal["function_call_output"]
    call_id: str
    output: str


Item = Message | FunctionCall | FunctionCallOutput


# -- events ----------------------------------------------------------------------------------
class _Event(_Strict):
    event_id: str | None = None


class SessionUpdate(_Event):
    """``session.update``."""

    type: Literal["session.update"]
    session: Session


class InputAudioBufferAppend(_Event):
    """``input_audio_buffer.append`` (base64 audio in the session's input format)."""

    type: Literal["input_audio_buffer.append"]
    audio: str = Field(max_length=MAX_APPEND_BYTES * 4 // 3 + 4)


class InputAudioBufferCommit(_Event):
    """``input_audio_buffer.commit``."""

    type: Literal["input_audio_buffer.commit"]


class InputAudioBufferClear(_Event):
    """``input_audio_buffer.clear``."""

    type: Literal["input_audio_buffer.clear"]


class OutputAudioBufferClear(_Event):
    """``output_audio_buffer.clear`` (WebRTC/SIP only: refused on a websocket)."""

    type: Literal["output_audio_buffer.clear"]
    response_id: str | None = None


class ConversationItemCreate(_Event):
    """``conversation.item.create`` (the item is parsed per type and role)."""

    type: Literal["conversation.item.create"]
    previous_item_id: str | None = None
    item: Message | FunctionCall | FunctionCallOutput


class ConversationItemTruncate(_Event):
    """``conversation.item.truncate``."""

    type: Literal["conversation.item.truncate"]
    item_id: str
    content_index: int = Field(ge=0)
    audio_end_ms: int = Field(ge=0)


class ConversationItemDelete(_Event):
    """``conversation.item.delete``."""

    type: Literal["conversation.item.delete"]
    item_id: str


class ConversationItemRetrieve(_Event):
    """``conversation.item.retrieve``."""

    type: Literal["conversation.item.retrieve"]
    item_id: str


class ResponseAudioOutput(_Strict):
    """``response.audio.output`` of a ``response.create``."""

    format: AudioFormat | None = None
    voice: str | VoiceId | None = None


class ResponseAudio(_Strict):
    """``response.audio`` of a ``response.create``."""

    output: ResponseAudioOutput | None = None


class ResponseParams(_Strict):
    """``response`` of a ``response.create``."""

    audio: ResponseAudio | None = None
    conversation: str | None = None
    input: list[dict[str, Any]] | None = None
    instructions: str | None = None
    max_output_tokens: int | Literal["inf"] | None = None
    metadata: dict[str, str] | None = None
    output_modalities: list[Literal["text", "audio"]] | None = None
    parallel_tool_calls: bool | None = None
    prompt: dict[str, Any] | None = None
    reasoning: dict[str, Any] | None = None
    tool_choice: str | dict[str, Any] | None = None
    tools: list[Tool] | None = None


class ResponseCreate(_Event):
    """``response.create``."""

    type: Literal["response.create"]
    response: ResponseParams | None = None


class ResponseCancel(_Event):
    """``response.cancel``."""

    type: Literal["response.cancel"]
    response_id: str | None = None


ClientEvent = (
    SessionUpdate
    | InputAudioBufferAppend
    | InputAudioBufferCommit
    | InputAudioBufferClear
    | OutputAudioBufferClear
    | ConversationItemCreate
    | ConversationItemTruncate
    | ConversationItemDelete
    | ConversationItemRetrieve
    | ResponseCreate
    | ResponseCancel
)

CLIENT_EVENTS: dict[str, type[ClientEvent]] = {
    "session.update": SessionUpdate,
    "input_audio_buffer.append": InputAudioBufferAppend,
    "input_audio_buffer.commit": InputAudioBufferCommit,
    "input_audio_buffer.clear": InputAudioBufferClear,
    "output_audio_buffer.clear": OutputAudioBufferClear,
    "conversation.item.create": ConversationItemCreate,
    "conversation.item.truncate": ConversationItemTruncate,
    "conversation.item.delete": ConversationItemDelete,
    "conversation.item.retrieve": ConversationItemRetrieve,
    "response.create": ResponseCreate,
    "response.cancel": ResponseCancel,
}
