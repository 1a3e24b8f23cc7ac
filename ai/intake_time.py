"""When to call, as the chat intake reads it: find time phrases in a message and read them.

:func:`find_time_spans` finds phrases such as "now", "in 10 minutes", "tomorrow at 3pm",
"Thursday after 3" or "at 17:30" in free text (English); :func:`read_when` turns one phrase
(or an ISO 8601 date-time, or a short phrase in another language) into an aware UTC time in
the user's zone with ``dateparser`` (DESIGN.md §9), or says plainly why it cannot: unreadable,
in the past, or too far ahead. Pure functions, no I/O: the rules intake, the Gemini intake
(validating Gemini's ``when``) and the Gemini stand-in all use them.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Final
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from db.shapes import require_aware

__all__ = [
    "ASAP_TEXT",
    "MAX_AHEAD",
    "TimeSpan",
    "WhenReading",
    "find_time_spans",
    "is_asap",
    "read_when",
]

MAX_AHEAD: Final = dt.timedelta(days=366)
"""How far ahead a task may be scheduled (the repository refuses more than a year)."""
PAST_SLACK: Final = dt.timedelta(minutes=2)
"""A time this little in the past ("at 10:12" said at 10:13) means "as soon as possible"."""
DEFAULT_HOUR: Final = "09:00"
"""The time of day used when only a day is given ("tomorrow", "Friday")."""
ASAP_TEXT: Final = "as soon as possible"
_FLAGS: Final = re.IGNORECASE
_MAX_PHRASE_CHARS: Final = 200
_LAST_AFTERNOON_HOUR: Final = 7  # a bare 1–7 for a phone call means the afternoon (as ai.tools)

# -- the atoms of a time phrase -----------------------------------------------------------------

_AMPM = r"(?:\s*(?:am|pm|a\.m\.?|p\.m\.?)(?![a-z]))"
_PREP = r"(?:at|after|around|about|from|towards?)"
_DAYNAME = r"(?:monday|tuesday|tues|wednesday|weds|thursday|thurs|friday|saturday|sunday)"
_MONTH = (
    r"(?:jan(?:uary)?|feb(?:ruary)?|march|apr(?:il)?|may|june?|july?|aug(?:ust)?"
    r"|sept?(?:ember)?|oct(?:ober)?|nov(?:ember)?|dec(?:ember)?)"
)
_ORD = r"\d{1,2}(?:st|nd|rd|th)?"
_COUNT = (
    r"(?:\d+|an?|one|two|three|four|five|six|seven|eight|nine|ten|fifteen|twenty|thirty"
    r"|forty[\s-]?five|a\s+couple\s+of|a\s+few)"
)
_UNIT = r"(?:minutes?|mins?|hours?|hrs?|days?|weeks?)"
_NOW = (
    r"(?:right\s+now|now|asap|a\.s\.a\.p\.?|as\s+soon\s+as\s+possible|immediately"
    r"|right\s+away|straight\s+away|at\s+once)"
)
_ATOMS: Final = (
    # relative: "in 10 minutes", "in half an hour", "10 minutes from now"
    rf"in\s+{_COUNT}\s*{_UNIT}",
    r"in\s+half\s+an?\s+hour",
    r"in\s+(?:a\s+)?quarter\s+of\s+an?\s+hour",
    rf"\d+\s*{_UNIT}\s+from\s+now",
    _NOW,
    # days: "tomorrow", "next Thursday", "on March 6th", "the 6th of March", "2026-03-06"
    r"(?:the\s+)?day\s+after\s+tomorrow",
    r"today|tomorrow|tmrw|tonight|later\s+today",
    r"(?:next|this)\s+week(?:end)?",
    rf"(?:(?:this|next|coming|on)\s+)?{_DAYNAME}",
    rf"(?:on\s+)?{_MONTH}\.?\s+{_ORD}(?![\d:])",
    rf"(?:on\s+)?(?:the\s+)?{_ORD}\s+(?:of\s+)?{_MONTH}",
    r"(?:on\s+)?\d{4}-\d{2}-\d{2}(?:[t\s]\d{1,2}:\d{2})?",
    # parts of the day
    r"(?:(?:this|in\s+the|at)\s+)?(?:morning|afternoon|evening|noon|midday|lunchtime|midnight)",
    # clock times: "at 3pm", "17:30", "after 3", "at 4.30"
    rf"(?:{_PREP}\s+)?\d{{1,2}}:\d{{2}}{_AMPM}?",
    rf"(?:{_PREP}\s+)?\d{{1,2}}{_AMPM}",
    r"at\s+\d{1,2}\.\d{2}(?!\s*(?:euros?|dollars?|pounds?|eur|usd|gbp)\b)",
    rf"{_PREP}\s+\d{{1,2}}(?:\s*o'?clock)?(?![\d:.,%]|\s*(?:{_UNIT}|percent|euros?|dollars?)\b)",
)
_ATOM_RE: Final = re.compile(r"(?<![\w:+.-])(?:" + "|".join(_ATOMS) + r")(?![\w]|:\d)", _FLAGS)
_JOIN: Final = re.compile(r"^[\s,]*(?:(?:at|on|in\s+the)\s*)?$", _FLAGS)
"""What may sit between two atoms of one phrase ("tomorrow, at 3pm", "Thursday after 3")."""
_NOW_RE: Final = re.compile(rf"^(?:call\s+)?{_NOW}[.!]*$", _FLAGS)


@dataclass(frozen=True, slots=True)
class TimeSpan:
    """One time phrase found in a text: where it is and what it says."""

    start: int
    end: int
    text: str


def find_time_spans(text: str) -> list[TimeSpan]:
    """The time phrases in ``text``, adjacent atoms merged ("tomorrow" + "at 3pm")."""
    spans: list[TimeSpan] = []
    for match in _ATOM_RE.finditer(text):
        start, end = match.span()
        # "now" never refines another phrase: "next week, now" is two phrases, not one.
        alone = is_asap(match.group(0)) or bool(spans and is_asap(spans[-1].text))
        if spans and not alone and _JOIN.match(text[spans[-1].end : start]):
            start = spans.pop().start
        spans.append(TimeSpan(start, end, text[start:end]))
    return spans


def is_asap(text: str) -> bool:
    """Whether ``text`` says "now" / "asap" / "as soon as possible" and nothing else."""
    return bool(_NOW_RE.match(" ".join(text.split())))


# -- reading one phrase ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class WhenReading:
    """A time phrase read: ``at`` (aware UTC; ``None`` = as soon as possible) or ``error``."""

    text: str
    """The phrase as the user said it."""
    at: dt.datetime | None = None
    error: str | None = None
    """Why the phrase cannot be used, as a sentence for the user."""


_REWRITES: Final = (
    (re.compile(r"\bhalf\s+an?\s+hour\b", _FLAGS), "30 minutes"),
    (re.compile(r"\b(?:a\s+)?quarter\s+of\s+an?\s+hour\b", _FLAGS), "15 minutes"),
    (re.compile(r"\ba\s+couple\s+of\b", _FLAGS), "2"),
    (re.compile(r"\ba\s+few\b", _FLAGS), "3"),
    (re.compile(r"\bforty[\s-]?five\b", _FLAGS), "45"),
    (re.compile(r"\btmrw\b", _FLAGS), "tomorrow"),
    (re.compile(r"\btues\b", _FLAGS), "tuesday"),
    (re.compile(r"\bweds\b", _FLAGS), "wednesday"),
    (re.compile(r"\bthurs\b", _FLAGS), "thursday"),
    (re.compile(r"\b(?:at\s+)?(?:noon|midday|lunchtime)\b", _FLAGS), "at 12:00"),
    (re.compile(r"\b(?:coming|this)\s+(?=" + _DAYNAME + r"\b)", _FLAGS), ""),
    (re.compile(r"\b(\d{1,2})\.(\d{2})\b"), r"\1:\2"),
    (re.compile(r"(\d)\s*o'?clock\b", _FLAGS), r"\1"),
)
_BARE_HOUR: Final = re.compile(
    rf"(?:\b{_PREP}\s+(\d{{1,2}})(?::(\d{{2}}))?|(?<![\d:])(\d{{1,2}}):(\d{{2}}))"
    rf"(?![\d:])(?!{_AMPM})",
    _FLAGS,
)
"""A clock hour without am/pm: after a preposition ("after 3") or with minutes ("3:30")."""
_SOFT_PREP: Final = re.compile(r"\b(?:after|around|about|from|towards?)\s+(?=\d)", _FLAGS)
_HAS_DAY: Final = re.compile(
    rf"\b(?:today|tomorrow|tonight|{_DAYNAME}|{_MONTH}|\d{{4}}-\d{{2}}-\d{{2}}|\d+(?:st|nd|rd|th))\b",
    _FLAGS,
)
_HAS_HOUR: Final = re.compile(
    r"\d{1,2}:\d{2}|\d\s*(?:am|pm|a\.m|p\.m)|morning|afternoon|evening|tonight|midnight"
    r"|\bin\s+\d|\bfrom\s+now\b",
    _FLAGS,
)
_TODAY_ONLY: Final = re.compile(r"^today$", _FLAGS)
_WEEKS: Final = (
    (re.compile(r"\bthis\s+weekend\b", _FLAGS), "saturday"),
    (re.compile(r"\bnext\s+weekend\b", _FLAGS), "next saturday"),
    (re.compile(r"\bnext\s+week\b", _FLAGS), "next monday"),
    (re.compile(r"\blater\s+today\b", _FLAGS), "in 2 hours"),
)
"""Weeks read as their first calling day (dateparser would keep today's time a week on)."""
# Non-English hours that dateparser misreads ("um 15 Uhr" keeps the current minutes).
_FOREIGN_CLOCKS: Final = (
    (re.compile(r"\b(?:um|ab|gegen|nach)\s+(\d{1,2})(?:[:.](\d{2}))?\s*uhr\b", _FLAGS), "um"),
    (re.compile(r"\b(?:à|a|vers|après|dès)\s+(\d{1,2})\s*h(\d{2})?\b", _FLAGS), "à"),
    (re.compile(r"\b(?:a|sobre|hacia)\s+las\s+(\d{1,2})(?::(\d{2}))?\b", _FLAGS), "a las"),
)


def _bare_hour(match: re.Match[str]) -> str:
    said = match.group(1) or match.group(3)
    hour, minute = int(said), int(match.group(2) or match.group(4) or 0)
    if hour > 23 or minute > 59:
        return match.group(0)
    if 1 <= hour <= _LAST_AFTERNOON_HOUR and not said.startswith("0"):
        hour += 12  # "at 07:30" is said on purpose; "at 3" or "3:30" mean the afternoon
    return f"at {hour:02d}:{minute:02d}"


def _foreign_clock(word: str) -> Callable[[re.Match[str]], str]:
    def fix(match: re.Match[str]) -> str:
        """The matched hour as a 24-hour clock after ``word``."""
        hour, minute = int(match.group(1)), int(match.group(2) or 0)
        return f"{word} {hour:02d}:{minute:02d}" if hour <= 23 and minute <= 59 else match[0]

    return fix


def _normalise(text: str) -> str:
    """An English phrase dateparser reads reliably: 24-hour clocks, full day names."""
    out = text.strip(" ,.!").lower()
    for pattern, replacement in (*_WEEKS, *_REWRITES):
        out = pattern.sub(replacement, out)
    out = _BARE_HOUR.sub(_bare_hour, out)
    out = _SOFT_PREP.sub("at ", out)  # "after 3pm" reads as "at 3pm"
    for pattern, word in _FOREIGN_CLOCKS:
        out = pattern.sub(_foreign_clock(word), out)
    out = re.sub(r"^on\s+", "", out)
    if _HAS_DAY.search(out) and not _HAS_HOUR.search(out) and "at " not in out:
        out = f"{out} at {DEFAULT_HOUR}"  # "tomorrow" means tomorrow morning, not midnight
    return " ".join(out.split())


def dateparse(
    phrase: str, zone: str, local_now: dt.datetime, languages: Sequence[str]
) -> dt.datetime | None:
    """``phrase`` read by dateparser in ``zone``, relative to ``local_now``, future first."""
    import dateparser  # noqa: PLC0415 -- lazy: ~10 MB, needed only when a time is read

    settings: Any = {
        "PREFER_DATES_FROM": "future",
        "TIMEZONE": zone,
        "RETURN_AS_TIMEZONE_AWARE": True,
        "RELATIVE_BASE": local_now.replace(tzinfo=None),
    }
    return dateparser.parse(phrase, languages=list(languages), settings=settings)


def _today_if_named(phrase: str, local_now: dt.datetime) -> str:
    """Today's weekday without "next" means today ("Thursday at 3pm" said on a Thursday)."""
    today = f"{local_now:%A}".lower()
    if re.search(rf"\bnext\s+{today}\b", phrase):
        return phrase
    return re.sub(rf"\b{today}\b", "today", phrase)


def _parse(
    text: str, tz: ZoneInfo, now: dt.datetime, languages: Sequence[str]
) -> dt.datetime | None:
    local_now = now.astimezone(tz)
    if _TODAY_ONLY.match(text.strip(" .!")):
        return now
    if re.search(r"\d:\d", text):  # an ISO date-time; a bare ISO date gets the default hour
        try:
            value = dt.datetime.fromisoformat(text)
        except ValueError:
            pass
        else:
            aware = value.replace(tzinfo=tz) if value.tzinfo is None else value
            return aware.astimezone(dt.UTC)
    phrase = _normalise(text)
    today = _today_if_named(phrase, local_now)
    if today != phrase:
        found = dateparse(today, tz.key, local_now, languages)
        if found is not None and found > now:
            return found.astimezone(dt.UTC)
    found = dateparse(phrase, tz.key, local_now, languages)
    return found.astimezone(dt.UTC) if found is not None else None


def _local(when: dt.datetime, tz: ZoneInfo) -> str:
    return f"{when.astimezone(tz):%a %d %b %Y, %H:%M}"


def read_when(
    text: str, *, zone: str, now: dt.datetime, languages: Sequence[str] = ("en",)
) -> WhenReading:
    """Read ``text`` (a phrase said in ``zone``, or ISO 8601) as a future call time."""
    now = require_aware(now, "now")
    try:
        tz = ZoneInfo(zone)
    except (ZoneInfoNotFoundError, ValueError):
        tz = ZoneInfo("UTC")
    said = " ".join(text.split())[:_MAX_PHRASE_CHARS]
    if not said:
        return WhenReading(said, error="No time was given.")
    if is_asap(said):
        return WhenReading(said)
    when = _parse(said, tz, now, languages)
    if when is None:
        return WhenReading(said, error=f"I couldn't read “{said}” as a time.")
    if when <= now - PAST_SLACK:
        return WhenReading(
            said,
            error=f"“{said}” is in the past ({_local(when, tz)}); it is now {_local(now, tz)} "
            f"({tz.key}).",
        )
    if when - now > MAX_AHEAD:
        return WhenReading(said, error=f"“{said}” is too far ahead: at most a year from now.")
    return WhenReading(said, at=when if when > now else None)
