"""The rules analyser: each outcome from telephony facts, end reasons, tools and callee words."""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from pydantic import ValidationError

from ai.analysis import AnalysisResult, CallFacts, HitlSummary, analyse_by_rules
from ai.analysis_rules import was_answered
from db.shapes import Speaker, ToolCallRecord, TranscriptTurn
from db.states import AmdVerdict, CallOutcome, EndReason, HitlStatus, TelephonyResult

pytestmark = pytest.mark.unit

O = CallOutcome  # noqa: E741 -- short names keep the case tables readable
R = EndReason
T = TelephonyResult
# Tuesday 3 March 2026, 09:30 UTC: 10:30 in Paris (CET), 04:30 in New York (EST).
ENDED = dt.datetime(2026, 3, 3, 9, 30, tzinfo=dt.UTC)
PARIS, NEW_YORK = "Europe/Paris", "America/New_York"


def turn(text: str, speaker: Speaker = Speaker.CALLEE, at_ms: int = 0) -> TranscriptTurn:
    return TranscriptTurn(speaker=speaker, text=text, start_ms=at_ms, end_ms=at_ms + 1000)


def answered(*callee: str, **values: Any) -> CallFacts:
    """An answered call in Paris that ended as the callee hung up, unless told otherwise."""
    fields: dict[str, Any] = {
        "objective": "Move the dentist appointment to next week",
        "callee_name": "Dana",
        "timezone": PARIS,
        "telephony_result": T.ANSWERED,
        "end_reason": R.CALLEE_HUNG_UP,
        "originate_reason": 4,
        "hangup_cause": 16,
        "transcript": [turn(line, at_ms=i * 2000) for i, line in enumerate(callee)],
        "ended_at": ENDED,
    }
    fields.update(values)
    return CallFacts(**fields)


def local(when: dt.datetime | None, zone: str) -> str:
    assert when is not None and when.tzinfo is not None
    return when.astimezone(ZoneInfo(zone)).strftime("%a %Y-%m-%d %H:%M")


def reschedule_record(
    result: str, when: str = "Friday at 9", at: dt.datetime = ENDED
) -> ToolCallRecord:
    return ToolCallRecord(
        name="reschedule_call",
        arguments={"when": when, "reason": "in a meeting"},
        result=result,
        at=at - dt.timedelta(minutes=1),
    )


# -- never answered -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("result", "reason", "cause", "outcome", "summary"),
    [
        (T.NO_ANSWER, 3, 19, O.FAILED_NO_ANSWER, "No answer (cause 19)."),
        (T.BUSY, 5, 17, O.FAILED_BUSY, "Busy (cause 17)."),
        (T.CONGESTION, 8, 34, O.FAILED_CONGESTION, "Network congestion (cause 34)."),
        (T.REJECTED, 0, 21, O.FAILED_REJECTED, "Call rejected (cause 21)."),
        (T.FAILED, 0, 0, O.FAILED_TECHNICAL, "The call could not be placed (originate reason 0)."),
        (
            T.UNKNOWN,
            None,
            None,
            O.FAILED_TECHNICAL,
            "The call's fate is unknown (never connected).",
        ),
    ],
)
def test_an_unanswered_call_fails_by_its_telephony_result(
    result: TelephonyResult,
    reason: int | None,
    cause: int | None,
    outcome: CallOutcome,
    summary: str,
) -> None:
    facts = CallFacts(
        objective="Book a table",
        telephony_result=result,
        end_reason=R.NOT_ANSWERED,
        originate_reason=reason,
        hangup_cause=cause,
        ended_at=ENDED,
    )
    got = analyse_by_rules(facts)
    assert (got.outcome, got.summary, got.source) == (outcome, summary, "rules")
    assert not got.objective_met and not got.do_not_call and got.callback_time is None
    assert not was_answered(facts)


def test_an_unanswered_end_reason_without_a_telephony_result_is_no_answer() -> None:
    facts = CallFacts(objective="x", end_reason=R.NOT_ANSWERED, ended_at=ENDED)
    assert analyse_by_rules(facts).outcome is O.FAILED_NO_ANSWER


def test_an_unanswered_call_ignores_words_and_tools() -> None:
    facts = answered("Don't call me again", telephony_result=T.BUSY, hangup_cause=17)
    assert analyse_by_rules(facts).outcome is O.FAILED_BUSY


@pytest.mark.parametrize(
    ("reason", "words"),
    [(R.NOT_CONNECTED, "audio connection never came up"), (R.TECHNICAL_ERROR, "technical error")],
)
def test_a_technical_end_is_a_technical_failure(reason: EndReason, words: str) -> None:
    got = analyse_by_rules(answered("Hello?", end_reason=reason, hangup_cause=None))
    assert got.outcome is O.FAILED_TECHNICAL and words in got.summary


# -- voicemail ------------------------------------------------------------------------------------


def test_voicemail_by_the_amd_verdict_even_if_the_greeting_asks_for_a_callback() -> None:
    facts = answered(
        "Hi, you've reached Dana. Please call me back after the beep tomorrow at 10.",
        amd_verdict=AmdVerdict.MACHINE,
    )
    got = analyse_by_rules(facts)
    assert got.outcome is O.FAILED_VOICEMAIL and got.callback_time is None
    assert "MACHINE" in got.summary


def test_voicemail_by_the_models_end_reason() -> None:
    got = analyse_by_rules(answered("Leave a message.", end_reason=R.VOICEMAIL))
    assert got.outcome is O.FAILED_VOICEMAIL and "voicemail greeting" in got.summary


def test_a_human_amd_verdict_is_not_voicemail() -> None:
    facts = answered("Hello", amd_verdict=AmdVerdict.HUMAN, end_reason=R.COMPLETED)
    assert analyse_by_rules(facts).outcome is O.SUCCESS


# -- do not call ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "line",
    [
        "Don't call me again.",
        "Please don’t ever call me again!",
        "Do not call this number again.",
        "Stop calling me, I'm not interested.",
        "Take me off your list.",
        "Please remove my number from your database.",
        "Put me on your do-not-call list.",
        "I don't want any more calls from you.",
        "Never call me again.",
        "Don't call me.",
        "Ne m'appelez plus jamais.",
        "Arrêtez de m'appeler.",
        "Rufen Sie mich nicht mehr an.",
        "Löschen Sie meine Nummer.",
        "No me llame más, por favor.",
        "Deje de llamarme.",
    ],
)
def test_a_request_not_to_be_called_again_is_do_not_call(line: str) -> None:
    got = analyse_by_rules(answered("Hello?", line, end_reason=R.COMPLETED))
    assert got.outcome is O.DO_NOT_CALL and got.do_not_call
    assert not got.objective_met
    assert got.facts == {"do_not_call_phrase": " ".join(line.replace("’", "'").split())}
    assert "asked not to be called again" in got.summary


def test_the_do_not_call_end_reason_is_do_not_call_without_words() -> None:
    got = analyse_by_rules(answered("Not interested.", end_reason=R.DO_NOT_CALL))
    assert got.outcome is O.DO_NOT_CALL and got.do_not_call and got.facts == {}


@pytest.mark.parametrize(
    "line",
    [
        "Don't call me before ten, I'm at work.",
        "No more calls today please, call me tomorrow at 10.",
        "You can call me again tomorrow at 10.",
    ],
)
def test_ordinary_sentences_are_not_do_not_call(line: str) -> None:
    got = analyse_by_rules(answered(line))
    assert got.outcome is not O.DO_NOT_CALL and not got.do_not_call


def test_only_the_callee_can_ask_not_to_be_called() -> None:
    agent = turn("Understood, we will not call you again after today.", Speaker.AGENT)
    facts = answered(transcript=[agent], end_reason=R.COMPLETED)
    assert analyse_by_rules(facts).outcome is O.SUCCESS


# -- wrong number ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "line",
    [
        "Sorry, wrong number.",
        "There's no one by that name here.",
        "There's no Dana here.",
        "You've got the wrong number.",
        "C'est un faux numéro.",
        "Da sind Sie falsch verbunden.",
        "Número equivocado.",
    ],
)
def test_the_callees_words_can_make_it_a_wrong_number(line: str) -> None:
    got = analyse_by_rules(answered(line))
    assert got.outcome is O.WRONG_NUMBER and "wrong number" in got.summary
    assert got.facts["wrong_number_phrase"]


def test_the_wrong_number_end_reason_is_a_wrong_number() -> None:
    assert analyse_by_rules(answered(end_reason=R.WRONG_NUMBER)).outcome is O.WRONG_NUMBER


def test_no_problem_here_is_not_a_wrong_number() -> None:
    assert analyse_by_rules(answered("There's no problem here.")).outcome is O.INCOMPLETE


# -- callbacks ------------------------------------------------------------------------------------


@pytest.mark.parametrize("zone", [PARIS, NEW_YORK])
def test_call_me_back_thursday_after_3_is_thursday_15_00_in_the_callees_zone(zone: str) -> None:
    got = analyse_by_rules(answered("I'm busy. Call me back Thursday after 3, ok?", timezone=zone))
    assert got.outcome is O.RESCHEDULE_REQUESTED
    assert local(got.callback_time, zone) == "Thu 2026-03-05 15:00"
    assert got.callback_time is not None and got.callback_time.tzinfo is dt.UTC
    assert got.facts == {"callback_phrase": "Thursday after 3"}
    assert "Thursday 5 March at 15:00" in got.summary and zone in got.summary
    assert not got.objective_met


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("Could you call me tomorrow at 10 please?", "Wed 2026-03-04 10:00"),
        ("Try again in two hours.", "Tue 2026-03-03 12:30"),
        ("Ring me back next Tuesday at 9:30.", "Tue 2026-03-10 09:30"),
        ("Call me back on Thursday after 3 would be better", "Thu 2026-03-05 15:00"),
    ],
)
def test_callback_phrases_are_read_in_paris(line: str, expected: str) -> None:
    got = analyse_by_rules(answered(line))
    assert got.outcome is O.RESCHEDULE_REQUESTED
    assert local(got.callback_time, PARIS) == expected


@pytest.mark.parametrize(
    ("language", "line"),
    [
        ("fr", "Rappelez-moi jeudi après 15h."),
        ("de", "Rufen Sie mich am Donnerstag nach 15 Uhr zurück."),
        ("es", "Llámeme el jueves después de las 3."),
    ],
)
def test_callback_phrases_in_french_german_and_spanish(language: str, line: str) -> None:
    got = analyse_by_rules(answered(line, language=language))
    assert got.outcome is O.RESCHEDULE_REQUESTED
    assert local(got.callback_time, PARIS) == "Thu 2026-03-05 15:00"


def test_the_latest_callback_request_wins() -> None:
    got = analyse_by_rules(
        answered("Call me back tomorrow at 10.", "No wait, call me Friday at 4.")
    )
    assert local(got.callback_time, PARIS) == "Fri 2026-03-06 16:00"


def test_call_me_back_later_is_a_reschedule_without_a_time() -> None:
    got = analyse_by_rules(answered("I'm driving, call me back later."))
    assert got.outcome is O.RESCHEDULE_REQUESTED and got.callback_time is None
    assert "no time understood" in got.summary


def test_dont_call_me_back_is_not_a_callback() -> None:
    got = analyse_by_rules(answered("Don't call me back, I'll call you."))
    assert got.outcome is O.INCOMPLETE


def test_the_reschedule_tool_gives_its_recorded_time() -> None:
    at = dt.datetime(2026, 3, 6, 8, 0, tzinfo=dt.UTC)
    record = reschedule_record(json.dumps({"callback_at": at.isoformat(), "reason": "meeting"}))
    facts = answered(
        "Call me back tomorrow at 10.", tool_calls=[record], end_reason=R.CALLBACK_REQUESTED
    )
    got = analyse_by_rules(facts)
    assert got.outcome is O.RESCHEDULE_REQUESTED and got.callback_time == at
    assert got.facts == {"callback_reason": "in a meeting"}


def test_a_reschedule_record_without_a_parsed_time_is_read_from_its_words() -> None:
    facts = answered(tool_calls=[reschedule_record("noted")], end_reason=R.CALLBACK_REQUESTED)
    got = analyse_by_rules(facts)
    assert local(got.callback_time, PARIS) == "Fri 2026-03-06 09:00"
    assert got.facts["callback_phrase"] == "Friday at 9"


def test_a_refused_reschedule_call_is_ignored() -> None:
    refused = reschedule_record("error: reschedule_call: 'yesterday' is in the past")
    got = analyse_by_rules(answered("Thanks, bye.", tool_calls=[refused]))
    assert got.outcome is O.INCOMPLETE


def test_the_callback_end_reason_alone_is_a_reschedule_with_no_time() -> None:
    got = analyse_by_rules(answered("Not now.", end_reason=R.CALLBACK_REQUESTED))
    assert got.outcome is O.RESCHEDULE_REQUESTED and got.callback_time is None


def test_a_timed_callback_request_outweighs_the_completed_end_reason() -> None:
    got = analyse_by_rules(answered("Call me back Thursday after 3.", end_reason=R.COMPLETED))
    assert got.outcome is O.RESCHEDULE_REQUESTED


def test_an_untimed_call_me_back_does_not_undo_a_completed_call() -> None:
    facts = answered("Perfect. Call me back if anything changes.", end_reason=R.COMPLETED)
    assert analyse_by_rules(facts).outcome is O.SUCCESS


# -- human in the loop ----------------------------------------------------------------------------


def test_a_hitl_timeout_end_needs_user_info() -> None:
    question = HitlSummary(question="What is the policy number?", status=HitlStatus.TIMED_OUT)
    got = analyse_by_rules(answered(end_reason=R.USER_INFO_TIMEOUT, hitl=[question]))
    assert got.outcome is O.NEEDS_USER_INFO
    assert (
        "“What is the policy number?”" in got.summary and "call back once you reply" in got.summary
    )


def test_a_question_that_timed_out_needs_user_info_even_if_the_callee_hung_up() -> None:
    question = HitlSummary(question="Which day suits you?", status=HitlStatus.TIMED_OUT)
    got = analyse_by_rules(answered("I have to go.", hitl=[question]))
    assert got.outcome is O.NEEDS_USER_INFO


def test_a_late_answer_still_needs_user_info_and_says_so() -> None:
    late = HitlSummary(question="Which day?", status=HitlStatus.ANSWERED_LATE, answer="Tuesday")
    got = analyse_by_rules(answered(end_reason=R.USER_INFO_TIMEOUT, hitl=[late]))
    assert got.outcome is O.NEEDS_USER_INFO and "came after the call" in got.summary


def test_a_question_answered_in_time_does_not_block_success() -> None:
    done = HitlSummary(question="Which day?", status=HitlStatus.ANSWERED, answer="Tuesday")
    got = analyse_by_rules(answered("Tuesday works.", end_reason=R.COMPLETED, hitl=[done]))
    assert got.outcome is O.SUCCESS


# -- success and incomplete -----------------------------------------------------------------------


def test_a_completed_call_is_a_success() -> None:
    got = analyse_by_rules(answered("Sure, Tuesday at ten it is.", end_reason=R.COMPLETED))
    assert got.outcome is O.SUCCESS and got.objective_met and not got.do_not_call
    assert got.summary == "Reached Dana; the agent reported the objective done."


@pytest.mark.parametrize(
    ("reason", "words"),
    [
        (R.CALLEE_HUNG_UP, "the callee hung up"),
        (R.MAX_DURATION, "maximum duration"),
        (R.OTHER, "the agent ended the call"),
        (R.CALLEE_DECLINED, "the callee declined"),
        (R.IVR_DEAD_END, "automated menu"),
        (R.CANCELLED, "cancelled"),
        (None, "the call ended"),
    ],
)
def test_other_ends_are_incomplete(reason: EndReason | None, words: str) -> None:
    got = analyse_by_rules(answered("Hmm.", end_reason=reason))
    assert got.outcome is O.INCOMPLETE and not got.objective_met
    assert words in got.summary and "before the objective was met" in got.summary


def test_without_a_callee_name_the_summary_says_the_call_was_answered() -> None:
    got = analyse_by_rules(answered(callee_name=None))
    assert got.summary.startswith("The call was answered;")


def test_every_summary_is_a_human_sentence() -> None:
    cases = [
        CallFacts(objective="x", telephony_result=T.BUSY, hangup_cause=17, ended_at=ENDED),
        answered("Don't call me again."),
        answered("Wrong number."),
        answered("Call me back Thursday after 3."),
        answered(end_reason=R.USER_INFO_TIMEOUT),
        answered(end_reason=R.COMPLETED),
        answered(amd_verdict=AmdVerdict.MACHINE),
        answered(end_reason=R.TECHNICAL_ERROR),
        answered(),
    ]
    for facts in cases:
        summary = analyse_by_rules(facts).summary
        assert summary[0].isupper() and summary.endswith("."), summary
        assert "_" not in summary and "None" not in summary, summary


# -- the shapes -----------------------------------------------------------------------------------


def test_call_facts_refuse_a_naive_end_time_and_an_unknown_zone() -> None:
    with pytest.raises(ValidationError):
        CallFacts(objective="x", ended_at=dt.datetime(2026, 3, 3, 9, 30))
    with pytest.raises(ValidationError, match="unknown IANA time zone"):
        CallFacts(objective="x", timezone="Mars/Olympus", ended_at=ENDED)


def test_call_facts_keep_the_end_time_in_utc() -> None:
    paris = ENDED.astimezone(ZoneInfo(PARIS))
    assert CallFacts(objective="x", ended_at=paris).ended_at.tzinfo is dt.UTC


def test_a_result_with_do_not_call_must_have_the_do_not_call_outcome() -> None:
    with pytest.raises(ValidationError, match="do_not_call"):
        AnalysisResult(
            outcome=O.SUCCESS, summary="x", objective_met=True, do_not_call=True, source="rules"
        )


def test_importing_the_analysis_loads_neither_the_sdk_nor_the_database_stack() -> None:
    code = (
        "import json, sys; import ai.analysis; "
        "print(json.dumps(sorted({m.split('.')[0] for m in sys.modules})))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    )
    loaded = set(json.loads(out.stdout.strip().splitlines()[-1]))
    # google.genai (~0.5 s) loads on the first Gemini call, dateparser on the first callback phrase.
    assert not loaded & {"google", "sqlalchemy", "dateparser", "aiohttp", "httpx"}
