"""The rule-based chat intake: whole dialogues, message by message, on a fixed clock."""

from __future__ import annotations

import dataclasses
import datetime as dt
from dataclasses import dataclass, field
from typing import Any

import pytest
from pydantic import SecretStr

from ai.intake_rules import CONFIRM_QUESTION, MAX_MESSAGE_CHARS, QUESTIONS, read_message
from ai.intake_time import find_time_spans, read_when
from gradio_ui.intake import RulesIntake, default_region, make_intake, rules_turn
from gradio_ui.intake_gemini import GeminiIntake, GeminiTurn, Where, apply_update, run_function
from gradio_ui.intake_types import Draft, IntakeTurn, draft_to_task_kwargs
from opendeep.settings import Settings

pytestmark = pytest.mark.unit

NOW = dt.datetime(2026, 3, 5, 9, 12, tzinfo=dt.UTC)  # Thursday, 10:12 in Paris
ZONE = "Europe/Paris"
ONE_SHOT = (
    "Call Bright Smile Dental at +1 415 555 0100 tomorrow at 3pm to move my appointment to "
    "next week. My name is Ana Lopez, booking ref 77A."
)


def utc(day: int, hour: int, minute: int = 0) -> dt.datetime:
    return dt.datetime(2026, 3, day, hour, minute, tzinfo=dt.UTC)


def talk(*messages: str, draft: Draft | None = None) -> list[IntakeTurn]:
    """Every turn of a dialogue, each message answered on the draft the last turn left."""
    turns: list[IntakeTurn] = []
    current = draft or Draft()
    for message in messages:
        turn = rules_turn(current, message, now=NOW, user_zone=ZONE)
        turns.append(turn)
        current = turn.draft
    return turns


@dataclass(frozen=True)
class Dialogue:
    """A dialogue and what must hold after its last message."""

    messages: tuple[str, ...]
    draft: dict[str, Any] = field(default_factory=dict)
    ready: bool = False
    confirmed: bool = False
    says: tuple[str, ...] = ()
    """Text the last reply must contain."""


DIALOGUES: dict[str, Dialogue] = {
    "one-shot full request": Dialogue(
        (ONE_SHOT,),
        draft={
            "phone": "+14155550100",
            "callee_name": "Bright Smile Dental",
            "objective": "Move my appointment to next week",
            "context": "My name is Ana Lopez, booking ref 77A.",
            "at": utc(6, 14),  # 15:00 in Paris
            "at_text": "tomorrow at 3pm",
            "timing_set": True,
            "awaiting": "confirm",
        },
        ready=True,
        says=("Bright Smile Dental", "+1 415-555-0100", "Fri 06 Mar 2026, 15:00", CONFIRM_QUESTION),
    ),
    "one-shot then yes": Dialogue((ONE_SHOT, "yes"), ready=True, confirmed=True),
    "one-shot then ok go ahead": Dialogue((ONE_SHOT, "ok, go ahead"), ready=True, confirmed=True),
    "piecemeal, any order": Dialogue(
        (
            "I need to call the dentist",
            "+1 415 555 0100",
            "move my appointment to next week",
            "in 10 minutes",
        ),
        draft={
            "callee_name": "the dentist",
            "phone": "+14155550100",
            "objective": "Move my appointment to next week",
            "at": utc(5, 9, 22),
        },
        ready=True,
    ),
    "number first asks for the objective": Dialogue(
        ("+1 415 555 0100",),
        draft={"phone": "+14155550100", "objective": None, "awaiting": "objective"},
        says=(QUESTIONS["objective"],),
    ),
    "objective first asks for the number": Dialogue(
        ("ask whether the blue sofa is in stock",),
        draft={"objective": "Ask whether the blue sofa is in stock", "awaiting": "phone"},
        says=(QUESTIONS["phone"],),
    ),
    "no time said asks when": Dialogue(
        ("call +1 415 555 0100 to ask whether the blue sofa is in stock",),
        draft={"timing_set": False, "awaiting": "timing"},
        says=("When should I call? (e.g. now, in 10 minutes, tomorrow at 3pm)",),
    ),
    "a time inside the objective stays there": Dialogue(
        ("call +1 415 555 0100 to move my appointment to Friday at 10am",),
        draft={"objective": "Move my appointment to Friday at 10am", "timing_set": False},
    ),
    "a time set off by a comma is the call time": Dialogue(
        ("+1 415 555 0100", "ask whether the blue sofa is in stock, tomorrow at 10"),
        draft={"objective": "Ask whether the blue sofa is in stock", "at": utc(6, 9)},
        ready=True,
    ),
    "correction of time and number": Dialogue(
        (ONE_SHOT, "make it 4pm instead", "actually the number is +1 415 555 0199"),
        draft={"at": utc(5, 15), "at_text": "4pm", "phone": "+14155550199"},
        ready=True,
        says=("+1 415-555-0199", "Thu 05 Mar 2026, 16:00"),
    ),
    "correction of the objective": Dialogue(
        (ONE_SHOT, "change the objective to cancel my appointment"),
        draft={"objective": "Cancel my appointment"},
        ready=True,
    ),
    "emergency number refused": Dialogue(
        ("call 911 to ask about opening hours",),
        draft={"phone": None, "objective": "Ask about opening hours", "awaiting": "phone"},
        says=("I can't call 911: emergency numbers are refused.", QUESTIONS["phone"]),
    ),
    "premium-rate number refused": Dialogue(
        ("+1 900 234 5678",),
        draft={"phone": None},
        says=("I can't call +1 900 234 5678: premium-rate numbers are refused.",),
    ),
    "short code refused": Dialogue(
        ("ask about my order", "the number is 12345"),
        draft={"phone": None, "awaiting": "phone"},
        says=("I can't call 12345: short codes are refused",),
    ),
    "refused correction keeps the old number": Dialogue(
        (ONE_SHOT, "actually call 112"),
        draft={"phone": "+14155550100"},
        ready=True,
        says=("emergency numbers are refused", "I kept +1 415-555-0100"),
    ),
    "unparseable number explained": Dialogue(
        ("call +999 1234 5678 to ask about my order",),
        draft={"phone": None},
        says=("is not a phone number I can dial", "unknown country code"),
    ),
    "a booking reference is not the number to call": Dialogue(
        (ONE_SHOT, "my booking ref is 4155550123"),
        draft={"phone": "+14155550100"},
        ready=True,
        says=("4155550123",),
    ),
    "past time asked again": Dialogue(
        ("call +1 415 555 0100 to ask about my order", "today at 9am"),
        draft={"timing_set": False, "awaiting": "timing"},
        says=("is in the past", "it is now Thu 05 Mar 2026, 10:12 (Europe/Paris)", "When should I"),
    ),
    "now": Dialogue(
        ("call +1 415 555 0100 now to ask about my order",),
        draft={"at": None, "at_text": "now", "timing_set": True},
        ready=True,
        says=("as soon as possible",),
    ),
    "asap phrasing": Dialogue(
        ("+1 415 555 0100", "ask about my order", "as soon as possible please"),
        draft={"at": None, "timing_set": True},
        ready=True,
    ),
    "Thursday after 3 said on a Thursday is today": Dialogue(
        ("call +1 415 555 0100 Thursday after 3 to ask about my order",),
        draft={"at": utc(5, 14)},
        ready=True,
    ),
    "language by name": Dialogue(
        (ONE_SHOT, "in Spanish please"),
        draft={"language": "es"},
        ready=True,
        says=("Spanish (es)",),
    ),
    "language by code": Dialogue((ONE_SHOT, "language: de"), draft={"language": "de"}, ready=True),
    "unknown language explained": Dialogue(
        (ONE_SHOT, "language: klingonese"),
        draft={"language": "en"},
        ready=True,
        says=("I don't know the language",),
    ),
    "callee time zone": Dialogue(
        (ONE_SHOT, "their time zone is America/New_York"),
        draft={"timezone": "America/New_York"},
        ready=True,
        says=("America/New_York",),
    ),
    "unknown time zone explained": Dialogue(
        (ONE_SHOT, "timezone: Mars/Olympus"),
        draft={"timezone": None},
        ready=True,
        says=("is not a time zone I know",),
    ),
    "context after the objective": Dialogue(
        ("call +1 415 555 0100 now to move my appointment", "I am a patient since 2019"),
        draft={"context": "I am a patient since 2019"},
        ready=True,
    ),
    "context prefix": Dialogue(
        (ONE_SHOT, "context: the gate code is 4411"),
        draft={"context": "My name is Ana Lopez, booking ref 77A.\nthe gate code is 4411"},
        ready=True,
    ),
    "no resets the draft": Dialogue(
        (ONE_SHOT, "no"),
        draft={"phone": None, "objective": None, "timing_set": False, "awaiting": None},
        says=("dropped",),
    ),
    "start over midway": Dialogue(
        ("+1 415 555 0100", "start over"), draft={"phone": None}, says=("dropped",)
    ),
    "yes before anything is there": Dialogue(
        ("+1 415 555 0100", "yes"),
        draft={"awaiting": "objective"},
        says=("nothing to confirm yet", QUESTIONS["objective"]),
    ),
    "non-English time phrase understood": Dialogue(
        ("call +1 415 555 0100 to ask about my order", "demain à 15h"),
        draft={"at": utc(6, 14), "at_text": "demain à 15h"},
        ready=True,
    ),
    "non-English time phrase not understood is asked again": Dialogue(
        ("call +1 415 555 0100 to ask about my order", "mañana a las 3 de la tarde"),
        draft={"timing_set": False, "awaiting": "timing"},
        says=("I couldn't read “mañana a las 3 de la tarde” as a time.", "When should I call?"),
    ),
    "whitespace message": Dialogue(
        ("+1 415 555 0100", "   \n\t "),
        draft={"phone": "+14155550100", "awaiting": "objective"},
        says=("I didn't get any text.", QUESTIONS["objective"]),
    ),
    "a filler message changes nothing": Dialogue(
        ("+1 415 555 0100", "hmm"),
        draft={"objective": None},
        says=("I didn't catch anything",),
    ),
    "emoji and unicode": Dialogue(
        ("📞 call Zoë Müller at +33 1 42 68 53 00 to ask about the 🛋️ sofa, asap",),
        draft={
            "callee_name": "Zoë Müller",
            "phone": "+33142685300",
            "objective": "Ask about the 🛋️ sofa",
            "timing_set": True,
        },
        ready=True,
        says=("Zoë Müller", "🛋️"),
    ),
    "thumbs up confirms": Dialogue((ONE_SHOT, "👍"), confirmed=True, ready=True),
    "brackets and a colon": Dialogue(
        ("Call the pharmacy (+1 415 555 0100) right away: is my prescription ready? I'm Ana.",),
        draft={
            "callee_name": "the pharmacy",
            "objective": "Is my prescription ready",
            "at_text": "right away",
        },
        ready=True,
    ),
    "objective first, number and time at the end": Dialogue(
        ("I want you to book a table for 4 at 8pm tonight at Luigi's, +1 415 555 0100, call now",),
        draft={"objective": "Book a table for 4 at 8pm tonight at Luigi's", "at": None},
        ready=True,
    ),
    "the objective's time, then now after a comma": Dialogue(
        (
            "Call Bright Smile Dental at +1 415 555 0100",
            "Move my appointment to next week, now please",
        ),
        draft={"objective": "Move my appointment to next week", "at": None, "timing_set": True},
        ready=True,
    ),
    "a question then the objective": Dialogue(
        ("Can you ring my dentist on 415-555-0100 in 10 minutes? I want to move my appointment.",),
        draft={"callee_name": "dentist", "objective": "Move my appointment", "at": utc(5, 9, 22)},
        ready=True,
    ),
    "a pronoun after call is not a name": Dialogue(
        ("call them next week at +1 415 555 0100 to ask about the invoice",),
        draft={"callee_name": None, "objective": "Ask about the invoice", "at": utc(9, 8)},
        ready=True,
    ),
    "labelled lines": Dialogue(
        ("number: +44 20 7946 0958\ngoal: confirm the delivery\nwhen: tomorrow morning",),
        draft={"phone": "+442079460958", "objective": "Confirm the delivery", "at": utc(6, 8)},
        ready=True,
    ),
}


@pytest.mark.parametrize("case", DIALOGUES.values(), ids=DIALOGUES.keys())
def test_dialogue(case: Dialogue) -> None:
    last = talk(*case.messages)[-1]
    for name, value in case.draft.items():
        assert getattr(last.draft, name) == value, name
    assert (last.ready, last.confirmed) == (case.ready, case.confirmed)
    for text in case.says:
        assert text in last.reply
    assert last.reply.strip()


def test_a_10000_character_message_is_refused_and_changes_nothing() -> None:
    before = talk(ONE_SHOT)[-1]
    huge = "call +1 415 555 0199 " + "x" * 10_000
    [turn] = talk(huge, draft=before.draft)
    assert turn.draft == before.draft
    assert f"at most {MAX_MESSAGE_CHARS:,}" in turn.reply and "10,021 characters" in turn.reply
    assert turn.ready and not turn.confirmed


def test_markdown_in_user_text_is_shown_literally_on_the_card() -> None:
    [turn] = talk("call +1 415 555 0100 now to ask about ![x](http://evil.example/p.png) <b>hi</b>")
    assert "\\!\\[x\\]\\(http://evil.example/p.png\\)" in turn.draft.card()
    assert "\\<b\\>" in turn.reply and "<b>" not in turn.reply


def test_confirmed_draft_gives_create_task_arguments() -> None:
    turns = talk(ONE_SHOT, "in French", "yes")
    assert turns[-1].confirmed
    assert draft_to_task_kwargs(turns[-1].draft) == {
        "phone": "+14155550100",
        "objective": "Move my appointment to next week",
        "context": "My name is Ana Lopez, booking ref 77A.",
        "callee_name": "Bright Smile Dental",
        "language": "fr",
        "timezone": None,
        "at": utc(6, 14),
    }


def test_an_incomplete_draft_cannot_become_task_arguments() -> None:
    with pytest.raises(ValueError, match="missing phone, timing"):
        draft_to_task_kwargs(Draft(objective="Ask about my order"))


def test_a_card_of_a_refused_create_can_be_fixed_and_confirmed_again() -> None:
    """After the repository refuses the task, the chat keeps the draft: one fix, one yes."""
    confirmed = talk(ONE_SHOT, "yes")[-1]
    fixed, again = talk("use +44 20 7946 0958 instead", "yes", draft=confirmed.draft)
    assert fixed.ready and fixed.draft.phone == "+442079460958"
    assert again.confirmed


def test_missing_lists_required_fields_in_asking_order() -> None:
    assert Draft().missing() == ["phone", "objective", "timing"]
    assert Draft(phone="+14155550100", timing_set=True).missing() == ["objective"]


async def test_rules_intake_answers_through_the_protocol() -> None:
    intake = RulesIntake()
    turn = await intake.respond(Draft(), [("assistant", "Hi!")], ONE_SHOT, now=NOW, user_zone=ZONE)
    assert turn.ready and turn.draft.phone == "+14155550100"


async def test_an_unknown_user_zone_reads_times_in_utc() -> None:
    turn = await RulesIntake().respond(
        Draft(), [], "call +1 415 555 0100 at 17:30 to ask", now=NOW, user_zone="Nowhere/Land"
    )
    assert turn.draft.at == utc(5, 17, 30)


def test_a_national_number_uses_the_default_region() -> None:
    [turn] = [rules_turn(Draft(), "call 01 42 68 53 00", now=NOW, user_zone=ZONE, region="FR")]
    assert turn.draft.phone == "+33142685300"


# -- the factory ---------------------------------------------------------------------------------


def test_make_intake_is_rules_without_a_gemini_key() -> None:
    settings = Settings(_env_file=None, analysis="rules", gemini_api_key=None)  # type: ignore[call-arg]
    assert isinstance(make_intake(settings), RulesIntake)


def test_make_intake_is_gemini_with_a_key() -> None:
    settings = Settings(_env_file=None, analysis="gemini", gemini_api_key=SecretStr("k"))  # type: ignore[call-arg]
    assert isinstance(make_intake(settings), GeminiIntake)


@pytest.mark.parametrize(("countries", "region"), [("*", "US"), ("FR", "FR"), ("FR,DE", "US")])
def test_default_region_follows_a_single_allowed_country(countries: str, region: str) -> None:
    settings = Settings(_env_file=None, tenant_allowed_countries=countries)  # type: ignore[call-arg]
    assert default_region(settings) == region


# -- time phrases --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("phrase", "expected"),
    [
        ("in 10 minutes", utc(5, 9, 22)),
        ("in half an hour", utc(5, 9, 42)),
        ("tomorrow at 3pm", utc(6, 14)),
        ("tomorrow", utc(6, 8)),  # a day alone means 09:00, not midnight
        ("Thursday after 3", utc(5, 14)),
        ("next Thursday at 3pm", utc(12, 14)),
        ("at 17:30", utc(5, 16, 30)),
        ("3:30", utc(5, 14, 30)),  # a bare 1–7 o'clock on a phone call is the afternoon
        ("at 07:30 tomorrow", utc(6, 6, 30)),
        ("on March 6th at 3pm", utc(6, 14)),
        ("2026-03-06T15:00", utc(6, 14)),
        ("2026-03-06", utc(6, 8)),
        ("next week", utc(9, 8)),  # its Monday, 09:00
        ("this weekend", utc(7, 8)),
        ("later today", utc(5, 11, 12)),
        ("today", None),
        ("now", None),
        ("asap", None),
    ],
)
def test_read_when(phrase: str, expected: dt.datetime | None) -> None:
    reading = read_when(phrase, zone=ZONE, now=NOW)
    assert reading.error is None and reading.at == expected


@pytest.mark.parametrize(
    ("phrase", "error"),
    [
        ("today at 9am", "is in the past"),
        ("in 2 years", "too far ahead"),
        ("whenever", "couldn't read"),
        ("", "No time"),
    ],
)
def test_read_when_refuses(phrase: str, error: str) -> None:
    reading = read_when(phrase, zone=ZONE, now=NOW)
    assert reading.at is None and reading.error is not None and error in reading.error


def test_time_spans_merge_day_and_clock() -> None:
    text = "call them tomorrow, at 3pm to talk about 3.50 euros and ref 77A"
    assert [s.text for s in find_time_spans(text)] == ["tomorrow, at 3pm"]


def test_a_message_with_a_reference_number_keeps_it_as_a_fact() -> None:
    reading = read_message("my account number is 4155550123", now=NOW, zone=ZONE)
    assert reading.phones == () and reading.context == "my account number is 4155550123"


# -- the Gemini intake's own checks (no network) ---------------------------------------------


WHERE = Where(NOW, ZONE, "US")


@pytest.mark.parametrize(
    ("args", "error"),
    [
        ({"phone": "911"}, "emergency numbers are refused"),
        ({"when": "yesterday"}, "is in the past"),
        ({"language": "Elvish"}, "not a language I know"),
        ({"timezone": "Mars/Olympus"}, "not a time zone I know"),
        ({"objective": "x" * 4_001}, "objective is too long"),
    ],
)
def test_gemini_fields_are_validated(args: dict[str, Any], error: str) -> None:
    draft, errors = apply_update(Draft(), args, WHERE)
    assert draft == Draft() and len(errors) == 1 and error in errors[0]


def test_gemini_fields_update_the_draft_and_ignore_unknown_ones() -> None:
    args = {
        "phone": "+1 415 555 0100",
        "objective": "ask about my order",
        "when": "tomorrow at 3pm",
        "language": "French",
        "timezone": "America/Los_Angeles",
        "shoe_size": "42",
        "context": "",
    }
    draft, errors = apply_update(Draft(), args, WHERE)
    assert errors == []
    assert (draft.phone, draft.objective, draft.at, draft.language, draft.timezone) == (
        "+14155550100",
        "Ask about my order",
        utc(6, 14),
        "fr",
        "America/Los_Angeles",
    )


def test_gemini_confirm_needs_the_card_to_have_been_shown() -> None:
    complete = talk(ONE_SHOT)[-1].draft
    unseen = dataclasses.replace(complete, awaiting="timing")
    turn = GeminiTurn(start=unseen, draft=unseen, where=WHERE)
    assert run_function(turn, "confirm_task", {})["ok"] is False and not turn.confirmed
    seen = GeminiTurn(start=complete, draft=complete, where=WHERE)
    assert run_function(seen, "confirm_task", {})["ok"] is True and seen.confirmed
    assert run_function(seen, "drop_tables", {})["ok"] is False
