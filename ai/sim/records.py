"""What the stand-in saw and did on each session, for tests and benchmarks to read."""

from __future__ import annotations

import asyncio
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "AgentLine",
    "CalleeUtterance",
    "ResponseRecord",
    "SessionLog",
    "StandInStats",
    "TextItem",
    "ToolCallMade",
    "ToolOutput",
    "Truncation",
]


@dataclass(slots=True)
class StandInStats:
    """Counters across every session of one stand-in."""

    connections: int = 0
    refused_handshakes: int = 0
    protocol_errors: int = 0
    """Client events with a beta or otherwise non-GA shape, malformed JSON, unknown types."""
    request_errors: int = 0
    """Well-formed events the state refused (no active response to cancel, unknown item, …)."""
    script_errors: int = 0
    """Script steps the session could not honour (a tool the client never declared, …)."""
    responses: int = 0
    cancelled_responses: int = 0
    drops: int = 0


@dataclass(frozen=True, slots=True)
class AgentLine:
    """A sentence the agent spoke (or began to: ``status`` says how it ended)."""

    response_id: str
    item_id: str
    text: str
    audio_ms: float
    sent_ms: float
    status: str


@dataclass(frozen=True, slots=True)
class CalleeUtterance:
    """One turn the VAD found in the appended audio, and its transcript."""

    item_id: str
    audio_start_ms: int
    audio_end_ms: int
    transcript: str
    line: int | None


@dataclass(frozen=True, slots=True)
class Truncation:
    """A ``conversation.item.truncate``: how much of an item the client says was played."""

    item_id: str
    content_index: int
    audio_end_ms: int
    item_audio_ms: float
    text: str


@dataclass(frozen=True, slots=True)
class ToolCallMade:
    """A function call the agent made."""

    call_id: str
    name: str
    arguments: dict[str, Any]


@dataclass(frozen=True, slots=True)
class ToolOutput:
    """A client's ``function_call_output``."""

    call_id: str
    name: str
    output: str


@dataclass(frozen=True, slots=True)
class TextItem:
    """A text the client gave the model (user/system item, or per-response instructions)."""

    role: str
    text: str


@dataclass(slots=True)
class ResponseRecord:
    """One response and how it ended."""

    response_id: str
    status: str = "in_progress"
    reason: str | None = None
    fired: list[str] = field(default_factory=list)
    usage: dict[str, int] = field(default_factory=dict)


@dataclass(slots=True)
class SessionLog:
    """One Realtime session (one websocket connection)."""

    session_id: str
    model: str
    call_id: str | None = None
    scenario: str | None = None
    input_format: str = "pcm"
    output_format: str = "pcm"
    voice: str | None = None
    instructions: str | None = None
    tools: list[str] = field(default_factory=list)
    turn_detection: dict[str, Any] | None = None
    transcription: bool = False
    audio_in_ms: float = 0.0
    events_in: Counter[str] = field(default_factory=Counter)
    events_out: Counter[str] = field(default_factory=Counter)
    said: list[AgentLine] = field(default_factory=list)
    heard: list[CalleeUtterance] = field(default_factory=list)
    truncations: list[Truncation] = field(default_factory=list)
    tool_calls: list[ToolCallMade] = field(default_factory=list)
    tool_outputs: list[ToolOutput] = field(default_factory=list)
    texts: list[TextItem] = field(default_factory=list)
    responses: list[ResponseRecord] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    dropped: bool = False
    closed: asyncio.Event = field(default_factory=asyncio.Event)

    def spoken_text(self) -> str:
        """Everything the agent said, in order, as one string."""
        return " ".join(line.text for line in self.said)

    def usage_total(self) -> dict[str, int]:
        """Token counts summed over every finished response."""
        total: Counter[str] = Counter()
        for record in self.responses:
            total.update(record.usage)
        return dict(total)
