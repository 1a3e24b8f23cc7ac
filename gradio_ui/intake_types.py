"""The chat intake's interface: the draft a conversation builds, one turn, and the intake.

The New task tab keeps a :class:`Draft` per browser session and calls
:meth:`Intake.respond` once per user message; when a turn comes back ``confirmed`` it creates
the task with :func:`draft_to_task_kwargs` (``db.repo.tasks.create_task``). Two intakes
implement the protocol: rules (:class:`gradio_ui.intake.RulesIntake`) and Gemini with
function calling (:class:`gradio_ui.intake_gemini.GeminiIntake`); ``make_intake`` picks one.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final, Protocol
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import phonenumbers

from ai.intake_rules import LANGUAGES, Awaiting
from ai.intake_time import ASAP_TEXT
from db.phone import NumberRefusedError, zones_for_number

__all__ = [
    "REQUIRED",
    "Draft",
    "Intake",
    "IntakeTurn",
    "draft_to_task_kwargs",
    "escape_markdown",
    "pretty_phone",
]

REQUIRED: Final = ("phone", "objective", "timing")
"""What a task cannot be created without, in the order the chat asks for it."""
_LANGUAGE_NAMES: Final = {code: name.title() for name, code in reversed(LANGUAGES.items())}
_MARKDOWN: Final = re.compile(r"([\\`*_{}\[\]()<>#+!|~])")
_ZONE_NAME: Final = re.compile(r"^[A-Za-z][A-Za-z0-9_+-]*(?:/[A-Za-z0-9_+-]+)*$")


def escape_markdown(text: str) -> str:
    """``text`` shown literally in Markdown: no links, images, emphasis or HTML from input."""
    return _MARKDOWN.sub(r"\\\1", " ".join(text.split()))


def pretty_phone(e164: str) -> str:
    """``+14155550100`` as ``+1 415-555-0100``."""
    try:
        number = phonenumbers.parse(e164, None)
    except phonenumbers.NumberParseException:
        return e164
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.INTERNATIONAL)


@dataclass(frozen=True, slots=True)
class Draft:
    """What the chat has gathered so far for one new task."""

    phone: str | None = None
    """E.164 once validated."""
    callee_name: str | None = None
    objective: str | None = None
    context: str = ""
    at: dt.datetime | None = None
    """Aware UTC; ``None`` = as soon as possible."""
    at_text: str | None = None
    """How the user said it, for the card."""
    timing_set: bool = False
    """The user answered "when" ("now" counts)."""
    language: str = "en"
    timezone: str | None = None
    """The callee's zone when known or asked."""
    at_zone: str | None = None
    """The zone ``at_text`` was read in (the user's), to show ``at`` as they meant it."""
    awaiting: Awaiting | None = None
    """What the assistant asked for last, so the next message is read as its answer."""

    def missing(self) -> list[str]:
        """Which of phone / objective / timing are still missing, in asking order."""
        have = {"phone": bool(self.phone), "objective": bool(self.objective)}
        have["timing"] = self.timing_set
        return [name for name in REQUIRED if not have[name]]

    def card(self) -> str:
        """Markdown summary card shown before confirmation."""
        who = escape_markdown(self.callee_name) if self.callee_name else None
        number = pretty_phone(self.phone) if self.phone else "*(no number yet)*"
        lines = [
            "**📋 New call task**",
            "",
            f"- **Call:** {who} · {number}" if who else f"- **Call:** {number}",
            f"- **Objective:** {escape_markdown(self.objective or '') or '*(not given yet)*'}",
        ]
        if self.context.strip():
            lines.append(f"- **Context:** {escape_markdown(self.context)}")
        lines.append(f"- **When:** {self._when()}")
        lines.append(f"- **Language:** {_language_name(self.language)}")
        zone = self._callee_zone()
        if zone:
            lines.append(f"- **Callee's time zone:** {zone}")
        return "\n".join(lines)

    def _when(self) -> str:
        if not self.timing_set:
            return "*(not given yet)*"
        said = escape_markdown(self.at_text or "")
        if self.at is None:
            return f"{said} ({ASAP_TEXT})" if said and said != ASAP_TEXT else "As soon as possible"
        zone = _zone(self.at_zone)
        local = self.at.astimezone(zone)
        exact = f"{local:%a %d %b %Y, %H:%M} ({zone.key})"
        return f"{said} — {exact}" if said else exact

    def _callee_zone(self) -> str | None:
        if self.timezone:
            # An IANA name is shown as is ("America/New_York"; "_" inside a word is no emphasis).
            plain = _ZONE_NAME.match(self.timezone)
            return self.timezone if plain else escape_markdown(self.timezone)
        if not self.phone:
            return None
        try:
            zones = zones_for_number(self.phone)
        except NumberRefusedError:
            return None
        return f"{', '.join(zones)} (from the number)" if 0 < len(zones) <= 3 else None


def _zone(name: str | None) -> ZoneInfo:
    try:
        return ZoneInfo(name or "UTC")
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo("UTC")


def _language_name(code: str) -> str:
    name = _LANGUAGE_NAMES.get(code)
    return f"{name} ({code})" if name else escape_markdown(code)


@dataclass(frozen=True, slots=True)
class IntakeTurn:
    """The intake's answer to one user message."""

    reply: str
    """What the assistant says (Markdown)."""
    draft: Draft
    """The updated draft."""
    ready: bool
    """Everything needed is there; the card is shown; waiting for "yes"."""
    confirmed: bool
    """The user confirmed: the caller creates the task now."""


class Intake(Protocol):
    """A dialogue that turns chat messages into a confirmed :class:`Draft`."""

    async def respond(
        self,
        draft: Draft,
        history: Sequence[tuple[str, str]],
        message: str,
        *,
        now: dt.datetime,
        user_zone: str,
    ) -> IntakeTurn:
        """The reply to ``message`` given the draft so far and the (role, text) history."""
        ...


def draft_to_task_kwargs(draft: Draft) -> dict[str, Any]:
    """The keyword arguments of ``db.repo.tasks.create_task`` for a complete draft."""
    missing = draft.missing()
    if missing:
        raise ValueError(f"the task is not complete yet: missing {', '.join(missing)}")
    return {
        "phone": draft.phone,
        "objective": draft.objective,
        "context": draft.context,
        "callee_name": draft.callee_name,
        "language": draft.language,
        "timezone": draft.timezone,
        "at": draft.at,
    }
