"""What one chat message says about a new call task, read by rules (no model).

:func:`read_message` finds, in any order and in free text: phone numbers (``phonenumbers``,
validated by :mod:`db.phone` so refused numbers are explained at once), when to call
(:mod:`ai.intake_time`), the callee's name ("call Bright Smile Dental at …"), the objective
("… to move my appointment to next week"), facts for the AI ("my name is Ana Lopez"), the
language ("in French") and the callee's time zone, plus yes / no / start-over answers.
Time phrases inside the objective ("to next week") stay in the objective. Pure functions:
the rules intake (:mod:`gradio_ui.intake`) and the Gemini stand-in (:mod:`ai.gemini_sim`)
both use them; the dialogue state lives with the caller.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from typing import Final, Literal

from ai.intake_fields import (
    LANGUAGES,
    Intent,
    PhoneFound,
    blank,
    check_phone,
    find_phones,
    language_code,
    read_intent,
    take_language,
    take_timezone,
)
from ai.intake_time import TimeSpan, WhenReading, find_time_spans, read_when

__all__ = [
    "CONFIRM_QUESTION",
    "CONFIRM_TASK",
    "DRAFT_MARKER",
    "LANGUAGES",
    "MAX_MESSAGE_CHARS",
    "QUESTIONS",
    "UPDATE_TASK_DRAFT",
    "Awaiting",
    "Intent",
    "PhoneFound",
    "Reading",
    "capitalised",
    "check_phone",
    "language_code",
    "place_free_text",
    "read_intent",
    "read_message",
    "with_free_text_placed",
]

MAX_MESSAGE_CHARS: Final = 4_000
"""Longest chat message read (the repository caps an objective at 4,000 characters)."""
UPDATE_TASK_DRAFT: Final = "update_task_draft"
CONFIRM_TASK: Final = "confirm_task"
DRAFT_MARKER: Final = "Task draft so far (JSON):"
"""The line after which the Gemini intake's system instruction carries the draft."""
QUESTIONS: Final[dict[str, str]] = {
    "phone": "What number should I call? (e.g. +1 415 555 0100)",
    "objective": "What should I get done on this call?",
    "timing": "When should I call? (e.g. now, in 10 minutes, tomorrow at 3pm)",
}
"""The question for each missing field."""
CONFIRM_QUESTION: Final = "Shall I create this task? (yes / no or tell me what to change)"

Awaiting = Literal["phone", "objective", "timing", "confirm"]
"""What the assistant asked for last, so the next message can be read as its answer."""

_FLAGS: Final = re.IGNORECASE
_FOREIGN_WHEN_LANGUAGES: Final = ("en", "fr", "es", "de", "it", "pt", "nl")
_MAX_FOREIGN_WHEN_WORDS: Final = 8
_MAX_NAME_WORDS: Final = 8
_MAX_NAME_CHARS: Final = 200
_MIN_CONTEXT_WORDS: Final = 6
"""A non-answer to a pending question shorter than this is not kept as context."""


# -- sentences: who to call, the objective, the call time --------------------------------------

_LEAD: Final = (
    r"(?:(?:hi|hello|hey|ok(?:ay)?|so|please|pls|can\s+you|could\s+you|would\s+you|will\s+you"
    r"|i\s+(?:need|want|would\s+like|'d\s+like)\s+(?:you\s+)?to|help\s+me(?:\s+to)?|actually"
    r"|also|and|oh|then|now)[\s,]+)*"
)
_CALL: Final = re.compile(rf"^[\W_]*{_LEAD}(?:call|phone|ring|dial|contact)\b", _FLAGS)
_GOAL_VERBS: Final = (
    r"ask|tell|see|check|find|book|cancel|request|confirm|get|make|let|say|inform|schedule"
    r"|reschedule|order|move|change|arrange|sort|complain|explain|pay|leave|remind|thank"
)
_GOAL: Final = re.compile(
    r"[\s,]+(?:to|so\s+that|in\s+order\s+to)\s+(?=\S)"
    rf"|[\s,]+and\s+(?=(?:{_GOAL_VERBS})\b)"
    r"|[\s,]+(?=(?:about|regarding|concerning|because|asking)\s)"
    r"|\s*:\s+(?=\S)",
    _FLAGS,
)
"""Where the objective starts after "call X": "to …", "and ask …", "about …", ": …"."""
_BEFORE_NUMBER: Final = re.compile(r"\b(?:at|on|via)\s+$", _FLAGS)
_CALL_BEFORE: Final = re.compile(
    r"\b(?:call|ring|phone|dial)(?:\s+(?:them|him|her|it|me|back|again))*[\s,]*$", _FLAGS
)
_BREAK: Final = re.compile(r"[.!?;]+(?=\s)|\n")
_ABBREVIATIONS: Final = frozenset(
    {
        "dr",
        "mr",
        "mrs",
        "ms",
        "st",
        "prof",
        "jr",
        "sr",
        "no",
        "vs",
        "etc",
        "e.g",
        "i.e",
        "a.m",
        "p.m",
        "a.s.a.p",
        "approx",
        "ref",
        "tel",
        "inc",
        "ltd",
        "co",
    }
)
_NOT_A_NAME: Final = frozenset(
    {
        "",
        "them",
        "him",
        "her",
        "it",
        "me",
        "us",
        "back",
        "again",
        "this",
        "that",
        "now",
        "the number",
        "this number",
        "that number",
        "a number",
        "the place",
        "someone",
        "somebody",
    }
)
_NAME_EDGES: Final = re.compile(
    r"^(?:(?:at|on|via|back|please|now|up)\b[\s,]*)+"
    r"|[\s,]*(?:\b(?:at|on|via|back|please|number|'s)\b[\s,]*)+$",
    _FLAGS,
)
_POSSESSIVE: Final = re.compile(r"^(?:my|our|your)\s+", _FLAGS)
_POLITE: Final = re.compile(rf"^{_LEAD}|[\s,]+please[.!]*$", _FLAGS)
_FILLER_WORDS: Final = """
    a actually also and at be call change changed correct correction do hey hi hello in instead
    is it it's its let's lets make new no now number oh ok okay on phone please rather ring
    should so sorry than thank thanks that that's the them then this time to use wait yes him
    her update updated hmm hm um umm uh er erm well right alright fine good great cool"""
_FILLER: Final = frozenset(_FILLER_WORDS.split())
"""Words that carry nothing once numbers and times are taken out ("make it 4pm instead")."""
_FACT: Final = re.compile(
    r"^(?:(?:my|our)\s+(?:\w+\s+){0,2}(?:is|are|was)\b|i(?:'m|\s+am)\s+(?:a|an|the)\b"
    r"|(?:the\s+)?(?:booking|reference|ref|order|account|appointment|reservation)\b"
    r"|(?:fyi|note|btw|by\s+the\s+way)\b|(?:they|he|she)\s+(?:know|knows|already)\b)",
    _FLAGS,
)
_LABEL: Final = re.compile(
    r"^\s*(?P<label>context|notes?|info|details|facts|objective|goal|task|purpose|callee"
    r"|who|when|time|number|phone|language|lang)\s*[:=]\s*(?P<value>.*)$",
    _FLAGS | re.DOTALL,
)
_SET_OBJECTIVE: Final = re.compile(
    r"^(?:(?:please\s+)?(?:change|set|make)\s+the\s+(?:objective|goal|task)\s+(?:to|:)"
    r"|(?:the\s+)?(?:new\s+)?(?:objective|goal)\s+is)\s+(?P<value>.+)$",
    _FLAGS | re.DOTALL,
)
_SET_NAME: Final = re.compile(
    r"^(?:their|his|her|the\s+callee'?s?|the\s+person'?s?|the\s+business'?s?)\s+name\s+is\s+"
    r"(?P<value>.+)$",
    _FLAGS,
)


def _is_filler(text: str) -> bool:
    words = re.findall(r"[\w']+", text.lower())
    return all(w in _FILLER for w in words)


_DANGLING: Final = re.compile(
    r"(?:[\s,;:–—-]*,\s*(?:please|call|ring|phone)(?:\s+(?:them|him|her|back|please|now))*)?"
    r"[\s,;:–—-]*$",
    _FLAGS,
)
"""What is left at a clause's end once its number and time are out (", call")."""


def _clean(text: str) -> str:
    """Whitespace collapsed, empty commas and a dangling ", call" gone."""
    text = re.sub(r"\(\s*\)|\[\s*\]", " ", " ".join(text.split()))
    text = re.sub(r"\s*,(?:\s*,)+", ",", " ".join(text.split()))
    return _DANGLING.sub("", text).strip(" ,;:-")


def _sentence_bounds(text: str) -> list[tuple[int, int]]:
    """Sentences and lines of ``text`` as (start, end), not split after "Dr." or "p.m."."""
    bounds, start = [], 0
    for match in _BREAK.finditer(text):
        if match.group(0) == ".":
            word = re.search(r"[\w.]+$", text[start : match.start()])
            if word and (word.group(0).lower() in _ABBREVIATIONS or len(word.group(0)) == 1):
                continue
        bounds.append((start, match.start()))
        start = match.end()
    bounds.append((start, len(text)))
    return [(s, e) for s, e in bounds if text[s:e].strip()]


_COURTESY: Final = re.compile(
    r"[\s,]*\b(?:please|pls|thanks|thank\s+you)\b[\s.!]*$", re.IGNORECASE
)  # a courtesy that closes the clause


def _at_edge(text: str, span: TimeSpan, start: int, end: int) -> bool:
    """A time phrase set off at the start or end of a clause ("…, tomorrow at 10")."""
    before, after = text[start : span.start], text[span.end : end]
    after = _COURTESY.sub("", after)  # "…, now please" ends the clause like "…, now"
    if not before.strip(" ,") and after.lstrip().startswith(","):
        return True
    tail = not after.strip(" .!?,")
    return tail and (before.rstrip().endswith((",", "-", "–", "—")) or not before.strip(" ,"))


def _is_call_time(text: str, span: TimeSpan, clause: tuple[int, int], whole: bool) -> bool:
    start, end = clause
    return (
        whole
        or _at_edge(text, span, start, end)
        or bool(_CALL_BEFORE.search(text[start : span.start]))
    )


@dataclass(slots=True)
class _Parts:
    """What the sentences of one message gave, gathered while reading them."""

    times: list[TimeSpan] = field(default_factory=list)
    names: list[str] = field(default_factory=list)
    objectives: list[str] = field(default_factory=list)
    free: list[str] = field(default_factory=list)


def _name_from(preamble: str) -> str | None:
    name = _NAME_EDGES.sub("", _clean(preamble)).strip(" ,.()[]")
    name = _POSSESSIVE.sub("", name)
    first = name.split(" ", 1)[0].lower()
    if (
        first in _NOT_A_NAME
        or name.lower() in _NOT_A_NAME
        or len(name.split()) > _MAX_NAME_WORDS
        or _is_filler(name)
    ):
        return None
    return name[:_MAX_NAME_CHARS]


def _read_sentence(
    text: str, bounds: tuple[int, int], spans: list[TimeSpan], parts: _Parts
) -> None:
    start, end = bounds
    inside = [s for s in spans if start <= s.start and s.end <= end]
    call = _CALL.match(text[start:end])
    if call is None:
        rest = text[start:end]
        for span in inside:
            rest = blank(rest, span.start - start, span.end - start)
        whole = _is_filler(rest)
        timed = [s for s in inside if _is_call_time(text, s, bounds, whole)]
        _gather(text, bounds, timed, parts, goal=None, called=False)
        return
    verb_end = start + call.end()
    goal = _GOAL.search(text, verb_end, end)
    goal_at = goal.end() if goal else end
    timed = [s for s in inside if s.end <= goal_at] + [
        s for s in inside if s.start >= goal_at and _is_call_time(text, s, (goal_at, end), False)
    ]
    _gather(text, (verb_end, end), timed, parts, goal=(goal.start(), goal_at) if goal else None)


def _gather(
    text: str,
    bounds: tuple[int, int],
    timed: list[TimeSpan],
    parts: _Parts,
    *,
    goal: tuple[int, int] | None,
    called: bool = True,
) -> None:
    """Add one sentence's parts; ``goal`` is where its objective marker starts and ends."""
    start, end = bounds
    for span in timed:
        text = blank(text, span.start, span.end)
    parts.times.extend(timed)
    if not called:
        sentence = _POLITE.sub("", _clean(text[start:end]))
        if sentence and not _is_filler(sentence):
            parts.free.append(sentence)
        return
    marker, goal_at = goal if goal else (end, end)
    name = _name_from(text[start:marker])
    if name:
        parts.names.append(name)
    objective = _clean(text[goal_at:end]).strip(" .")
    if objective and not _is_filler(objective):
        parts.objectives.append(objective)


# -- the reading --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Reading:
    """What one message says; empty fields mean "not said"."""

    intent: Intent | None = None
    phones: tuple[PhoneFound, ...] = ()
    when: WhenReading | None = None
    callee_name: str | None = None
    objective: str | None = None
    """An objective said as one ("call X to …", "goal: …")."""
    context: str | None = None
    """Facts said as facts ("my name is …", "context: …")."""
    free_text: str = ""
    """The rest: the objective or context, as the dialogue decides (:func:`place_free_text`)."""
    language: str | None = None
    timezone: str | None = None
    errors: tuple[str, ...] = ()
    """Problems with a language or time zone the user gave."""

    @property
    def phone(self) -> PhoneFound | None:
        """The number to call: the first valid one, else the first refused one."""
        return next((p for p in self.phones if p.e164), self.phones[0] if self.phones else None)

    @property
    def says_anything(self) -> bool:
        """Whether the message gave any field at all."""
        return any(
            (
                self.phones,
                self.when,
                self.callee_name,
                self.objective,
                self.context,
                self.free_text,
                self.language,
                self.timezone,
                self.errors,
            )
        )


def capitalised(text: str) -> str:
    """``text`` with its first letter upper-case (an objective reads as an instruction)."""
    return text[:1].upper() + text[1:]


def _labelled(label: str, value: str, region: str, when: WhenReading | None) -> Reading:
    """A ``label: value`` line: the value is that field, whole."""
    value = _clean(value)
    kind = label.lower()
    if kind in {"objective", "goal", "task", "purpose"}:
        return Reading(objective=capitalised(value) if value else None)
    if kind in {"callee", "who"}:
        return Reading(callee_name=value[:_MAX_NAME_CHARS] or None)
    if kind in {"when", "time"}:
        return Reading(when=when)
    if kind in {"number", "phone"}:
        return Reading(phones=(check_phone(value, region=region),) if value else ())
    if kind in {"language", "lang"}:
        code = language_code(value)
        error = () if code else (f"I don't know the language “{value[:40]}” (say e.g. fr).",)
        return Reading(language=code, errors=error)
    return Reading(context=value or None)


def _merge(readings: Iterable[Reading]) -> Reading:
    """Several lines' readings as one: later values win, lists and texts add up."""
    out = Reading()
    for r in readings:
        out = Reading(
            intent=r.intent or out.intent,
            phones=out.phones + r.phones,
            when=r.when or out.when,
            callee_name=r.callee_name or out.callee_name,
            objective=r.objective or out.objective,
            context=" ".join(c for c in (out.context, r.context) if c) or None,
            free_text=" ".join(t for t in (out.free_text, r.free_text) if t),
            language=r.language or out.language,
            timezone=r.timezone or out.timezone,
            errors=out.errors + r.errors,
        )
    return out


def _read_free(
    text: str, *, now: dt.datetime, zone: str, region: str, awaiting: Awaiting | None
) -> Reading:
    """Unlabelled text: numbers, language, zone, then sentence by sentence."""
    if (m := _SET_OBJECTIVE.match(text.strip())) is not None:
        return Reading(objective=capitalised(_clean(m.group("value")).strip(" .")))
    if (m := _SET_NAME.match(text.strip())) is not None:
        return Reading(callee_name=_clean(m.group("value")).strip(" .")[:_MAX_NAME_CHARS])
    text, language, language_error = take_language(text)
    text, zone_said, zone_error = take_timezone(text)
    spans = find_time_spans(text)
    found = find_phones(text, region, spans)
    for start, end, _ in found:
        # "at +1 415…" and "(+1 415…)" leave no stray "at" or brackets in the objective.
        lead = _BEFORE_NUMBER.search(text, 0, start)
        text = blank(text, lead.start() if lead else start, end)
    spans = find_time_spans(text)
    parts = _Parts()
    for bounds in _sentence_bounds(text):
        _read_sentence(text, bounds, spans, parts)
    when = None
    if parts.times:
        when = read_when(parts.times[-1].text, zone=zone, now=now)
    free = " ".join(parts.free)
    if (
        when is None
        and awaiting == "timing"
        and free
        and len(free.split()) <= _MAX_FOREIGN_WHEN_WORDS
    ):
        # An answer to "when?" in words the English patterns missed ("demain à 15h").
        when = read_when(free, zone=zone, now=now, languages=_FOREIGN_WHEN_LANGUAGES)
        free = ""
    context = free if free and _FACT.match(free) else None
    return Reading(
        phones=tuple(check_phone(raw, region=region) for _, _, raw in found),
        when=when,
        callee_name=parts.names[0] if parts.names else None,
        objective=capitalised(parts.objectives[0]) if parts.objectives else None,
        context=context,
        free_text="" if context else free,
        language=language,
        timezone=zone_said,
        errors=tuple(e for e in (language_error, zone_error) if e),
    )


def read_message(
    text: str,
    *,
    now: dt.datetime,
    zone: str,
    region: str = "US",
    awaiting: Awaiting | None = None,
) -> Reading:
    """Everything ``text`` says about the task; the caller checks its length first."""
    said = text.replace("’", "'").replace("\r\n", "\n").strip()
    intent = read_intent(said)
    if intent is not None:
        return Reading(intent=intent)
    readings: list[Reading] = []
    loose: list[str] = []
    for line in said.split("\n"):
        label = _LABEL.match(line)
        if label is None:
            loose.append(line)
            continue
        value = label.group("value")
        when = (
            read_when(value, zone=zone, now=now)
            if label.group("label").lower() in {"when", "time"}
            else None
        )
        readings.append(_labelled(label.group("label"), value, region, when))
    if any(line.strip() for line in loose):
        readings.insert(
            0, _read_free("\n".join(loose), now=now, zone=zone, region=region, awaiting=awaiting)
        )
    return _merge(readings)


Place = Literal["objective", "context", "drop"]


def place_free_text(reading: Reading, *, has_objective: bool, awaiting: Awaiting | None) -> Place:
    """Where a message's free text goes: the objective, the context, or nowhere.

    Before there is an objective (or when it was just asked for) it is the objective; after,
    it is context — except a short non-answer to a pending question (phone, time), which is
    dropped so "I don't know" does not become a fact for the AI.
    """
    if not reading.free_text:
        return "drop"
    asked = awaiting == "objective"
    # A lone word is an objective only when one was asked for ("Reschedule"), not in passing.
    if reading.objective is None and (
        asked or (not has_objective and len(reading.free_text.split()) > 1)
    ):
        return "objective"
    pending = awaiting in {"phone", "timing"} or not has_objective
    answered = reading.phone is not None if awaiting == "phone" else reading.when is not None
    if pending and not answered and len(reading.free_text.split()) < _MIN_CONTEXT_WORDS:
        return "drop"
    return "context"


def with_free_text_placed(
    reading: Reading, *, has_objective: bool, awaiting: Awaiting | None
) -> Reading:
    """``reading`` with its free text moved to the objective or context (or dropped)."""
    place = place_free_text(reading, has_objective=has_objective, awaiting=awaiting)
    if place == "objective":
        objective = capitalised(reading.free_text.rstrip(" ."))
        return replace(reading, objective=objective, free_text="")
    if place == "context":
        context = " ".join(c for c in (reading.context, reading.free_text) if c)
        return replace(reading, context=context, free_text="")
    return reading
