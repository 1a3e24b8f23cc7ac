"""The scripted agent: the ``agent`` table of a scenario, and the choice of what to say next.

An agent table (TOML, under ``[scenario.agent]``)::

    greeting = "Hello, this is an AI assistant calling for Alex Smith."   # or a table (Reply)
    voice = "en-gb"                  # espeak-ng voice of the agent
    turns = [
      { say = "I'd like to move an appointment." },                 # the callee's next line
      { callee = 3, say = "Tuesday works. Goodbye!",
        tool = { name = "end_call", arguments = { reason = "completed" } } },
      { tool_output = "request_user_info", say = "{recipient_message}" },
      { text = '"(?P<answer>[^"]+)"', say = "The number is {answer}." },
      { text = 'pressed\\W+(?P<digits>[0-9*#]+)', say = "You pressed {digits}.", repeat = true },
    ]
    silent = false                   # true: never answers a response.create (a stuck model)
    fallback = { say = "I see." }    # said for a callee line no turn answers (default: nothing)
    session_limit = 3600             # seconds before the session closes with 1001

A turn fires once (``repeat`` lets it fire again) on exactly one trigger: ``callee = k`` (the
callee finished its k-th line; a turn without a trigger takes the next callee line after the
previous such turn), ``tool_output = "name"`` (the client answered that tool; ``match`` filters
the output by regex), or ``text = "regex"`` (a user or system text item matched; named groups
become ``{placeholders}``). Each turn says ``say`` and/or calls ``tool``; ``speed`` (× real time),
``drop_after`` (abort the TCP socket after N audio deltas) and ``hang_after`` (stop sending after
N deltas) shape how the response streams. The first response always opens with the greeting.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from db.states import MODEL_END_REASONS

__all__ = [
    "DEFAULT_SCRIPT",
    "AgentScript",
    "CalleeLineDone",
    "Plan",
    "Reply",
    "ScriptedAgent",
    "TextReceived",
    "ToolCallSpec",
    "ToolOutputReceived",
    "Trigger",
    "Turn",
]

_END_RULE = (
    r"(?i)\b(?:end|finish|wrap up|hang up)\b.{0,40}\bcall\b|\bsay goodbye\b|\bend politely\b"
)


class ToolCallSpec(BaseModel):
    """A function call the agent makes: name and JSON arguments (strings may use placeholders)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1)
    arguments: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _end_reason(self) -> ToolCallSpec:
        reason = self.arguments.get("reason")
        if self.name == "end_call" and reason not in {r.value for r in MODEL_END_REASONS}:
            raise ValueError(f"end_call reason {reason!r} is not one the model may choose")
        return self


class Reply(BaseModel):
    """What one response does: speech and/or a tool call, and how it streams."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    say: str | None = None
    tool: ToolCallSpec | None = None
    speed: float | None = Field(default=None, gt=0)
    drop_after: int | None = Field(default=None, ge=0)
    hang_after: int | None = Field(default=None, ge=0)


class Turn(Reply):
    """A reply and the one trigger that fires it."""

    callee: int | None = Field(default=None, ge=1)
    tool_output: str | None = None
    match: str | None = None
    text: str | None = None
    repeat: bool = False

    @model_validator(mode="after")
    def _one_trigger(self) -> Turn:
        if self.tool_output is not None and self.text is not None:
            raise ValueError("a turn has one trigger: callee, tool_output or text")
        if (self.tool_output is not None or self.text is not None) and self.callee is not None:
            raise ValueError("a turn has one trigger: callee, tool_output or text")
        if self.match is not None and self.tool_output is None:
            raise ValueError("match only applies to tool_output turns")
        for pattern in (self.text, self.match):
            if pattern is not None:
                re.compile(pattern)
        return self

    @property
    def trigger(self) -> Literal["callee", "tool_output", "text"]:
        """Which kind of input fires this turn."""
        if self.tool_output is not None:
            return "tool_output"
        return "text" if self.text is not None else "callee"


class AgentScript(BaseModel):
    """A scenario's ``agent`` table."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    greeting: Reply | None = Reply(
        say="Hello, this is an AI assistant calling on behalf of my client."
    )
    voice: str = "en-gb"
    turns: tuple[Turn, ...] = ()
    fallback: Reply | None = None
    silent: bool = False
    session_limit: float | None = Field(default=None, gt=0)
    objective: str | None = None
    """What the task would ask (documentation for people reading the scenario)."""
    expected_outcome: str | None = None
    """The outcome the analysis should reach (read by tests, ignored by the stand-in)."""

    @field_validator("greeting", "fallback", mode="before")
    @classmethod
    def _text_is_say(cls, value: Any) -> Any:
        return {"say": value} if isinstance(value, str) else value

    @model_validator(mode="after")
    def _number_callee_turns(self) -> AgentScript:
        numbered: list[Turn] = []
        line = 0
        for turn in self.turns:
            if turn.trigger != "callee":
                numbered.append(turn)
                continue
            line = turn.callee if turn.callee is not None else line + 1
            numbered.append(turn.model_copy(update={"callee": line}))
        object.__setattr__(self, "turns", tuple(numbered))
        return self

    def says(self) -> list[str]:
        """Every fixed sentence of the script (to render ahead of need)."""
        replies = [self.greeting, self.fallback, *self.turns]
        return [r.say for r in replies if r is not None and r.say and "{" not in r.say]


DEFAULT_SCRIPT = AgentScript(fallback=Reply(say="I see. Thank you."))
"""The agent of a call no scenario knows (e.g. a real PBX with the simulated voice)."""

_BUILTIN_TURNS = (
    Turn(
        text=_END_RULE,
        say="I'm sorry, I have to end the call now. Thank you for your time. Goodbye!",
        tool=ToolCallSpec(name="end_call", arguments={"reason": "other"}),
        repeat=True,
    ),
)


# -- what happened since the last response ---------------------------------------------------
@dataclass(frozen=True, slots=True)
class CalleeLineDone:
    """The callee finished its ``line``-th line (1-based)."""

    line: int
    text: str


@dataclass(frozen=True, slots=True)
class ToolOutputReceived:
    """The client answered one of the agent's function calls."""

    name: str
    output: str
    arguments: dict[str, Any]


@dataclass(frozen=True, slots=True)
class TextReceived:
    """A text item (user or system), or a response's instructions."""

    role: str
    text: str


Trigger = CalleeLineDone | ToolOutputReceived | TextReceived


@dataclass(slots=True)
class Plan:
    """What one response will do."""

    say: str | None = None
    tools: list[ToolCallSpec] = field(default_factory=list)
    speed: float | None = None
    drop_after: int | None = None
    hang_after: int | None = None
    fired: list[str] = field(default_factory=list)
    """Which script parts produced it (for the per-call record)."""

    @property
    def empty(self) -> bool:
        """Nothing to say and nothing to call."""
        return not self.say and not self.tools

    def add(self, reply: Reply, values: dict[str, Any], label: str) -> None:
        """Append a reply (placeholders filled from ``values``)."""
        if reply.say:
            text = _fill(reply.say, values)
            self.say = f"{self.say} {text}" if self.say else text
        if reply.tool is not None:
            arguments = {k: _fill_value(v, values) for k, v in reply.tool.arguments.items()}
            self.tools.append(ToolCallSpec(name=reply.tool.name, arguments=arguments))
        for name in ("speed", "drop_after", "hang_after"):
            if getattr(self, name) is None:
                setattr(self, name, getattr(reply, name))
        self.fired.append(label)


class _Values(dict[str, Any]):
    def __missing__(self, key: str) -> str:
        return "{" + key + "}"


def _fill(template: str, values: dict[str, Any]) -> str:
    return template.format_map(_Values(values)) if "{" in template else template


def _fill_value(value: Any, values: dict[str, Any]) -> Any:
    return _fill(value, values) if isinstance(value, str) else value


class ScriptedAgent:
    """Decides each response from the script and what happened since the last one."""

    def __init__(self, script: AgentScript) -> None:
        self.script = script
        self._turns = (*script.turns, *_BUILTIN_TURNS)
        self._used: set[int] = set()
        self._pending: list[Trigger] = []
        self._greeted = False

    def notice(self, trigger: Trigger) -> None:
        """Remember an input for the next response."""
        self._pending.append(trigger)

    @property
    def pending(self) -> bool:
        """Whether an input waits for a response."""
        return bool(self._pending)

    def plan(self, instructions: str | None = None) -> Plan | None:
        """The next response's plan, or None when the model is silent (no response at all)."""
        if self.script.silent:
            self._pending.clear()
            return None
        triggers, self._pending = self._pending, []
        if instructions and not triggers and self._greeted:
            # Per-response instructions count only when nothing else explains the response,
            # so a greeting's instructions never fire a text turn.
            triggers = [TextReceived("instructions", instructions)]
        plan = Plan()
        if not self._greeted:
            self._greeted = True
            if self.script.greeting is not None:
                plan.add(self.script.greeting, {}, "greeting")
        for trigger in triggers:
            found = self._find(trigger)
            if found is not None:
                index, values = found
                plan.add(self._turns[index], values, f"turn {index + 1}")
            elif isinstance(trigger, CalleeLineDone) and self.script.fallback is not None:
                plan.add(self.script.fallback, {}, "fallback")
        return plan

    def _find(self, trigger: Trigger) -> tuple[int, dict[str, Any]] | None:
        for index, turn in enumerate(self._turns):
            if index in self._used:
                continue
            values = _match(turn, trigger)
            if values is not None:
                if not turn.repeat:
                    self._used.add(index)
                return index, values
        return None


def _groups(pattern: str | None, text: str) -> dict[str, Any] | None:
    """Named groups of ``pattern`` in ``text`` ({} without a pattern); None if it does not match."""
    if pattern is None:
        return {}
    found = re.search(pattern, text)
    if found is None:
        return None
    return {k: v for k, v in found.groupdict().items() if v is not None}


def _match(turn: Turn, trigger: Trigger) -> dict[str, Any] | None:
    """Placeholder values if ``turn`` fires on ``trigger``, else None."""
    if isinstance(trigger, CalleeLineDone):
        return {"text": trigger.text} if turn.callee == trigger.line else None
    if isinstance(trigger, ToolOutputReceived):
        groups = _groups(turn.match, trigger.output) if turn.tool_output == trigger.name else None
        return None if groups is None else {**trigger.arguments, "output": trigger.output, **groups}
    groups = _groups(turn.text, trigger.text) if turn.text is not None else None
    return None if groups is None else {"text": trigger.text, **groups}
