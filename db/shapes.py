"""Pydantic shapes of the JSON columns (DESIGN.md §3), defined once.

Imports only the standard library and pydantic, so a CallActor can build them without
SQLAlchemy.
"""

from __future__ import annotations

import datetime as dt
import enum
from typing import Any

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field


class Speaker(enum.StrEnum):
    """Who said a transcript turn."""

    AGENT = "agent"
    CALLEE = "callee"
    SYSTEM = "system"


class _Shape(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class TranscriptTurn(_Shape):
    """One turn of the conversation; offsets are milliseconds since the call was answered."""

    speaker: Speaker
    text: str
    start_ms: int = Field(ge=0)
    end_ms: int = Field(ge=0)
    interrupted: bool = False


class ToolCallRecord(_Shape):
    """One tool the model called during a call, with what it was answered."""

    name: str
    arguments: dict[str, Any]
    result: str
    at: AwareDatetime


class Usage(_Shape):
    """Token usage of a call's Realtime session, by kind."""

    input_text_tokens: int = Field(default=0, ge=0)
    input_audio_tokens: int = Field(default=0, ge=0)
    input_cached_tokens: int = Field(default=0, ge=0)
    output_text_tokens: int = Field(default=0, ge=0)
    output_audio_tokens: int = Field(default=0, ge=0)

    @property
    def total(self) -> int:
        """All tokens, input and output."""
        return (
            self.input_text_tokens
            + self.input_audio_tokens
            + self.output_text_tokens
            + self.output_audio_tokens
        )

    def __add__(self, other: Usage) -> Usage:
        return Usage(**{k: getattr(self, k) + getattr(other, k) for k in type(self).model_fields})


class Percentiles(_Shape):
    """A distribution summarised as p50 / p99 / max, plus how many samples it holds."""

    p50: float = 0.0
    p99: float = 0.0
    max: float = 0.0
    count: int = Field(default=0, ge=0)


class CallFigures(_Shape):
    """Per-call measurements (DESIGN.md §8), reported by the CallActor when a call ends."""

    setup_ms: float | None = None
    """Due (owner asked) -> first agent audio frame on the wire."""
    originate_ms: float | None = None
    """Owner asked -> Originate sent."""
    connect_ms: float | None = None
    """Originate sent -> AudioSocket connected."""
    pacing_interval_error_ms: Percentiles = Percentiles()
    """Deviation of outbound frame intervals from 20 ms, sender side."""
    sender_lateness_ms: Percentiles = Percentiles()
    """How late each outbound frame left against its deadline."""
    underruns: int = Field(default=0, ge=0)
    """Ticks with speech queued but not enough audio buffered."""
    inbound_forward_ms: Percentiles = Percentiles()
    """AudioSocket frame in -> input_audio_buffer.append sent."""
    barge_in_ms: Percentiles = Percentiles()
    """speech_started -> outbound silence."""
    voice_to_voice_ms: Percentiles = Percentiles()
    """Callee stops speaking -> first agent audio on the wire, per turn."""
    cpu_seconds: float | None = None
    duration_s: float | None = None


class CollectedInfo(_Shape):
    """One answer the task's creator gave to a question of the AI."""

    question: str
    answer: str
    at: AwareDatetime
    request_id: str | None = None


def utcnow() -> dt.datetime:
    """The current time, timezone-aware UTC."""
    return dt.datetime.now(dt.UTC)


def require_aware(value: dt.datetime, what: str = "datetime") -> dt.datetime:
    """Return ``value`` in UTC, refusing naive datetimes with a clear error."""
    if value.tzinfo is None or value.tzinfo.utcoffset(value) is None:
        raise ValueError(f"{what} must be timezone-aware (got naive {value.isoformat()})")
    return value.astimezone(dt.UTC)
