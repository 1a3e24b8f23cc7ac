"""The effective configuration of one stand-in session, merged from ``session.update`` events.

Only the fields present in an update change (as the API does); ``audio.input`` and
``audio.output`` merge key by key. An update the stand-in cannot honour (A-law, text-only output,
a voice change after the model spoke, a tracing change once set) is refused whole.
"""

from __future__ import annotations

import copy
import time
from typing import Any, Literal

from ai.sim import outbound as out
from ai.sim import protocol as p
from ai.sim.script import AgentScript
from ai.sim.vad import EnergyVad

__all__ = ["SessionConfig"]

_DEFAULT_INSTRUCTIONS = "You are a helpful assistant. Speak briefly and clearly."
_SEMANTIC_SILENCE_MS = {"low": 800, "medium": 500, "auto": 500, "high": 300}
_SESSION_TTL_S = 3600


def _defaults(model: str) -> dict[str, Any]:
    return {
        "type": "realtime",
        "model": model,
        "output_modalities": ["audio"],
        "instructions": _DEFAULT_INSTRUCTIONS,
        "tools": [],
        "tool_choice": "auto",
        "max_output_tokens": "inf",
        "tracing": None,
        "truncation": "auto",
        "prompt": None,
        "audio": {
            "input": {
                "format": {"type": "audio/pcm", "rate": 24000},
                "transcription": None,
                "noise_reduction": None,
                "turn_detection": {"type": "server_vad"},
            },
            "output": {
                "format": {"type": "audio/pcm", "rate": 24000},
                "voice": "marin",
                "speed": 1.0,
            },
        },
    }


def _merge(base: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    merged = copy.deepcopy(base)
    for key, value in update.items():
        if key == "audio" and isinstance(value, dict):
            audio = merged.setdefault("audio", {}) or {}
            for side, fields in value.items():
                if isinstance(fields, dict) and isinstance(audio.get(side), dict):
                    audio[side].update(fields)
                else:
                    audio[side] = fields
            merged["audio"] = audio
        else:
            merged[key] = value
    return merged


class SessionConfig:
    """Merged session settings and what the stand-in derives from them."""

    def __init__(self, model: str) -> None:
        self.session_id = out.new_id("sess")
        self.script: AgentScript | None = None
        self._expires_at = int(time.time()) + _SESSION_TTL_S
        self._data = _defaults(model)
        self._session = p.Session.model_validate(self._data)

    # -- updates ---------------------------------------------------------------------------
    def apply(self, update: p.Session, *, voice_fixed: bool) -> None:
        """Merge an update, or raise :class:`ClientEventError` and keep the old settings."""
        merged = _merge(self._data, update.model_dump(exclude_unset=True))
        session = p.Session.model_validate(merged)
        self._refuse_unsupported(session, voice_fixed=voice_fixed)
        self._data, self._session = merged, session

    def _refuse_unsupported(self, session: p.Session, *, voice_fixed: bool) -> None:
        audio = session.audio or p.AudioConfig()
        for side in (audio.input, audio.output):
            if side is not None and isinstance(side.format, p.AudioPcma):
                raise p.ClientEventError(
                    "the stand-in speaks audio/pcm (24 kHz) and audio/pcmu only, not audio/pcma",
                    param="session.audio.format",
                    protocol=False,
                )
        if session.output_modalities is not None and session.output_modalities != ["audio"]:
            raise p.ClientEventError(
                "the stand-in answers with audio only (output_modalities=['audio'])",
                param="session.output_modalities",
                protocol=False,
            )
        old, new = self._session.tracing, session.tracing
        if isinstance(old, p.TracingConfig) and new != old:
            raise p.ClientEventError(
                "tracing cannot be modified once it is enabled for a session",
                code="invalid_value",
                param="session.tracing",
                protocol=False,
            )
        if voice_fixed and _voice_of(session) != self.voice:
            raise p.ClientEventError(
                "Cannot update a conversation's voice if assistant audio is present.",
                code="cannot_update_voice",
                param="session.audio.output.voice",
                protocol=False,
            )

    # -- what the session says about itself ------------------------------------------------
    def effective(self) -> dict[str, Any]:
        """The full session object of ``session.created`` / ``session.updated``."""
        body = self._session.model_dump(mode="json")
        body.update(
            {"object": "realtime.session", "id": self.session_id, "expires_at": self._expires_at}
        )
        return body

    def snapshot(self) -> tuple[str, str | None]:
        """What the VAD depends on: input format and turn detection."""
        vad = self.vad
        return self.input_format, None if vad is None else vad.model_dump_json()

    # -- derived settings ------------------------------------------------------------------
    @property
    def input_format(self) -> Literal["pcm", "pcmu"]:
        """``pcm`` (24 kHz int16) or ``pcmu`` (8 kHz µ-law)."""
        return _format_of(self._session, "input")

    @property
    def output_format(self) -> Literal["pcm", "pcmu"]:
        """The format of the agent's audio deltas."""
        return _format_of(self._session, "output")

    @property
    def input_rate(self) -> int:
        """Samples per second of the appended audio."""
        return 24000 if self.input_format == "pcm" else 8000

    @property
    def voice(self) -> str | None:
        """The API voice (recorded; the stand-in speaks with the script's espeak voice)."""
        return _voice_of(self._session)

    @property
    def instructions(self) -> str | None:
        """The session's instructions."""
        return self._session.instructions

    @property
    def tools(self) -> dict[str, p.FunctionTool]:
        """Declared function tools by name."""
        return {t.name: t for t in self._session.tools or [] if isinstance(t, p.FunctionTool)}

    @property
    def vad(self) -> p.ServerVad | p.SemanticVad | None:
        """Turn detection, or None when the client commits by hand."""
        audio = self._session.audio
        return None if audio is None or audio.input is None else audio.input.turn_detection

    def turn_detection_dict(self) -> dict[str, Any] | None:
        """Turn detection as JSON (for the record)."""
        vad = self.vad
        return None if vad is None else vad.model_dump(mode="json")

    @property
    def transcription(self) -> bool:
        """Whether input transcription events are wanted."""
        audio = self._session.audio
        return bool(audio and audio.input and audio.input.transcription is not None)

    @property
    def call_id(self) -> str | None:
        """``tracing.group_id``: OpenDeep's call id."""
        tracing = self._session.tracing
        return tracing.group_id if isinstance(tracing, p.TracingConfig) else None

    def prompt_tokens(self) -> int:
        """Input tokens of the instructions and tool schemas."""
        size = len(self.instructions or "") + sum(
            len(tool.model_dump_json()) for tool in self.tools.values()
        )
        return (size + 3) // 4

    def new_vad(self, offset_ms: int) -> EnergyVad:
        """A VAD for the current input format and turn detection."""
        vad = self.vad
        if isinstance(vad, p.ServerVad):
            silence, threshold, prefix = (
                vad.silence_duration_ms,
                vad.threshold,
                vad.prefix_padding_ms,
            )
        else:
            eagerness = "auto" if vad is None else vad.eagerness
            silence, threshold, prefix = _SEMANTIC_SILENCE_MS[eagerness], 0.5, 300
        return EnergyVad(
            self.input_rate,
            threshold=threshold,
            prefix_padding_ms=prefix,
            silence_duration_ms=silence,
            offset_ms=offset_ms,
        )


def _format_of(session: p.Session, side: Literal["input", "output"]) -> Literal["pcm", "pcmu"]:
    audio = session.audio
    config = None if audio is None else getattr(audio, side)
    fmt = None if config is None else config.format
    return "pcmu" if isinstance(fmt, p.AudioPcmu) else "pcm"


def _voice_of(session: p.Session) -> str | None:
    audio = session.audio
    voice = None if audio is None or audio.output is None else audio.output.voice
    return voice.id if isinstance(voice, p.VoiceId) else voice
