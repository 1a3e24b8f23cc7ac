"""The real google-genai client against the local generateContent stand-in, over real sockets."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import logging
import socket
import time
from typing import Any

import pytest

from ai.analysis import (
    SYSTEM_INSTRUCTION,
    Analyser,
    AnalysisResult,
    CallFacts,
    analyse_by_rules,
    render_prompt,
)
from ai.gemini_sim import GeminiStandIn, StandInMode, facts_from_prompt
from db.shapes import Speaker, ToolCallRecord, TranscriptTurn
from db.states import AmdVerdict, CallOutcome, EndReason, TelephonyResult
from opendeep.settings import Settings
from tests.integration._gemini import KEY, settings_for

pytestmark = [
    pytest.mark.integration,
    # google-genai 3.4 subclasses aiohttp.ClientSession, which aiohttp 3.14 warns about.
    pytest.mark.filterwarnings("ignore:Inheritance class AiohttpClientSession:DeprecationWarning"),
]

ENDED = dt.datetime(2026, 3, 3, 9, 30, tzinfo=dt.UTC)  # Tuesday, 10:30 in Paris
CALLBACK_LINE = "I'm in a meeting. Call me back Thursday after 3."


def call(*callee: str, **values: Any) -> CallFacts:
    fields: dict[str, Any] = {
        "objective": "Move the dentist appointment to next week",
        "context": "Patient: Alex Martin, appointment Wednesday 9:00",
        "callee_name": "Dana",
        "timezone": "Europe/Paris",
        "telephony_result": TelephonyResult.ANSWERED,
        "end_reason": EndReason.CALLEE_HUNG_UP,
        "transcript": [
            TranscriptTurn(
                speaker=Speaker.AGENT, text="Hello, I'm an AI assistant.", start_ms=0, end_ms=900
            ),
            *(
                TranscriptTurn(speaker=Speaker.CALLEE, text=t, start_ms=1000 * i, end_ms=1000 * i)
                for i, t in enumerate(callee, start=1)
            ),
        ],
        "ended_at": ENDED,
    }
    fields.update(values)
    return CallFacts(**fields)


async def analyse(settings: Settings, facts: CallFacts) -> AnalysisResult:
    analyser = Analyser(settings)
    try:
        return await analyser.analyse(facts)
    finally:
        await analyser.close()


async def with_mode(standin: GeminiStandIn, mode: StandInMode, **settings: Any) -> AnalysisResult:
    standin.mode = mode
    return await analyse(settings_for(standin, **settings), call(CALLBACK_LINE))


# -- success --------------------------------------------------------------------------------------


async def test_gemini_answer_is_parsed_and_the_request_carries_schema_and_transcript(
    standin: GeminiStandIn,
) -> None:
    result = await analyse(settings_for(standin), call(CALLBACK_LINE))

    assert result.source == "gemini" and result.fallback_reason is None
    assert result.outcome is CallOutcome.RESCHEDULE_REQUESTED
    assert result.callback_time == dt.datetime(2026, 3, 5, 14, 0, tzinfo=dt.UTC)  # 15:00 Paris
    assert result.facts == {"callback_phrase": "Thursday after 3"}
    assert result.tokens is not None and result.tokens > 0
    assert result.corrections == []

    [sent] = standin.requests
    assert sent.method == "generateContent" and sent.model == "gemini-2.5-flash"
    assert sent.api_version in {"v1", "v1beta"} and sent.api_key == KEY
    config = sent.generation_config
    assert config["responseMimeType"] == "application/json" and config["temperature"] == 0
    schema = config["responseSchema"]
    assert set(schema["properties"]) == {
        "outcome",
        "summary",
        "facts",
        "objective_met",
        "callback_time_local",
        "do_not_call",
    }
    assert set(schema["properties"]["outcome"]["enum"]) == {o.value for o in CallOutcome}
    assert schema["properties"]["facts"]["type"] == "ARRAY"
    assert CALLBACK_LINE in sent.prompt and "Tuesday 2026-03-03 at 10:30" in sent.prompt
    assert "FAILED_BUSY" in sent.system_instruction == SYSTEM_INSTRUCTION


async def test_the_prompt_round_trips_the_call_record() -> None:
    facts = call(CALLBACK_LINE, amd_verdict=AmdVerdict.HUMAN, hangup_cause=16)
    assert facts_from_prompt(render_prompt(facts)) == facts


async def test_gemini_sees_through_a_reschedule_tool_record(standin: GeminiStandIn) -> None:
    at = dt.datetime(2026, 3, 6, 8, 0, tzinfo=dt.UTC)
    record = ToolCallRecord(
        name="reschedule_call",
        arguments={"when": "Friday 9am", "reason": "busy"},
        result=json.dumps({"callback_at": at.isoformat(), "reason": "busy"}),
        at=ENDED,
    )
    facts = call(
        "Friday at nine then.", tool_calls=[record], end_reason=EndReason.CALLBACK_REQUESTED
    )
    result = await analyse(settings_for(standin), facts)
    assert (result.source, result.outcome, result.callback_time) == (
        "gemini",
        CallOutcome.RESCHEDULE_REQUESTED,
        at,
    )
    assert '"reschedule_call"' in standin.requests[0].prompt


# -- falling back to the rules --------------------------------------------------------------------


async def test_a_slow_gemini_falls_back_to_the_rules_with_the_timeout_as_reason(
    standin: GeminiStandIn,
) -> None:
    standin.delay = 30.0
    started = time.monotonic()
    result = await with_mode(standin, "slow", gemini_timeout=0.3)
    assert time.monotonic() - started < 3.0
    assert result.source == "rules" and result.fallback_reason == "Gemini timed out after 0.3 s"
    assert result.outcome is CallOutcome.RESCHEDULE_REQUESTED  # the rules still read the callee
    assert result.callback_time == dt.datetime(2026, 3, 5, 14, 0, tzinfo=dt.UTC)


@pytest.mark.parametrize(
    ("mode", "reason"),
    [
        ("invalid_json", "Gemini returned invalid JSON: "),
        ("http_500", "Gemini answered HTTP 500 INTERNAL: An internal error has occurred."),
        ("wrong_key", "Gemini rejected the API key (HTTP 400 INVALID_ARGUMENT)"),
        ("blocked", "Gemini returned no answer (finish reason SAFETY)"),
    ],
)
async def test_a_failing_gemini_falls_back_to_the_rules_with_a_clear_reason(
    standin: GeminiStandIn, mode: StandInMode, reason: str
) -> None:
    result = await with_mode(standin, mode)
    assert result.source == "rules" and result.fallback_reason is not None
    assert result.fallback_reason.startswith(reason)
    assert result == analyse_by_rules(call(CALLBACK_LINE)).model_copy(
        update={"fallback_reason": result.fallback_reason}
    )


async def test_a_server_error_is_retried_once_then_falls_back(standin: GeminiStandIn) -> None:
    result = await with_mode(standin, "http_500")
    assert result.source == "rules" and len(standin.requests) == 2


async def test_a_refused_key_is_not_retried(standin: GeminiStandIn) -> None:
    await with_mode(standin, "wrong_key")
    assert len(standin.requests) == 1


async def test_an_unreachable_gemini_falls_back(standin: GeminiStandIn) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]
    settings = settings_for(standin, gemini_base_url=f"http://127.0.0.1:{closed_port}")
    result = await analyse(settings, call(CALLBACK_LINE))
    assert result.source == "rules"
    assert result.fallback_reason is not None
    assert result.fallback_reason.startswith(("Gemini request failed: ", "Gemini timed out"))


async def test_a_model_answer_outside_the_schema_falls_back(standin: GeminiStandIn) -> None:
    standin.reply = {"outcome": "MAYBE", "summary": "?", "facts": [], "objective_met": False}
    result = await analyse(settings_for(standin), call(CALLBACK_LINE))
    assert result.source == "rules"
    assert result.fallback_reason is not None
    assert result.fallback_reason.startswith("Gemini's answer does not fit the schema: outcome")


async def test_without_a_key_the_rules_decide_and_gemini_is_not_called(
    standin: GeminiStandIn,
) -> None:
    settings = settings_for(standin, analysis=None, gemini_api_key=None)
    assert settings.analysis_mode == "rules"
    result = await analyse(settings, call(CALLBACK_LINE))
    assert result.source == "rules" and result.fallback_reason is None
    assert not Analyser(settings).uses_gemini
    assert standin.requests == []


async def test_gemini_chosen_without_a_key_falls_back_and_says_why(
    standin: GeminiStandIn,
) -> None:
    settings = settings_for(standin, gemini_api_key=None)
    result = await analyse(settings, call(CALLBACK_LINE))
    assert result.source == "rules"
    assert result.fallback_reason == "OPENDEEP_ANALYSIS=gemini but no GEMINI_API_KEY"
    assert standin.requests == []


# -- sanity rules over the model ------------------------------------------------------------------


def reply(outcome: CallOutcome, **values: Any) -> dict[str, Any]:
    answer: dict[str, Any] = {
        "outcome": outcome.value,
        "summary": "The model's own summary.",
        "facts": [],
        "objective_met": outcome is CallOutcome.SUCCESS,
        "callback_time_local": None,
        "do_not_call": outcome is CallOutcome.DO_NOT_CALL,
    }
    answer.update(values)
    return answer


async def test_a_call_never_answered_cannot_be_a_success(standin: GeminiStandIn) -> None:
    standin.reply = reply(CallOutcome.SUCCESS)
    facts = call(
        telephony_result=TelephonyResult.BUSY,
        end_reason=EndReason.NOT_ANSWERED,
        hangup_cause=17,
        transcript=[],
    )
    result = await analyse(settings_for(standin), facts)
    assert (result.source, result.outcome, result.objective_met) == (
        "gemini",
        CallOutcome.FAILED_BUSY,
        False,
    )
    assert result.summary == "Busy (cause 17)."
    assert result.corrections == [
        "outcome SUCCESS -> FAILED_BUSY: the call never got to a conversation (busy)"
    ]


async def test_an_answered_call_cannot_be_busy(standin: GeminiStandIn) -> None:
    standin.reply = reply(CallOutcome.FAILED_BUSY)
    result = await analyse(settings_for(standin), call("Sure, Tuesday at ten.", end_reason=None))
    assert result.outcome is CallOutcome.INCOMPLETE
    assert result.corrections == ["outcome FAILED_BUSY -> INCOMPLETE: the call was answered"]


async def test_a_do_not_call_request_wins_over_the_model(standin: GeminiStandIn) -> None:
    standin.reply = reply(CallOutcome.INCOMPLETE)
    result = await analyse(settings_for(standin), call("Stop calling me. Take me off your list."))
    assert result.outcome is CallOutcome.DO_NOT_CALL and result.do_not_call
    assert "the callee asked not to be called again" in result.corrections[0]


async def test_the_models_do_not_call_flag_makes_the_outcome_do_not_call(
    standin: GeminiStandIn,
) -> None:
    standin.reply = reply(CallOutcome.SUCCESS, do_not_call=True, objective_met=True)
    result = await analyse(settings_for(standin), call("Fine. But never again, understood?"))
    assert result.outcome is CallOutcome.DO_NOT_CALL and result.do_not_call
    assert not result.objective_met


async def test_the_do_not_call_end_reason_wins(standin: GeminiStandIn) -> None:
    standin.reply = reply(CallOutcome.INCOMPLETE)
    facts = call("Not interested.", end_reason=EndReason.DO_NOT_CALL)
    result = await analyse(settings_for(standin), facts)
    assert result.outcome is CallOutcome.DO_NOT_CALL


async def test_the_models_local_callback_time_is_read_in_the_callees_zone(
    standin: GeminiStandIn,
) -> None:
    standin.reply = reply(
        CallOutcome.RESCHEDULE_REQUESTED,
        callback_time_local="2026-03-05T15:00",
        facts=[{"name": "reason", "value": "in a meeting"}, {"name": " ", "value": "dropped"}],
    )
    facts = call("Let's talk Thursday afternoon.", timezone="America/New_York")
    result = await analyse(settings_for(standin), facts)
    assert result.callback_time == dt.datetime(2026, 3, 5, 20, 0, tzinfo=dt.UTC)  # 15:00 EST
    assert result.facts == {"reason": "in a meeting"}
    assert result.summary == "The model's own summary." and result.corrections == []


async def test_a_missing_model_callback_time_is_taken_from_the_rules(
    standin: GeminiStandIn,
) -> None:
    standin.reply = reply(CallOutcome.RESCHEDULE_REQUESTED, callback_time_local="whenever")
    result = await analyse(settings_for(standin), call(CALLBACK_LINE))
    assert result.callback_time == dt.datetime(2026, 3, 5, 14, 0, tzinfo=dt.UTC)
    assert result.corrections == [
        "dropped an unreadable callback time 'whenever'",
        "callback time taken from the rules (Gemini gave none)",
    ]


# -- secrets --------------------------------------------------------------------------------------


async def test_the_api_key_and_the_transcript_never_reach_the_logs(
    standin: GeminiStandIn, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    results = []
    modes: list[StandInMode] = ["normal", "invalid_json", "http_500", "wrong_key", "blocked"]
    for mode in modes:
        results.append(await with_mode(standin, mode))
    results.append(await with_mode(standin, "slow", gemini_timeout=0.2))
    assert len(standin.requests) >= len(modes)
    assert caplog.records, "the analyser logs what it did"
    assert KEY not in caplog.text
    assert CALLBACK_LINE not in caplog.text and "meeting" not in caplog.text
    assert all(KEY not in r.model_dump_json() for r in results)


async def test_stopping_the_standin_does_not_wait_for_a_slow_request() -> None:
    server = GeminiStandIn(api_key=KEY, mode="slow", delay=60.0)
    await server.start()
    task = asyncio.create_task(analyse(settings_for(server, gemini_timeout=30.0), call("Hi")))
    for _ in range(500):  # until the request is in (≤ 5 s)
        if server.requests:
            break
        await asyncio.sleep(0.01)
    assert server.requests
    started = time.monotonic()
    await server.stop()
    result = await asyncio.wait_for(task, 10)
    assert time.monotonic() - started < 5.0
    assert result.source in {"gemini", "rules"}
