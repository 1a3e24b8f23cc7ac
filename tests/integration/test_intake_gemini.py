"""The Gemini chat intake: the real google-genai client against the local stand-in, over HTTP."""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import AsyncIterator

import pytest

from ai.gemini_sim import GeminiStandIn, StandInMode
from ai.intake_rules import CONFIRM_QUESTION, DRAFT_MARKER
from gradio_ui.intake import make_intake
from gradio_ui.intake_gemini import GeminiIntake
from gradio_ui.intake_types import Draft, IntakeTurn
from tests.integration._gemini import KEY, settings_for

pytestmark = [
    pytest.mark.integration,
    # google-genai 3.4 subclasses aiohttp.ClientSession, which aiohttp 3.14 warns about.
    pytest.mark.filterwarnings("ignore:Inheritance class AiohttpClientSession:DeprecationWarning"),
]

NOW = dt.datetime(2026, 3, 5, 9, 12, tzinfo=dt.UTC)  # Thursday, 10:12 in Paris
ZONE = "Europe/Paris"
FIRST = "Call Bright Smile Dental at 911 tomorrow at 3pm to move my appointment to next week"


@pytest.fixture
async def intake(standin: GeminiStandIn) -> AsyncIterator[GeminiIntake]:
    made = make_intake(settings_for(standin))
    assert isinstance(made, GeminiIntake)
    try:
        yield made
    finally:
        await made.close()


async def converse(intake: GeminiIntake, *messages: str) -> list[IntakeTurn]:
    """Each message answered in turn, with the chat history the UI keeps."""
    draft, history, turns = Draft(), [], []
    for message in messages:
        turn = await intake.respond(draft, history, message, now=NOW, user_zone=ZONE)
        history += [("user", message), ("assistant", turn.reply)]
        draft = turn.draft
        turns.append(turn)
    return turns


async def test_gemini_drives_a_full_dialogue_to_confirmed(
    intake: GeminiIntake, standin: GeminiStandIn
) -> None:
    refused, ready, confirmed = await converse(intake, FIRST, "+1 415 555 0100", "yes")

    # Turn 1: Gemini passed "911" on; our check refused it and Gemini relayed the reason.
    assert "I can't call 911: emergency numbers are refused." in refused.reply
    assert refused.draft.phone is None and not refused.ready
    assert refused.draft.objective == "Move my appointment to next week"
    assert refused.draft.at == dt.datetime(2026, 3, 6, 14, 0, tzinfo=dt.UTC)
    assert refused.draft.awaiting == "phone"
    # Turn 2: complete, so the card is shown with Gemini's confirmation question.
    assert ready.ready and not ready.confirmed and ready.draft.phone == "+14155550100"
    assert "Bright Smile Dental · +1 415-555-0100" in ready.reply
    assert CONFIRM_QUESTION in ready.reply
    # Turn 3: "yes" became a confirm_task call.
    assert confirmed.confirmed and confirmed.draft == ready.draft

    calls = [r for r in standin.requests if r.function_names]
    assert len(calls) == len(standin.requests) == 5  # 2 + 2 + 1: call, answer, reply; confirm
    first, answered = calls[0], calls[1]
    assert first.api_key == KEY and first.model == "gemini-2.5-flash"
    assert first.function_names == ["update_task_draft", "confirm_task"]
    assert DRAFT_MARKER in first.system_instruction and "Thursday 2026-03-05 10:12" in (
        first.system_instruction
    )
    model_turn, function_turn = answered.body["contents"][-2:]
    assert model_turn["parts"][0]["functionCall"]["args"]["phone"] == "911"
    response = function_turn["parts"][0]["functionResponse"]["response"]
    assert response["ok"] is False and "emergency" in response["errors"][0]
    # The second turn carries the first one's words as history.
    texts = [p.get("text") for c in calls[2].body["contents"] for p in c["parts"]]
    assert FIRST in texts and refused.reply in texts


async def test_a_correction_reaches_gemini_as_an_update(intake: GeminiIntake) -> None:
    *_, ready, corrected = await converse(
        intake, FIRST.replace("911", "+1 415 555 0100"), "make it 4pm instead"
    )
    assert ready.ready and corrected.ready
    assert corrected.draft.at == dt.datetime(2026, 3, 5, 15, 0, tzinfo=dt.UTC)


@pytest.mark.parametrize(
    ("message", "says"),
    [("start over", "dropped"), ("   ", "didn't get any text"), ("x" * 10_000, "too long")],
)
async def test_messages_with_nothing_to_understand_do_not_reach_gemini(
    intake: GeminiIntake, standin: GeminiStandIn, message: str, says: str
) -> None:
    draft = Draft(phone="+14155550100", awaiting="objective")
    turn = await intake.respond(draft, [], message, now=NOW, user_zone=ZONE)
    assert says in turn.reply
    assert turn.draft == (Draft() if message == "start over" else draft)
    assert standin.requests == []


@pytest.mark.parametrize("mode", ["http_500", "wrong_key", "blocked"])
async def test_a_failing_gemini_falls_back_to_the_rules_and_still_completes(
    standin: GeminiStandIn, mode: StandInMode, caplog: pytest.LogCaptureFixture
) -> None:
    standin.mode = mode
    intake = GeminiIntake(settings_for(standin))
    try:
        with caplog.at_level(logging.WARNING, logger="gradio_ui.intake_gemini"):
            refused, ready, confirmed = await converse(intake, FIRST, "+1 415 555 0100", "yes")
    finally:
        await intake.close()
    assert "emergency numbers are refused" in refused.reply
    assert ready.ready and confirmed.confirmed and confirmed.draft.phone == "+14155550100"
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 3 and all("the rules answer this turn" in w for w in warnings)
    assert not any(KEY in w for w in warnings)
    assert len(standin.requests) == 3  # one per turn: a chat turn never waits for retries


async def test_a_slow_gemini_times_out_and_the_rules_answer(standin: GeminiStandIn) -> None:
    standin.mode, standin.delay = "slow", 30.0
    intake = GeminiIntake(settings_for(standin, gemini_timeout=0.5))
    started = time.monotonic()
    try:
        [turn] = await converse(intake, FIRST.replace("911", "+1 415 555 0100"))
    finally:
        await intake.close()
    assert time.monotonic() - started < 3.0
    assert turn.ready and turn.draft.phone == "+14155550100"


async def test_an_unreachable_gemini_falls_back(caplog: pytest.LogCaptureFixture) -> None:
    async with GeminiStandIn(api_key=KEY) as gone:
        settings = settings_for(gone)
    intake = GeminiIntake(settings)  # nothing listens at that port any more
    try:
        with caplog.at_level(logging.WARNING, logger="gradio_ui.intake_gemini"):
            [turn] = await converse(intake, "+1 415 555 0100")
    finally:
        await intake.close()
    assert turn.draft.phone == "+14155550100" and turn.draft.awaiting == "objective"
    assert any("Gemini request failed" in r.getMessage() for r in caplog.records)
