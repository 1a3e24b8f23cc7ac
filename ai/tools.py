"""The four tools the voice AI may call (DESIGN.md §4), as typed argument models.

Each model's docstring and field descriptions *are* the JSON schema sent in ``session.update``.
:class:`ToolArgumentError` carries a message meant for the model: the CallActor answers the
tool call with it, so the model can correct itself; a bad call never crashes the call.
"""

from __future__ import annotations

import datetime as dt
import inspect
import json
import re
from collections.abc import Sequence
from typing import Annotated, Any, ClassVar, Final, TypeAlias
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    WithJsonSchema,
)

from db.shapes import require_aware
from db.states import MODEL_END_REASONS, EndReason

__all__ = [
    "MODEL_END_REASON_VALUES",
    "TOOL_MODELS",
    "EndCallArgs",
    "RequestUserInfoArgs",
    "RescheduleCallArgs",
    "SendDtmfArgs",
    "ToolArgs",
    "ToolArgumentError",
    "parse_tool_call",
    "parse_when",
    "tool_schemas",
]

MODEL_END_REASON_VALUES: Final[tuple[str, ...]] = tuple(
    r.value for r in EndReason if r in MODEL_END_REASONS
)
"""The ``end_call`` reasons in declaration order (stable schema, readable errors)."""


class ToolArgumentError(ValueError):
    """A tool call the model must correct; the message is what the model sees."""


_REASONS_TEXT: Final = ", ".join(MODEL_END_REASON_VALUES)
_DTMF_PATTERN: Final = r"^[0-9*#A-D]{1,32}$"
_DTMF_RE: Final = re.compile(_DTMF_PATTERN)


def _model_reason(value: Any) -> Any:
    # Checked before the enum so the model never hears of the system's own reasons.
    if isinstance(value, str) and value not in MODEL_END_REASON_VALUES:
        raise ValueError(f"must be one of {_REASONS_TEXT}")
    if isinstance(value, EndReason) and value not in MODEL_END_REASONS:
        raise ValueError(f"must be one of {_REASONS_TEXT}")
    return value


def _digits_text(value: Any) -> Any:
    # Models sometimes send 5 instead of "5", or "1 2 3": accept what is unambiguous.
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        value = str(value)
    if isinstance(value, str):
        value = re.sub(r"[\s,-]", "", value).upper()
        if not _DTMF_RE.match(value):
            raise ValueError("must be 1 to 32 keys among 0-9, *, #, A-D")
    return value


ModelEndReason = Annotated[
    EndReason,
    BeforeValidator(_model_reason),
    WithJsonSchema({"type": "string", "enum": list(MODEL_END_REASON_VALUES)}),
]
DtmfDigits = Annotated[
    str,
    BeforeValidator(_digits_text),
    WithJsonSchema({"type": "string", "pattern": _DTMF_PATTERN}),
]
WaitSeconds = Annotated[
    float | None,
    WithJsonSchema({"type": "number", "exclusiveMinimum": 0, "maximum": 3600}),
]


class _ToolArgs(BaseModel):
    # Extra keys are ignored rather than refused: a stray argument must not cost a turn.
    model_config = ConfigDict(
        extra="ignore", frozen=True, json_schema_extra={"additionalProperties": False}
    )

    tool_name: ClassVar[str]


class EndCallArgs(_ToolArgs):
    """Hang up. Call it only after you have said goodbye (your goodbye is played to the end first).

    Pick the reason that best describes why the call ends.
    """

    tool_name: ClassVar[str] = "end_call"

    reason: ModelEndReason = Field(
        description=(
            "completed: the objective was reached, or cannot be reached in this call; "
            "callee_declined: the callee refused; "
            "do_not_call: the callee asked never to be called again; "
            "wrong_number: the callee is not who we wanted; "
            "voicemail: you reached a voicemail or answering machine; "
            "ivr_dead_end: an automated menu offers no way forward; "
            "callback_requested: the callee asked to be called back later (after reschedule_call); "
            "other: anything else."
        )
    )


class SendDtmfArgs(_ToolArgs):
    """Press phone keys (DTMF tones), e.g. to navigate an automated menu ("press 1 for …")."""

    tool_name: ClassVar[str] = "send_dtmf"

    digits: DtmfDigits = Field(
        description='The keys to press in order: 1 to 32 of 0-9, *, #, A-D (e.g. "1" or "1234#").',
    )


class RescheduleCallArgs(_ToolArgs):
    """Record that the callee asked to be called back at another time.

    Then confirm the time with the callee, say goodbye and call end_call with callback_requested.
    """

    tool_name: ClassVar[str] = "reschedule_call"

    when: str = Field(
        min_length=1,
        max_length=200,
        description=(
            "When to call back, in the callee's local time: an ISO 8601 date-time "
            '(e.g. "2026-03-05T15:00") or the callee\'s words in English '
            '(e.g. "tomorrow at 3pm", "Thursday after 3", "in two hours").'
        ),
    )
    reason: str = Field(
        min_length=1, max_length=500, description="Why the callee wants to be called later."
    )


class RequestUserInfoArgs(_ToolArgs):
    """Ask the person you are calling for when you need a fact you do not have.

    Never invent the fact. While you wait, say recipient_message to the callee and keep them on
    the line; the answer arrives as a message from that person.
    """

    tool_name: ClassVar[str] = "request_user_info"

    question: str = Field(
        min_length=1,
        max_length=1000,
        description="The question for the person you act for, complete enough to answer alone.",
    )
    timeout_seconds: WaitSeconds = Field(
        default=None,
        gt=0,
        le=3600,
        description="How long you can keep the callee waiting, in seconds (omit for the default).",
    )
    recipient_message: str = Field(
        min_length=1,
        max_length=500,
        description='What you tell the callee now, e.g. "One moment please, let me check that."',
    )


ToolArgs: TypeAlias = EndCallArgs | SendDtmfArgs | RescheduleCallArgs | RequestUserInfoArgs

TOOL_MODELS: Final[dict[str, type[ToolArgs]]] = {
    cls.tool_name: cls
    for cls in (EndCallArgs, SendDtmfArgs, RescheduleCallArgs, RequestUserInfoArgs)
}
"""Tool name -> argument model."""


def _strip_titles(node: Any) -> Any:
    """Drop pydantic's generated ``title`` keys: tokens the model does not need."""
    if isinstance(node, dict):
        out: dict[str, Any] = {}
        for key, value in node.items():
            if key == "title" and isinstance(value, str):
                continue
            if key == "properties" and isinstance(value, dict):
                out[key] = {name: _strip_titles(sub) for name, sub in value.items()}
            else:
                out[key] = _strip_titles(value)
        return out
    if isinstance(node, list):
        return [_strip_titles(item) for item in node]
    return node


def _schema(cls: type[ToolArgs]) -> dict[str, Any]:
    parameters = _strip_titles(cls.model_json_schema())
    parameters.pop("description", None)  # it goes one level up, as the tool's description
    return {
        "type": "function",
        "name": cls.tool_name,
        "description": " ".join(inspect.cleandoc(cls.__doc__ or "").split()),
        "parameters": parameters,
    }


def tool_schemas() -> list[dict[str, Any]]:
    """The tools for ``session.update``, in the GA ``{"type": "function", …}`` form."""
    return [_schema(cls) for cls in TOOL_MODELS.values()]


def _describe(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors(include_url=False, include_input=False)[:3]:
        field = ".".join(str(p) for p in err["loc"]) or "arguments"
        message = err["msg"].removeprefix("Value error, ")
        parts.append(f"{field}: {message}")
    return "; ".join(parts)


def parse_tool_call(name: str, arguments_json: str) -> ToolArgs:
    """Validate a tool call from the model; ToolArgumentError tells the model what to fix."""
    cls = TOOL_MODELS.get(name)
    if cls is None:
        raise ToolArgumentError(f"unknown tool {name!r}; available tools: {', '.join(TOOL_MODELS)}")
    try:
        arguments = json.loads(arguments_json) if arguments_json.strip() else {}
    except ValueError:
        raise ToolArgumentError(f"{name}: arguments are not valid JSON") from None
    if not isinstance(arguments, dict):
        raise ToolArgumentError(f"{name}: arguments must be a JSON object")
    try:
        return cls.model_validate(arguments)
    except ValidationError as exc:
        raise ToolArgumentError(f"{name}: invalid arguments: {_describe(exc)}") from None


# -- reschedule_call: when ------------------------------------------------------------------

_UNIT_WORDS = r"(?:am\b|pm\b|a\.m|p\.m|h\b|hours?|hrs?|minutes?|mins?|days?|weeks?|months?|years?)"
# "after 3", "at 4:30", "around 5 o'clock" — a bare clock hour after a time preposition.
_BARE_HOUR = re.compile(
    r"\b(?:after|around|about|at|from|past|by|towards?)\s+(\d{1,2})(?:[:.](\d{2}))?"
    # No backtracking into "4" of "4:30 pm": the number must be whole, then no am/pm or unit.
    r"(?!\d|[:.]\d)(?:\s*o'?clock)?(?!\s*" + _UNIT_WORDS + r")",
    re.IGNORECASE,
)
_LAST_AFTERNOON_HOUR = 7  # a bare 1–7 on a phone call means the afternoon (business hours)


def _clock(match: re.Match[str]) -> str:
    hour, minute = int(match.group(1)), int(match.group(2) or 0)
    if hour > 23 or minute > 59:
        return match.group(0)
    if 1 <= hour <= _LAST_AFTERNOON_HOUR:
        hour += 12
    return f"at {hour:02d}:{minute:02d}"  # dateparser knows "at 15:00", not "around 15:00"


def _normalise_phrase(text: str) -> str:
    """Give bare hours a 24-hour clock so "Thursday after 3" is not read as a date (3/…)."""
    return _BARE_HOUR.sub(_clock, text)


def _parse_iso(text: str, zone: ZoneInfo) -> dt.datetime | None:
    try:
        value = dt.datetime.fromisoformat(text)
    except ValueError:
        return None
    return value.replace(tzinfo=zone) if value.tzinfo is None else value


def _parse_phrase(
    text: str, zone_name: str, local_now: dt.datetime, languages: Sequence[str]
) -> dt.datetime | None:
    from ai.intake_time import dateparse  # noqa: PLC0415 -- dateparser is lazy there

    return dateparse(_normalise_phrase(text), zone_name, local_now, languages)


def parse_when(
    text: str, *, zone: str, now: dt.datetime, languages: Sequence[str] = ("en",)
) -> dt.datetime:
    """A future callback time from ISO 8601 or a phrase in the callee's zone, as aware UTC."""
    now = require_aware(now, "now")
    try:
        tz = ZoneInfo(zone)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError(f"unknown time zone {zone!r}") from exc
    local_now = now.astimezone(tz)
    cleaned = " ".join(text.split())
    if not cleaned:
        raise ToolArgumentError("reschedule_call: 'when' is empty; give a date and time")
    when = _parse_iso(cleaned, tz) or _parse_phrase(cleaned, zone, local_now, languages)
    current = f"it is now {local_now:%A %Y-%m-%d %H:%M} in the callee's time zone"
    if when is None:
        raise ToolArgumentError(
            f"reschedule_call: could not understand {cleaned!r} as a time; {current}; "
            "give an ISO date-time like 2026-03-05T15:00"
        )
    when = when.astimezone(dt.UTC)
    if when <= now:
        raise ToolArgumentError(
            f"reschedule_call: {cleaned!r} is in the past ({when.astimezone(tz):%A %Y-%m-%d %H:%M}"
            f" local); {current}; ask the callee for a later time"
        )
    return when
