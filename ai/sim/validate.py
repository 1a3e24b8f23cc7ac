"""Parse a client message against the GA shapes, naming the GA place of every beta mistake.

A ``session.update`` without ``session.type``, ``input_audio_format`` or ``voice`` at the top of
the session, ``modalities``, ``pcm16``, assistant content typed ``text``, the
``OpenAI-Beta: realtime=v1`` era's event names: each is refused with a message that says where
GA puts it, so a client written against the beta fails loudly in tests instead of half-working.
"""

from __future__ import annotations

import json
from typing import Any, get_args

from openai.types.realtime import RealtimeServerEvent
from pydantic import BaseModel, ValidationError

from ai.sim.protocol import (
    CLIENT_EVENTS,
    AssistantMessage,
    ClientEvent,
    ClientEventError,
    FunctionCall,
    FunctionCallOutput,
    SystemMessage,
    UserMessage,
)

__all__ = ["parse_client_event"]

# -- beta-era names and where GA put them ----------------------------------------------------
_SESSION_BETA = {
    "input_audio_format": "session.audio.input.format",
    "output_audio_format": "session.audio.output.format",
    "voice": "session.audio.output.voice",
    "speed": "session.audio.output.speed",
    "turn_detection": "session.audio.input.turn_detection",
    "input_audio_transcription": "session.audio.input.transcription",
    "input_audio_noise_reduction": "session.audio.input.noise_reduction",
    "modalities": "session.output_modalities",
    "max_response_output_tokens": "session.max_output_tokens",
    "temperature": None,
}
_RESPONSE_BETA = {
    "modalities": "response.output_modalities",
    "voice": "response.audio.output.voice",
    "output_audio_format": "response.audio.output.format",
    "max_response_output_tokens": "response.max_output_tokens",
    "temperature": None,
}
_BETA_FORMATS = {"pcm16", "g711_ulaw", "g711_alaw"}
_BETA_EVENTS = {
    "transcription_session.update": "GA sends session.update with session.type='transcription'",
    **{
        f"response.{beta}.{end}": f"the GA server event is response.{ga}.{end}"
        for beta, ga in (
            ("audio", "output_audio"),
            ("audio_transcript", "output_audio_transcript"),
            ("text", "output_text"),
        )
        for end in ("delta", "done")
    },
}
_SERVER_EVENTS = frozenset(
    get_args(member.model_fields["type"].annotation)[0]
    for member in get_args(get_args(RealtimeServerEvent)[0])
)


def _beta(message: str, param: str, event_id: str | None) -> ClientEventError:
    return ClientEventError(
        f"beta-style Realtime shape: {message}", code="beta_shape", param=param, event_id=event_id
    )


def _check_session_beta(session: Any, event_id: str | None) -> None:
    if not isinstance(session, dict):
        return
    for key, ga in _SESSION_BETA.items():
        if key in session:
            where = f"GA puts it at {ga}" if ga else "GA removed it"
            raise _beta(f"session.{key} is not a GA field ({where})", f"session.{key}", event_id)
    if session.get("type") == "transcription":
        raise ClientEventError(
            "the stand-in simulates realtime sessions only, not transcription sessions",
            param="session.type",
            event_id=event_id,
            protocol=False,
        )
    if "type" not in session:
        raise _beta(
            "session.type is missing; a GA session.update says session.type='realtime'",
            "session.type",
            event_id,
        )
    audio = session.get("audio")
    if isinstance(audio, dict):
        for side in ("input", "output"):
            fmt = (
                (audio.get(side) or {}).get("format") if isinstance(audio.get(side), dict) else None
            )
            if isinstance(fmt, str) and fmt in _BETA_FORMATS:
                raise _beta(
                    f"audio format {fmt!r} is a beta name; GA uses "
                    "{'type': 'audio/pcm', 'rate': 24000} or {'type': 'audio/pcmu'}",
                    f"session.audio.{side}.format",
                    event_id,
                )


def _check_response_beta(response: Any, event_id: str | None) -> None:
    if not isinstance(response, dict):
        return
    for key, ga in _RESPONSE_BETA.items():
        if key in response:
            where = f"GA puts it at {ga}" if ga else "GA removed it"
            raise _beta(f"response.{key} is not a GA field ({where})", f"response.{key}", event_id)


def _check_item_beta(item: Any, event_id: str | None) -> None:
    if not isinstance(item, dict) or item.get("role") != "assistant":
        return
    for index, part in enumerate(item.get("content") or []):
        kind = part.get("type") if isinstance(part, dict) else None
        if kind in {"text", "audio"}:
            raise _beta(
                f"assistant content type {kind!r} is beta; GA uses 'output_{kind}'",
                f"item.content[{index}].type",
                event_id,
            )


_ITEM_MODELS: dict[tuple[str, str | None], type[BaseModel]] = {
    ("message", "system"): SystemMessage,
    ("message", "user"): UserMessage,
    ("message", "assistant"): AssistantMessage,
    ("function_call", None): FunctionCall,
    ("function_call_output", None): FunctionCallOutput,
}


def _check_item(raw: Any, event_id: str | None) -> None:
    """Validate an item against the model for its type and role (content differs by role)."""
    kind = raw.get("type") if isinstance(raw, dict) else None
    role = raw.get("role") if isinstance(raw, dict) and kind == "message" else None
    model = _ITEM_MODELS.get((str(kind), role))
    if model is None:
        raise ClientEventError(
            f"conversation.item.create: unsupported item type/role {kind!r}/{role!r}",
            param="item.type",
            event_id=event_id,
        )
    try:
        model.model_validate(raw)
    except ValidationError as exc:
        message, param = _describe(exc, "item")
        raise ClientEventError(
            f"conversation.item.create: {message}", param=param, event_id=event_id
        ) from exc


def _describe(exc: ValidationError, prefix: str) -> tuple[str, str]:
    first = exc.errors()[0]
    loc = ".".join(str(part) for part in first["loc"])
    param = f"{prefix}.{loc}" if prefix and loc else (loc or prefix)
    if first["type"] == "extra_forbidden":
        return f"unknown field {param} (not part of the GA schema)", param
    return f"{param}: {first['msg']}", param


def parse_client_event(text: str | bytes) -> ClientEvent:
    """Parse one client message; raises :class:`ClientEventError` with a clear message."""
    try:
        raw = json.loads(text)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ClientEventError(f"message is not valid JSON: {exc}", code="invalid_json") from exc
    if not isinstance(raw, dict):
        raise ClientEventError("a client event must be a JSON object", code="invalid_json")
    event_id = raw.get("event_id") if isinstance(raw.get("event_id"), str) else None
    kind = raw.get("type")
    if not isinstance(kind, str):
        raise ClientEventError("missing event type", param="type", event_id=event_id)
    if kind in _BETA_EVENTS:
        raise _beta(f"{kind!r} is not a GA client event ({_BETA_EVENTS[kind]})", "type", event_id)
    model = CLIENT_EVENTS.get(kind)
    if model is None:
        side = "a server event, which clients cannot send" if kind in _SERVER_EVENTS else "unknown"
        raise ClientEventError(
            f"invalid event type {kind!r}: {side}",
            code="invalid_event_type",
            param="type",
            event_id=event_id,
        )
    if kind == "session.update":
        _check_session_beta(raw.get("session"), event_id)
    elif kind == "response.create":
        _check_response_beta(raw.get("response"), event_id)
    elif kind == "conversation.item.create":
        _check_item_beta(raw.get("item"), event_id)
        _check_item(raw.get("item"), event_id)
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        message, param = _describe(exc, "")
        raise ClientEventError(f"{kind}: {message}", param=param, event_id=event_id) from exc
