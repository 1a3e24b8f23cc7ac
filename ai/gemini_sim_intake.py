"""What the Gemini stand-in answers to a chat-intake request (function calling), like Gemini.

A request that declares ``update_task_draft`` / ``confirm_task`` is answered deterministically:
the latest user message is read by the rules (:mod:`ai.intake_rules`) and the fields found go
back as an ``update_task_draft`` function call — raw, as a model would pass them, so the
intake's own validation is what gets tested; a "yes" to a complete draft becomes a
``confirm_task`` call; a function response gets a short text reply (its errors, the next
question, or the confirmation question). The draft comes from the JSON the intake puts in the
system instruction after :data:`~ai.intake_rules.DRAFT_MARKER`.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass
from typing import Any, Final

from ai.intake_rules import (
    CONFIRM_QUESTION,
    CONFIRM_TASK,
    DRAFT_MARKER,
    QUESTIONS,
    UPDATE_TASK_DRAFT,
    Awaiting,
    Reading,
    read_message,
    with_free_text_placed,
)

__all__ = ["INTAKE_FUNCTIONS", "intake_parts", "is_intake_request"]

INTAKE_FUNCTIONS: Final = frozenset({UPDATE_TASK_DRAFT, CONFIRM_TASK})
_AWAITING: Final[dict[str, Awaiting]] = {
    "phone": "phone",
    "objective": "objective",
    "timing": "timing",
    "confirm": "confirm",
}


def _declared(body: dict[str, Any]) -> set[str]:
    names: set[str] = set()
    for tool in body.get("tools") or []:
        if isinstance(tool, dict):
            for declaration in tool.get("functionDeclarations") or []:
                if isinstance(declaration, dict) and isinstance(declaration.get("name"), str):
                    names.add(declaration["name"])
    return names


def is_intake_request(body: Any) -> bool:
    """Whether ``body`` is a chat-intake request (it declares the intake's functions)."""
    return isinstance(body, dict) and bool(_declared(body) & INTAKE_FUNCTIONS)


def intake_problems(body: dict[str, Any]) -> list[str]:
    """What is wrong with an intake request's tools, as Gemini would refuse it (its contents
    are checked as every request's are)."""
    missing = INTAKE_FUNCTIONS - _declared(body)
    return [f"tools must declare {', '.join(sorted(missing))}"] if missing else []


@dataclass(frozen=True, slots=True)
class _State:
    """The draft as the system instruction describes it."""

    draft: dict[str, Any]
    now: dt.datetime
    zone: str

    @property
    def missing(self) -> list[str]:
        """The required fields the draft still lacks."""
        return [str(m) for m in self.draft.get("missing") or []]

    @property
    def awaiting(self) -> Awaiting | None:
        """What the intake asked the user for last."""
        return _AWAITING.get(str(self.draft.get("awaiting")))

    @property
    def ready(self) -> bool:
        """Whether the summary is shown and only a yes is missing."""
        return self.awaiting == "confirm" and not self.missing


def _state(body: dict[str, Any]) -> _State:
    parts = (body.get("systemInstruction") or {}).get("parts") or []
    system = "\n".join(str(p.get("text", "")) for p in parts if isinstance(p, dict))
    _, found, rest = system.partition(DRAFT_MARKER)
    draft: dict[str, Any] = {}
    if found:
        decoded, _ = json.JSONDecoder().raw_decode(rest.strip())
        draft = decoded if isinstance(decoded, dict) else {}
    try:
        now = dt.datetime.fromisoformat(str(draft.get("now")))
    except ValueError:
        now = dt.datetime.now(dt.UTC)
    if now.tzinfo is None:
        now = now.replace(tzinfo=dt.UTC)
    return _State(draft, now, str(draft.get("user_zone") or "UTC"))


def _question(missing: list[str]) -> str:
    return QUESTIONS.get(missing[0], CONFIRM_QUESTION) if missing else CONFIRM_QUESTION


def _after_functions(responses: list[dict[str, Any]]) -> str:
    """The model's words once the intake answered its function calls."""
    last = responses[-1]
    answer = last.get("response") or {}
    errors = [str(e) for e in answer.get("errors") or []]
    if answer.get("error"):
        errors.append(str(answer["error"]))
    if last.get("name") == CONFIRM_TASK and answer.get("ok"):
        return "Great, I'm creating the task now."
    missing = [str(m) for m in answer.get("missing") or []]
    lead = " ".join(errors) if errors else "Got it."
    return f"{lead} {_question(missing)}"


def _update_args(reading: Reading, state: _State) -> dict[str, str]:
    """The fields a model would pass to ``update_task_draft`` for this message."""
    has_objective = bool(state.draft.get("objective"))
    reading = with_free_text_placed(reading, has_objective=has_objective, awaiting=state.awaiting)
    args: dict[str, str] = {}
    if reading.phone is not None:
        args["phone"] = reading.phone.raw
    if reading.when is not None:
        args["when"] = reading.when.text
    if reading.context:
        args["context"] = " ".join(c for c in (state.draft.get("context"), reading.context) if c)
    for name in ("callee_name", "objective", "language", "timezone"):
        value = getattr(reading, name)
        if value:
            args[name] = value
    return args


def intake_parts(body: dict[str, Any]) -> list[dict[str, Any]]:
    """The ``parts`` of the stand-in's answer to an intake request."""
    state = _state(body)
    last = body["contents"][-1]
    parts = [p for p in last.get("parts") or [] if isinstance(p, dict)]
    responses = [
        p["functionResponse"] for p in parts if isinstance(p.get("functionResponse"), dict)
    ]
    if responses:
        return [{"text": _after_functions(responses)}]
    message = " ".join(str(p["text"]) for p in parts if "text" in p)
    reading = read_message(message, now=state.now, zone=state.zone, awaiting=state.awaiting)
    if reading.intent == "yes" and state.ready:
        return [{"functionCall": {"name": CONFIRM_TASK, "args": {}}}]
    if reading.intent is not None:
        return [{"text": f"OK. {_question(state.missing)}"}]
    args = _update_args(reading, state)
    if args:
        return [{"functionCall": {"name": UPDATE_TASK_DRAFT, "args": args}}]
    return [{"text": f"Sorry, I didn't catch that. {_question(state.missing)}"}]
