"""What the post-call analysers read and return, and the deterministic rules analyser.

The rules analyser (DESIGN.md §4 "Analysis") derives a call's outcome from the telephony
result, the end reason, the AMD verdict, the tools the model used, the HITL questions and a
few phrases of the callee ("don't call me again", "wrong number", "call me back Thursday after
3"). It runs when Gemini is not configured or fails, and it is the reference the Gemini path
is checked against. Pure: no clock, no I/O; ``CallFacts.ended_at`` is "now". Import the public
names from :mod:`ai.analysis`.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import uuid
from dataclasses import dataclass
from typing import Final, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, field_validator, model_validator

from ai.tools import ToolArgumentError, parse_when
from db.shapes import Speaker, ToolCallRecord, TranscriptTurn, require_aware
from db.states import AmdVerdict, CallOutcome, EndReason, HitlStatus, TelephonyResult

__all__ = ["AnalysisResult", "CallFacts", "HitlSummary", "analyse_by_rules", "was_answered"]

_O = CallOutcome
_R = EndReason


class HitlSummary(BaseModel):
    """One question the agent asked the task's creator during the call, and what became of it."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    question: str
    status: HitlStatus
    answer: str | None = None


class CallFacts(BaseModel):
    """Everything the analysers read about one call (built by the TaskActor from its rows)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    call_id: uuid.UUID | None = None
    """Only to label log lines."""
    objective: str = Field(min_length=1)
    context: str = ""
    callee_name: str | None = None
    timezone: str = "UTC"
    """The callee's IANA time zone: callback phrases are read in it."""
    language: str = Field(default="en", min_length=2, max_length=35)
    telephony_result: TelephonyResult | None = None
    end_reason: EndReason | None = None
    originate_reason: int | None = None
    hangup_cause: int | None = None
    amd_verdict: AmdVerdict | None = None
    transcript: list[TranscriptTurn] = []
    tool_calls: list[ToolCallRecord] = []
    hitl: list[HitlSummary] = []
    ended_at: AwareDatetime
    """When the call ended: the "now" that relative phrases ("tomorrow") are read against."""

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown IANA time zone {value!r}") from exc
        return value

    @field_validator("ended_at")
    @classmethod
    def _utc(cls, value: dt.datetime) -> dt.datetime:
        return require_aware(value, "ended_at")

    @property
    def zone(self) -> ZoneInfo:
        """The callee's time zone."""
        return ZoneInfo(self.timezone)


class AnalysisResult(BaseModel):
    """What the analysis decided about one call; stored as the call's ``analysis`` JSON."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    outcome: CallOutcome
    summary: str = Field(min_length=1)
    """One or two sentences a person understands."""
    facts: dict[str, str] = {}
    """What the call established, extracted against the objective."""
    objective_met: bool
    callback_time: AwareDatetime | None = None
    """When the callee asked to be called back (UTC)."""
    do_not_call: bool
    source: Literal["gemini", "rules"]
    fallback_reason: str | None = None
    """Why Gemini was configured but the rules decided (the TaskActor logs it as an event)."""
    corrections: list[str] = []
    """Where the sanity rules overrode Gemini, one line each."""
    tokens: int | None = None
    """Tokens Gemini counted for this analysis (prompt + answer); ``None`` for the rules."""

    @field_validator("callback_time")
    @classmethod
    def _utc(cls, value: dt.datetime | None) -> dt.datetime | None:
        return None if value is None else require_aware(value, "callback_time")

    @model_validator(mode="after")
    def _dnc_is_consistent(self) -> AnalysisResult:
        if self.do_not_call != (self.outcome is _O.DO_NOT_CALL):
            raise ValueError("do_not_call must be true exactly when the outcome is DO_NOT_CALL")
        return self


# -- phrases ----------------------------------------------------------------------------------

_FLAGS: Final = re.IGNORECASE
_WHEN: Final = r"(?P<when>[^.!?;]*)"
_WHEN_LAZY: Final = r"(?P<when>[^.!?;]*?)"  # German puts the time before the verb's particle


def _rx(*patterns: str) -> tuple[re.Pattern[str], ...]:
    return tuple(re.compile(p, _FLAGS) for p in patterns)


@dataclass(frozen=True, slots=True)
class _Phrases:
    """One language's phrases; callback patterns carry a ``when`` group."""

    dnc: tuple[re.Pattern[str], ...]
    wrong_number: tuple[re.Pattern[str], ...]
    callback: tuple[re.Pattern[str], ...]
    """A request to be called again: counts even when no time is understood."""
    call_at: tuple[re.Pattern[str], ...]
    """"call me <time>": counts only when the time is understood."""
    negation: re.Pattern[str]
    """Words just before a callback trigger that cancel it ("don't call me back")."""
    negation_inside: re.Pattern[str] | None = None
    """Words inside the time that cancel it (German: "rufen Sie mich nicht zurück")."""


_PHRASES: Final[dict[str, _Phrases]] = {
    "en": _Phrases(
        dnc=_rx(
            r"\b(?:do\s+not|don'?t|never)\s+(?:ever\s+)?(?:call|ring|phone|contact)\s+"
            r"(?:me|us|here|this\s+number)\s+(?:again|any\s*more|ever)\b",
            r"\b(?:do\s+not|don'?t)\s+(?:ever\s+)?call\s+(?:again|any\s*more)\b",
            r"\bnever\s+(?:call|ring|phone)\s+(?:me|us|here|this\s+number)\b",
            r"\b(?:do\s+not|don'?t)\s+call\s+(?:me|us)\s*(?:[.!]|$)",
            r"\bstop\s+(?:calling|ringing|phoning|contacting)\b",
            r"\b(?:take|remove|delete|strike|drop)\s+(?:me|us|my\s+(?:phone\s+)?(?:number|name)|"
            r"this\s+number)\s+(?:off|from)\b",
            r"\bremove\s+my\s+(?:phone\s+)?number\b",
            r"\bdo[\s-]+not[\s-]+call\s+(?:list|register|registry)\b",
            r"\b(?:no|don'?t\s+want\s+(?:any)?)\s*more\s+(?:of\s+(?:these|your)\s+)?calls\b"
            r"(?!\s+(?:today|tonight|now|this\s+week))",
        ),
        wrong_number=(
            *_rx(
                r"\bwrong\s+number\b",
                r"\b(?:no\s*one|nobody)\s+(?:here\s+|lives\s+here\s+)?(?:by|with|of|called)\s+"
                r"that\s+name\b",
                r"\b(?:doesn'?t|does\s+not)\s+live\s+here\b",
                r"\byou(?:'ve|\s+have)\s+(?:got\s+)?the\s+wrong\s+(?:number|person)\b",
            ),
            # "There's no Dana here": a capitalised name, so "there's no problem here" is not one.
            re.compile(r"\b[Tt]here(?:'s| is) no (?:[A-Z][\w-]+ ){1,2}(?:here|at this number)\b"),
        ),
        callback=_rx(
            r"\b(?:call|ring|phone)\s+(?:me|us)\s+(?:back|again|later)\b" + _WHEN,
            r"\b(?:call|ring|phone)\s+(?:back|again)\b" + _WHEN,
            r"\btry\s+(?:me\s+|us\s+)?(?:again|back|later)\b" + _WHEN,
            r"\bgive\s+(?:me|us)\s+a\s+(?:call|ring)\s+(?:back|later)\b" + _WHEN,
        ),
        call_at=_rx(
            r"\b(?:call|ring|phone|try)\s+(?:me|us)\b" + _WHEN,
            r"\bgive\s+(?:me|us)\s+a\s+(?:call|ring)\b" + _WHEN,
        ),
        negation=re.compile(r"\b(?:don'?t|do\s+not|never|no\s+need\s+to|not)\s*$", _FLAGS),
    ),
    "fr": _Phrases(
        dnc=_rx(
            r"\bne\s+(?:m'\s*|me\s+|nous\s+)?r?appel\w*\s+(?:plus|jamais)\b",
            r"\bne\s+plus\s+(?:m'\s*|me\s+|nous\s+)?r?appeler\b",
            r"\barr[êe]tez\s+de\s+(?:m'\s*|me\s+|nous\s+)?r?appeler\b",
            r"\b(?:retirez|supprimez|enlevez|effacez)\s+(?:mon\s+num[ée]ro|moi)\b",
        ),
        wrong_number=_rx(
            r"\b(?:faux|mauvais)\s+num[ée]ro\b",
            r"\berreur\s+de\s+num[ée]ro\b",
            r"\bpersonne\s+(?:ici\s+)?(?:de|à)\s+ce\s+nom\b",
        ),
        callback=_rx(
            r"\brappelez\b(?:[\s-]+(?:moi|nous)\b)?" + _WHEN,
            r"\brappelle[\s-]+(?:moi|nous)\b" + _WHEN,
            r"\b(?:me|nous)\s+rappeler\b" + _WHEN,
            r"\br[ée]essayez\b" + _WHEN,
        ),
        call_at=_rx(r"\bappel(?:ez|le)[\s-]+(?:moi|nous)\b" + _WHEN),
        negation=re.compile(r"\b(?:ne|n'|pas|jamais)\s*(?:me\s+|m'|nous\s+)?$", _FLAGS),
    ),
    "de": _Phrases(
        dnc=_rx(
            r"\bnicht\s+mehr\s+an(?:rufen|zurufen)\b",
            r"\bruf(?:en)?\s+(?:sie\s+)?(?:mich|uns)\s+(?:bitte\s+)?(?:nie\s+wieder|nicht\s+mehr)"
            r"\s+an\b",
            r"\bh[öo]ren?\s+(?:sie\s+)?auf,?\s+(?:mich|uns)\s+anzurufen\b",
            r"\bl[öo]schen\s+sie\s+(?:meine|unsere)\s+nummer\b",
            r"\bkeine\s+anrufe\s+mehr\b",
        ),
        wrong_number=_rx(
            r"\bfalsch\s+verbunden\b",
            r"\bfalsche\s+nummer\b",
            r"\b(?:niemand|keiner)\s+(?:hier\s+)?(?:mit\s+diesem|dieses)\s+namens?\b",
        ),
        callback=_rx(
            r"\bruf(?:en)?\s+(?:sie\s+)?(?:mich|uns)\s+"
            + _WHEN_LAZY
            + r"\s*(?:zur[üu]ck|wieder\s+an|nochmal\s+an|noch\s+einmal\s+an)\b",
            r"\bversuchen\s+sie\s+es\s+"
            + _WHEN_LAZY
            + r"\s*(?:noch\s*(?:ein)?mal|wieder|sp[äa]ter)\b",
        ),
        call_at=_rx(r"\bruf(?:en)?\s+(?:sie\s+)?(?:mich|uns)\s+" + _WHEN_LAZY + r"\s*an\b"),
        negation=re.compile(r"\b(?:nicht|nie)\s*$", _FLAGS),
        negation_inside=re.compile(r"\b(?:nicht|nie|keine?)\b", _FLAGS),
    ),
    "es": _Phrases(
        dnc=_rx(
            r"\bno\s+(?:me|nos)\s+(?:vuelva[ns]?\s+a\s+)?llam(?:e[ns]?|ar|es)\s+(?:m[áa]s|nunca)\b",
            r"\bno\s+(?:me|nos)\s+vuelva[ns]?\s+a\s+llamar\b",
            r"\bdej(?:e|en|a)\s+de\s+llamar(?:me|nos)?\b",
            r"\b(?:borre|quite|elimine)n?\s+mi\s+n[úu]mero\b",
        ),
        wrong_number=_rx(
            r"\bn[úu]mero\s+equivocado\b",
            r"\bse\s+(?:ha\s+)?equivoc(?:ado|[óo])\s+de\s+n[úu]mero\b",
            r"\bnadie\s+(?:aqu[íi]\s+)?con\s+ese\s+nombre\b",
        ),
        callback=_rx(
            r"\bvuelva[ns]?\s+a\s+llamar(?:me|nos)?\b" + _WHEN,
            r"\bint[ée]ntelo\s+(?:de\s+nuevo|otra\s+vez|m[áa]s\s+tarde)\b" + _WHEN,
        ),
        call_at=_rx(r"\bll[áa]m(?:e|a|en)(?:me|nos)\b" + _WHEN),
        negation=re.compile(r"\bno\s*(?:me\s+|nos\s+)?$", _FLAGS),
    ),
}

# Non-English hour phrases, rewritten to a 24-hour clock dateparser reads without leaking the
# current minutes ("um 10 Uhr" would otherwise become 10:30 at 9:30).
_LAST_AFTERNOON_HOUR: Final = 7  # a bare 1–7 on a phone call means the afternoon (as ai.tools)
_CLOCKS: Final[dict[str, tuple[re.Pattern[str], str]]] = {
    "fr": (
        re.compile(r"\b(?:après|apres|vers|à|a|dès|des)\s+(\d{1,2})\s*h(\d{2})?\b", _FLAGS),
        "à",
    ),
    "de": (
        re.compile(r"\b(?:nach|um|ab|gegen)\s+(\d{1,2})(?:[:.](\d{2}))?(?:\s*uhr)?\b", _FLAGS),
        "um",
    ),
    "es": (
        re.compile(
            r"\b(?:después\s+de\s+las|despues\s+de\s+las|a\s+las|sobre\s+las|hacia\s+las)\s+"
            r"(\d{1,2})(?::(\d{2}))?\b",
            _FLAGS,
        ),
        "a las",
    ),
}
_LEADING_FILLER: Final = re.compile(r"^(?:el|le|la|on|maybe|perhaps|say|peut-être|am)\s+", _FLAGS)
"""Words before a time that dateparser stumbles on ("el jueves", German "am Donnerstag")."""
_MAX_WHEN_WORDS: Final = 10


def _clock(language: str, text: str) -> str:
    rule = _CLOCKS.get(language)
    if rule is None:
        return text
    pattern, word = rule

    def fix(match: re.Match[str]) -> str:
        hour, minute = int(match.group(1)), int(match.group(2) or 0)
        if hour > 23 or minute > 59:
            return match.group(0)
        if 1 <= hour <= _LAST_AFTERNOON_HOUR and language != "fr":  # French says 15h, not 3h
            hour += 12
        return f"{word} {hour:02d}:{minute:02d}"

    return pattern.sub(fix, text)


def _callee_lines(facts: CallFacts) -> list[str]:
    """What the callee said, one line per turn, with typographic apostrophes made plain."""
    lines = (t.text.replace("’", "'") for t in facts.transcript if t.speaker is Speaker.CALLEE)
    return [" ".join(line.split()) for line in lines]


def _find(lines: list[str], kind: Literal["dnc", "wrong_number"]) -> str | None:
    """The first callee line that says this, in any known language."""
    for line in lines:
        for phrases in _PHRASES.values():
            if any(p.search(line) for p in getattr(phrases, kind)):
                return line
    return None


# -- callback times ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Callback:
    when: dt.datetime | None
    phrase: str | None
    reason: str | None = None


def _parse_time(text: str, language: str, facts: CallFacts, now: dt.datetime) -> dt.datetime | None:
    languages = ("en",) if language == "en" else (language, "en")
    try:
        return parse_when(_clock(language, text), zone=facts.timezone, now=now, languages=languages)
    except (ToolArgumentError, ValueError):
        return None


def _time_in(words: str, language: str, facts: CallFacts) -> tuple[dt.datetime, str] | None:
    """The longest run of leading words that reads as a future time ("Thursday after 3")."""
    tokens = _LEADING_FILLER.sub("", words.strip(" ,:-")).split()[:_MAX_WHEN_WORDS]
    for end in range(len(tokens), 0, -1):
        phrase = " ".join(tokens[:end]).strip(" ,:-")
        if phrase and (when := _parse_time(phrase, language, facts, facts.ended_at)):
            return when, phrase
    return None


def _callback_in(line: str, language: str, phrases: _Phrases, facts: CallFacts) -> _Callback | None:
    for explicit, patterns in ((True, phrases.callback), (False, phrases.call_at)):
        for pattern in patterns:
            for match in pattern.finditer(line):
                words = match.group("when")
                inside = phrases.negation_inside
                if phrases.negation.search(line[: match.start()]) or (
                    inside is not None and inside.search(words)
                ):
                    continue
                found = _time_in(words, language, facts)
                if found is not None:
                    return _Callback(found[0], found[1])
                if explicit:
                    return _Callback(None, match.group(0).strip())
    return None


def _callback_from_words(facts: CallFacts) -> _Callback | None:
    """The callee's latest request to be called again, with its time when one is understood."""
    primary = facts.language.split("-", 1)[0].lower()
    order = sorted(_PHRASES, key=lambda lang: (lang != primary, lang != "en"))
    for line in reversed(_callee_lines(facts)):
        for language in order:
            found = _callback_in(line, language, _PHRASES[language], facts)
            if found is not None:
                return found
    return None


def _recorded_time(result: str) -> dt.datetime | None:
    """The ``callback_at`` the CallActor recorded as the tool's result, if it is there."""
    try:
        data = json.loads(result)
        when = dt.datetime.fromisoformat(data["callback_at"]) if isinstance(data, dict) else None
    except (ValueError, KeyError, TypeError):
        return None
    if when is None or when.tzinfo is None:
        return None
    return when.astimezone(dt.UTC)


def _callback_from_tools(facts: CallFacts) -> _Callback | None:
    """The last ``reschedule_call`` the agent made successfully, with its parsed time."""
    for record in reversed(facts.tool_calls):
        if record.name != "reschedule_call" or record.result.startswith("error:"):
            continue
        reason = record.arguments.get("reason")
        reason = reason if isinstance(reason, str) else None
        recorded = _recorded_time(record.result)
        if recorded is not None:
            return _Callback(recorded, None, reason)
        text = record.arguments.get("when")  # a record without the parsed time: read the words
        if isinstance(text, str):
            language = facts.language.split("-", 1)[0].lower()
            when_at = _parse_time(text, language, facts, record.at)
            return _Callback(when_at, text, reason)
    return None


# -- summaries --------------------------------------------------------------------------------

_UNANSWERED: Final[dict[TelephonyResult, tuple[CallOutcome, str]]] = {
    TelephonyResult.NO_ANSWER: (_O.FAILED_NO_ANSWER, "No answer"),
    TelephonyResult.BUSY: (_O.FAILED_BUSY, "Busy"),
    TelephonyResult.CONGESTION: (_O.FAILED_CONGESTION, "Network congestion"),
    TelephonyResult.REJECTED: (_O.FAILED_REJECTED, "Call rejected"),
    TelephonyResult.FAILED: (_O.FAILED_TECHNICAL, "The call could not be placed"),
    TelephonyResult.UNKNOWN: (_O.FAILED_TECHNICAL, "The call's fate is unknown (never connected)"),
}
_ENDINGS: Final[dict[EndReason, str]] = {
    _R.COMPLETED: "the agent closed the call",
    _R.CALLEE_DECLINED: "the callee declined",
    _R.IVR_DEAD_END: "an automated menu offered no way forward",
    _R.OTHER: "the agent ended the call",
    _R.CALLEE_HUNG_UP: "the callee hung up",
    _R.MAX_DURATION: "the call reached its maximum duration",
    _R.CANCELLED: "the call was cancelled on request",
}
_QUOTE_CHARS: Final = 90


def _quote(text: str) -> str:
    text = text if len(text) <= _QUOTE_CHARS else text[: _QUOTE_CHARS - 1].rstrip() + "…"
    return f"“{text}”"


def _who(facts: CallFacts) -> str:
    return f"Reached {facts.callee_name}" if facts.callee_name else "The call was answered"


def _ending(facts: CallFacts) -> str:
    reason = facts.end_reason
    return _ENDINGS.get(reason, "the call ended") if reason is not None else "the call ended"


def _local(when: dt.datetime, facts: CallFacts) -> str:
    local = when.astimezone(facts.zone)
    return f"{local:%A} {local.day} {local:%B at %H:%M} ({facts.timezone})"


def _details(facts: CallFacts, *, with_reason: bool) -> str:
    parts = []
    if with_reason and facts.originate_reason is not None:
        parts.append(f"originate reason {facts.originate_reason}")
    if facts.hangup_cause:
        parts.append(f"cause {facts.hangup_cause}")
    return f" ({', '.join(parts)})" if parts else ""


# -- the analyser -----------------------------------------------------------------------------


def _result(
    outcome: CallOutcome,
    summary: str,
    *,
    facts: dict[str, str] | None = None,
    callback_time: dt.datetime | None = None,
) -> AnalysisResult:
    return AnalysisResult(
        outcome=outcome,
        summary=summary,
        facts=facts or {},
        objective_met=outcome is _O.SUCCESS,
        callback_time=callback_time,
        do_not_call=outcome is _O.DO_NOT_CALL,
        source="rules",
    )


def was_answered(facts: CallFacts) -> bool:
    """Whether a person or machine picked up (the telephony facts, not the conversation)."""
    if facts.telephony_result is not None:
        return facts.telephony_result is TelephonyResult.ANSWERED
    return facts.end_reason is not _R.NOT_ANSWERED


def _unanswered(facts: CallFacts) -> AnalysisResult:
    result = facts.telephony_result
    if result is None or result is TelephonyResult.ANSWERED:  # end reason not_answered
        return _result(_O.FAILED_NO_ANSWER, f"No answer{_details(facts, with_reason=False)}.")
    outcome, label = _UNANSWERED[result]
    with_reason = outcome is _O.FAILED_TECHNICAL
    return _result(outcome, f"{label}{_details(facts, with_reason=with_reason)}.")


def _technical(facts: CallFacts) -> AnalysisResult:
    if facts.end_reason is _R.NOT_CONNECTED:
        text = "The call was answered but the audio connection never came up"
    else:
        text = "The call failed with a technical error"
    return _result(_O.FAILED_TECHNICAL, f"{text}{_details(facts, with_reason=False)}.")


def _voicemail(facts: CallFacts) -> AnalysisResult:
    how = (
        "answering-machine detection said MACHINE"
        if facts.amd_verdict is AmdVerdict.MACHINE
        else "the agent heard a voicemail greeting"
    )
    return _result(_O.FAILED_VOICEMAIL, f"Reached voicemail: {how}.")


def _do_not_call(facts: CallFacts, line: str | None) -> AnalysisResult:
    said = f" ({_quote(line)})" if line else ""
    return _result(
        _O.DO_NOT_CALL,
        f"{_who(facts)}; the callee asked not to be called again{said}.",
        facts={"do_not_call_phrase": line} if line else None,
    )


def _wrong_number(facts: CallFacts, line: str | None) -> AnalysisResult:
    said = f" ({_quote(line)})" if line else ""
    return _result(
        _O.WRONG_NUMBER,
        f"The call was answered, but it was the wrong number{said}.",
        facts={"wrong_number_phrase": line} if line else None,
    )


def _reschedule(facts: CallFacts, callback: _Callback | None) -> AnalysisResult:
    extracted: dict[str, str] = {}
    when = callback.when if callback else None
    if callback and callback.phrase:
        extracted["callback_phrase"] = callback.phrase
    if callback and callback.reason:
        extracted["callback_reason"] = callback.reason
    at = f"on {_local(when, facts)}" if when else "later (no time understood)"
    return _result(
        _O.RESCHEDULE_REQUESTED,
        f"{_who(facts)}; the callee asked to be called back {at}.",
        facts=extracted,
        callback_time=when,
    )


_H = HitlStatus
_ASKED_IN_VAIN: Final = frozenset({_H.TIMED_OUT, _H.ANSWERED_LATE, _H.EXPIRED})
"""Questions the call could not wait for (a late answer still means this call lacked it)."""


def _needs_user_info(facts: CallFacts, callback: _Callback | None) -> AnalysisResult:
    missed = [h for h in facts.hitl if h.status in _ASKED_IN_VAIN]
    asked = f"asked you {_quote(missed[-1].question)}" if missed else "needed information from you"
    if missed and missed[-1].status is HitlStatus.ANSWERED_LATE:
        then = "your answer came after the call, so it will call back with it"
    else:
        then = "it will call back once you reply"
    return _result(
        _O.NEEDS_USER_INFO,
        f"{_who(facts)}; the agent {asked} and got no answer in time; {then}.",
        callback_time=callback.when if callback else None,
    )


def _refusal(facts: CallFacts) -> AnalysisResult | None:
    """Why this call cannot go on: do-not-call, voicemail, a technical failure, a wrong number."""
    lines = _callee_lines(facts)
    dnc_line = _find(lines, "dnc")
    if facts.end_reason is _R.DO_NOT_CALL:
        return _do_not_call(facts, dnc_line)
    if facts.amd_verdict is AmdVerdict.MACHINE or facts.end_reason is _R.VOICEMAIL:
        return _voicemail(facts)
    if dnc_line is not None:  # a callee's request not to be called wins over everything said
        return _do_not_call(facts, dnc_line)
    if facts.end_reason in (_R.NOT_CONNECTED, _R.TECHNICAL_ERROR):
        return _technical(facts)
    wrong_line = _find(lines, "wrong_number")
    if facts.end_reason is _R.WRONG_NUMBER or wrong_line is not None:
        return _wrong_number(facts, wrong_line)
    return None


def _progress(facts: CallFacts) -> AnalysisResult:
    """How far a conversation got: needs information, a callback, success, or not finished."""
    by_tool, by_words = _callback_from_tools(facts), _callback_from_words(facts)
    callback = by_tool or by_words
    timed_out = any(h.status in _ASKED_IN_VAIN for h in facts.hitl)
    if facts.end_reason is _R.USER_INFO_TIMEOUT or timed_out:
        return _needs_user_info(facts, callback)
    # A "call me back" with no time understood does not undo a call the agent saw completed.
    timed_words = by_words is not None and by_words.when is not None
    if by_tool or timed_words or facts.end_reason is _R.CALLBACK_REQUESTED:
        return _reschedule(facts, callback)
    if facts.end_reason is _R.COMPLETED:
        return _result(_O.SUCCESS, f"{_who(facts)}; the agent reported the objective done.")
    if by_words is not None:
        return _reschedule(facts, by_words)
    return _result(_O.INCOMPLETE, f"{_who(facts)}; {_ending(facts)} before the objective was met.")


def analyse_by_rules(facts: CallFacts) -> AnalysisResult:
    """Decide the call's outcome from its telephony facts, tools, questions and callee's words."""
    if not was_answered(facts):
        return _unanswered(facts)
    return _refusal(facts) or _progress(facts)
