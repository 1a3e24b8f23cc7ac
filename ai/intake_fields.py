"""Single fields of a chat message about a call task: yes/no, phone numbers, language, zone.

Pure helpers of :mod:`ai.intake_rules`: :func:`read_intent` tells a yes, a no and a request
to start over apart; phone numbers are found with ``phonenumbers`` (and likely attempts such
as "911" or "+1 415 555") and checked by :func:`db.phone.normalize_destination`, so a refused
number is explained in a sentence; a language ("in French", "language: de") becomes a tag; a
time zone ("timezone: Europe/Paris") is checked against the IANA database.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import phonenumbers

from ai.intake_time import TimeSpan
from db.phone import NumberRefusedError, normalize_destination

__all__ = [
    "LANGUAGES",
    "Intent",
    "PhoneFound",
    "blank",
    "check_phone",
    "find_phones",
    "language_code",
    "read_intent",
    "take_language",
    "take_timezone",
]

Intent = Literal["yes", "no", "reset"]
_FLAGS: Final = re.IGNORECASE


# -- yes / no / start over ----------------------------------------------------------------------

_TAIL = r"(?:[\s,]+(?:please|thanks|thank\s+you|go\s+ahead|do\s+it|create\s+it|confirm))*"
_END = r"[\s.!👍🙂😀]*$"
_YES: Final = re.compile(
    r"^(?:yes|yeah|yep|yup|y|ok|okay|k|sure|confirm(?:ed)?|correct|go\s+ahead|do\s+it"
    r"|create\s+it|sounds\s+good|perfect|great|that'?s\s+right|looks\s+good|please\s+do|👍)"
    + _TAIL
    + _END,
    _FLAGS,
)
_RESET: Final = re.compile(
    r"^(?:no[\s,]+)?(?:cancel(?:\s+(?:it|that|this))?|start\s+(?:over|again)|reset|restart"
    r"|forget\s+(?:it|that)|never\s*mind|scrap\s+(?:it|that)|discard(?:\s+it)?|new\s+task)"
    r"(?:[\s,]+please)?" + _END,
    _FLAGS,
)
_NO: Final = re.compile(r"^(?:no|nope|nah|n|not\s+yet|don'?t)" + _END, _FLAGS)


def read_intent(text: str) -> Intent | None:
    """Whether the whole message is a yes, a no, or a request to start over."""
    said = " ".join(text.replace("’", "'").split())
    if _RESET.match(said):
        return "reset"
    if _YES.match(said):
        return "yes"
    if _NO.match(said):
        return "no"
    return None


# -- phone numbers ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PhoneFound:
    """A number the user gave: its E.164 form, or why we will not dial it."""

    raw: str
    e164: str | None = None
    error: str | None = None


_REFUSALS: Final[dict[str, str]] = {
    "emergency": "emergency numbers are refused",
    "short_code": "short codes are refused; I need a full phone number",
    "premium_rate": "premium-rate numbers are refused",
}


def check_phone(raw: str, *, region: str | None = "US") -> PhoneFound:
    """``raw`` validated as a destination by :func:`db.phone.normalize_destination`."""
    shown = " ".join(raw.split())[:40]
    try:
        return PhoneFound(raw, e164=normalize_destination(raw, default_region=region))
    except NumberRefusedError as exc:
        if exc.code in _REFUSALS:
            return PhoneFound(raw, error=f"I can't call {shown}: {_REFUSALS[exc.code]}.")
        if exc.code == "invalid":
            return PhoneFound(raw, error=f"“{shown}” is not a phone number I can dial: {exc}.")
        return PhoneFound(raw, error=f"I can't call {shown}: {exc}.")


_NOT_A_DESTINATION: Final = re.compile(
    r"(?:\b(?:ref(?:erence)?|booking|order|account|acct|invoice|id|code|pin|zip|post\s*code"
    r"|room|suite|flat|apt|apartment|policy|ticket|confirmation|member(?:ship)?|customer|case"
    r"|claim|serial|tracking)\b(?:\s+(?:no\.?|number|num|#|id|code))?"
    r"|\b(?:my|our)\s+(?:own\s+|cell\s+|mobile\s+|home\s+|work\s+|callback\s+|phone\s+)*number"
    r"|\b(?:call|reach|text)\s+me(?:\s+back)?(?:\s+(?:at|on))?)"
    r"\s*(?:is|was|:|#|=)?\s*$",
    _FLAGS,
)
"""Words just before a number that make it a fact for the AI, not the number to call."""
_DIALLED_AFTER: Final = re.compile(
    r"\b(?:call|phone|ring|dial|number|no\.?|tel\.?|at|on|it'?s|number'?s|is)\s*[:#]?\s*$",
    _FLAGS,
)
_DIGITS: Final = re.compile(r"(?<![\w.:/+])\+?\(?\d(?:[\s().-]?\d){2,19}\)?(?![\w:/])")
_MIN_BARE_DIGITS: Final = 7


def blank(text: str, start: int, end: int) -> str:
    """``text`` with ``[start, end)`` replaced by spaces: positions elsewhere stay valid."""
    return text[:start] + " " * (end - start) + text[end:]


def find_phones(text: str, region: str, times: list[TimeSpan]) -> list[tuple[int, int, str]]:
    """Where numbers the user wants called are: valid ones first, then likely attempts."""
    found: list[tuple[int, int, str]] = []
    for match in phonenumbers.PhoneNumberMatcher(text, region):
        if not _NOT_A_DESTINATION.search(text[: match.start]):
            found.append((match.start, match.end, match.raw_string))
    alone = not re.sub(r"[\W_]", "", _DIGITS.sub("", text))
    for digits_match in _DIGITS.finditer(text):
        start, end = digits_match.span()
        if any(s <= start < e or start <= s < end for s, e, _ in found) or any(
            t.start <= start < t.end or start <= t.start < end for t in times
        ):
            continue
        before, raw = text[:start], digits_match.group(0)
        digits = sum(c.isdigit() for c in raw)
        if _NOT_A_DESTINATION.search(before):
            continue
        if (
            alone
            or raw.startswith("+")
            or digits >= _MIN_BARE_DIGITS
            or _DIALLED_AFTER.search(before)
        ):
            found.append((start, end, raw))
    return sorted(found)


# -- language and time zone ---------------------------------------------------------------------

LANGUAGES: Final[dict[str, str]] = {
    "english": "en",
    "french": "fr",
    "spanish": "es",
    "german": "de",
    "italian": "it",
    "portuguese": "pt",
    "brazilian portuguese": "pt-BR",
    "dutch": "nl",
    "polish": "pl",
    "swedish": "sv",
    "danish": "da",
    "norwegian": "no",
    "finnish": "fi",
    "greek": "el",
    "turkish": "tr",
    "russian": "ru",
    "ukrainian": "uk",
    "arabic": "ar",
    "hebrew": "he",
    "hindi": "hi",
    "chinese": "zh",
    "mandarin": "zh",
    "japanese": "ja",
    "korean": "ko",
    "vietnamese": "vi",
    "thai": "th",
    "indonesian": "id",
    "czech": "cs",
    "romanian": "ro",
    "hungarian": "hu",
    "catalan": "ca",
}
"""Language names a user may say, and their ISO 639-1 codes (BCP 47 tags)."""
_NAMES: Final = "|".join(sorted(LANGUAGES, key=len, reverse=True))
_TAG: Final = re.compile(r"^[A-Za-z]{2,3}(?:-[A-Za-z0-9]{1,8}){0,2}$")
_LANGUAGE_SAID: Final = re.compile(
    rf"\b(?:(?:in|speak(?:ing)?|use|using)\s+(?P<name>{_NAMES})\b"
    rf"|language\s*(?:is|:|=|should\s+be|to)?\s*(?P<any>{_NAMES}|[A-Za-z]{{2,3}}(?:-[A-Za-z0-9]{{1,8}})?"
    rf"|\S+))",
    _FLAGS,
)
_TIMEZONE_SAID: Final = re.compile(
    r"\b(?:their\s+|the\s+callee'?s\s+)?(?:time\s*zone|tz)\s*(?:is|:|=)?\s*(?P<zone>[\w/+-]+)",
    _FLAGS,
)


def language_code(said: str) -> str | None:
    """The language tag for a name ("French") or a tag ("fr", "pt-BR"), else ``None``."""
    text = " ".join(said.split()).strip(" .,!")
    if text.lower() in LANGUAGES:
        return LANGUAGES[text.lower()]
    if _TAG.match(text):
        main, *rest = text.split("-")
        return "-".join([main.lower(), *(p.upper() if len(p) == 2 else p for p in rest)])
    return None


def take_language(text: str) -> tuple[str, str | None, str | None]:
    """(text without the phrase, the language tag, an error)."""
    match = _LANGUAGE_SAID.search(text)
    if match is None:
        return text, None, None
    said = match.group("name") or match.group("any")
    code = language_code(said)
    rest = blank(text, *match.span())
    if code is None:
        return rest, None, f"I don't know the language “{said[:40]}” (say e.g. French or fr)."
    return rest, code, None


def take_timezone(text: str) -> tuple[str, str | None, str | None]:
    """(text without the phrase, an IANA zone, an error)."""
    match = _TIMEZONE_SAID.search(text)
    if match is None:
        return text, None, None
    said = match.group("zone").strip(".,")
    rest = blank(text, *match.span())
    try:
        return rest, ZoneInfo(said).key, None
    except (ZoneInfoNotFoundError, ValueError):
        error = (
            f"“{said[:40]}” is not a time zone I know (use e.g. Europe/Paris or America/New_York)."
        )
        return rest, None, error
