"""The rule-based chat intake (no model, no network) and the factory that picks an intake.

Each user message is read by :func:`ai.intake_rules.read_message` (numbers, times, who, the
objective, facts, language), applied to the :class:`~gradio_ui.intake_types.Draft`, and
answered: problems first (a refused number, a past time), then the question for the first
missing field — or, once number, objective and time are there, the summary card and
"Shall I create this task?". "yes" confirms; "no" / "start over" clears the draft. The
dialogue state (what was asked last) travels in ``Draft.awaiting``, so the history is not
needed here.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
from collections.abc import Sequence
from typing import Final

from ai.intake_rules import (
    CONFIRM_QUESTION,
    MAX_MESSAGE_CHARS,
    QUESTIONS,
    Awaiting,
    Intent,
    Reading,
    read_message,
    with_free_text_placed,
)
from db.repo.tasks import MAX_CONTEXT_CHARS
from gradio_ui.intake_types import Draft, Intake, IntakeTurn, pretty_phone
from opendeep.settings import Settings

__all__ = [
    "DEFAULT_REGION",
    "RulesIntake",
    "apply_reading",
    "asking",
    "default_region",
    "make_intake",
    "message_problem",
    "next_turn",
    "rules_turn",
]

log = logging.getLogger(__name__)

DEFAULT_REGION: Final = "US"
"""Region for numbers written without a country code, unless the settings name one country."""
GREETING_AGAIN: Final = "Who should I call, and what should I get done?"
_ASKING: Final[dict[str, Awaiting]] = {
    "phone": "phone",
    "objective": "objective",
    "timing": "timing",
}


def default_region(settings: Settings) -> str:
    """The one country new tenants may call, if the settings name exactly one; else US."""
    countries = [c.strip().upper() for c in settings.tenant_allowed_countries.split(",")]
    countries = [c for c in countries if c]
    return countries[0] if len(countries) == 1 and len(countries[0]) == 2 else DEFAULT_REGION


def message_problem(message: str) -> str | None:
    """Why ``message`` cannot be read at all (empty, too long), as the reply's first line."""
    if not message.strip():
        return "I didn't get any text."
    if len(message) > MAX_MESSAGE_CHARS:
        return (
            f"That message is too long ({len(message):,} characters; at most "
            f"{MAX_MESSAGE_CHARS:,}), so I did not read it and nothing changed. Please send "
            "it in shorter parts."
        )
    return None


def _is_ready(draft: Draft) -> bool:
    return draft.awaiting == "confirm" and not draft.missing()


def asking(draft: Draft) -> Draft:
    """``draft`` noting that its first missing field is what the assistant asks for next."""
    missing = draft.missing()
    return dataclasses.replace(draft, awaiting=_ASKING[missing[0]] if missing else "confirm")


def next_turn(draft: Draft, said: Sequence[str] = ()) -> IntakeTurn:
    """The turn that asks for the first missing field, or shows the card to confirm."""
    missing = draft.missing()
    lead = " ".join(s for s in said if s)
    if not missing:
        draft = dataclasses.replace(draft, awaiting="confirm")
        parts = [lead, draft.card(), CONFIRM_QUESTION]
        return IntakeTurn("\n\n".join(p for p in parts if p), draft, ready=True, confirmed=False)
    reply = "\n\n".join(p for p in (lead, QUESTIONS[missing[0]]) if p)
    return IntakeTurn(reply, asking(draft), ready=False, confirmed=False)


def _same(draft: Draft, said: str) -> IntakeTurn:
    """Nothing changed: say ``said`` and ask again what the draft still needs."""
    if _is_ready(draft):
        return IntakeTurn(f"{said}\n\n{CONFIRM_QUESTION}", draft, ready=True, confirmed=False)
    return next_turn(draft, [said])


def _answer_intent(draft: Draft, intent: Intent) -> IntakeTurn:
    if intent == "reset" or (intent == "no" and draft.awaiting == "confirm"):
        fresh = Draft(language=draft.language)
        return IntakeTurn(
            f"OK, I dropped that task. {GREETING_AGAIN}", fresh, ready=False, confirmed=False
        )
    if intent == "yes" and _is_ready(draft):
        return IntakeTurn("Creating the task…", draft, ready=True, confirmed=True)
    if intent == "yes" and not draft.missing():
        return next_turn(draft, ["Please check the summary first."])
    if intent == "yes":
        return next_turn(draft, ["There is nothing to confirm yet."])
    return _same(draft, "OK.")


def _apply_phone(draft: Draft, reading: Reading, said: list[str]) -> Draft:
    found = reading.phone
    if found is None:
        return draft
    if found.e164 is None:
        said.append(found.error or "That is not a phone number I can dial.")
        if draft.phone:
            said.append(f"I kept {pretty_phone(draft.phone)}.")
        return draft
    valid = {p.e164 for p in reading.phones if p.e164}
    if len(valid) > 1:
        said.append(f"You gave several numbers; I'll call {pretty_phone(found.e164)}.")
    return dataclasses.replace(draft, phone=found.e164)


def _apply_when(draft: Draft, reading: Reading, user_zone: str, said: list[str]) -> Draft:
    when = reading.when
    if when is None:
        return draft
    if when.error:
        said.append(when.error)
        return draft
    return dataclasses.replace(
        draft, at=when.at, at_text=when.text, timing_set=True, at_zone=user_zone
    )


def _apply_context(draft: Draft, addition: str | None, said: list[str]) -> Draft:
    if not addition:
        return draft
    context = f"{draft.context}\n{addition}".strip() if draft.context else addition
    if len(context) > MAX_CONTEXT_CHARS:
        said.append(
            f"The context is full (at most {MAX_CONTEXT_CHARS:,} characters); I left that out."
        )
        return draft
    return dataclasses.replace(draft, context=context)


def apply_reading(draft: Draft, reading: Reading, *, user_zone: str) -> tuple[Draft, list[str]]:
    """``draft`` updated with what ``reading`` says, and the problems to tell the user."""
    said: list[str] = []
    draft = _apply_phone(draft, reading, said)
    draft = _apply_when(draft, reading, user_zone, said)
    if reading.callee_name:
        draft = dataclasses.replace(draft, callee_name=reading.callee_name)
    if reading.objective:
        draft = dataclasses.replace(draft, objective=reading.objective)
    draft = _apply_context(draft, reading.context, said)
    if reading.language:
        draft = dataclasses.replace(draft, language=reading.language)
    if reading.timezone:
        draft = dataclasses.replace(draft, timezone=reading.timezone)
    said.extend(reading.errors)
    return draft, said


def _unanswered(draft: Draft, reading: Reading) -> str:
    """What to say when a message changed nothing."""
    if reading.free_text and draft.awaiting == "phone":
        return "I didn't find a phone number in that."
    if reading.free_text and draft.awaiting == "timing":
        return f"I couldn't read “{reading.free_text[:80]}” as a time."
    return "I didn't catch anything I could use in that."


def rules_turn(
    draft: Draft, message: str, *, now: dt.datetime, user_zone: str, region: str = DEFAULT_REGION
) -> IntakeTurn:
    """One turn of the rule-based dialogue (pure: same input, same turn)."""
    problem = message_problem(message)
    if problem:
        return _same(draft, problem)
    reading = read_message(message, now=now, zone=user_zone, region=region, awaiting=draft.awaiting)
    if reading.intent is not None:
        return _answer_intent(draft, reading.intent)
    placed = with_free_text_placed(
        reading, has_objective=draft.objective is not None, awaiting=draft.awaiting
    )
    updated, said = apply_reading(draft, placed, user_zone=user_zone)
    if updated == draft and not said:
        return _same(draft, _unanswered(draft, placed))
    if not said:
        said = ["Got it."]
    return next_turn(updated, said)


class RulesIntake:
    """The rule-based intake: phone numbers, times and the objective read by rules."""

    def __init__(self, *, region: str = DEFAULT_REGION) -> None:
        self._region = region

    async def respond(
        self,
        draft: Draft,
        history: Sequence[tuple[str, str]],
        message: str,
        *,
        now: dt.datetime,
        user_zone: str,
    ) -> IntakeTurn:
        """The reply to ``message``; the history is not needed (the draft holds the state)."""
        return rules_turn(draft, message, now=now, user_zone=user_zone, region=self._region)


def make_intake(settings: Settings) -> Intake:
    """Gemini with function calling when configured (with the rules as fallback), else rules."""
    rules = RulesIntake(region=default_region(settings))
    key = settings.gemini_api_key.get_secret_value().strip() if settings.gemini_api_key else ""
    if settings.analysis_mode != "gemini" or not key:
        return rules
    from gradio_ui.intake_gemini import GeminiIntake  # noqa: PLC0415 -- the SDK loads only if used

    log.info("chat intake: Gemini %s with function calling", settings.gemini_model)
    return GeminiIntake(settings, fallback=rules)
