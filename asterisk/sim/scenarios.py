"""The simulated world's scenario file: who answers which number, and how.

One TOML file describes every simulated callee, keyed by the dialed number (E.164). Each scenario
has a ``callee`` table (read by the simulated PBX) and a free-form ``agent`` table (read by the
Realtime stand-in). The default world is ``asterisk/sim/scenarios.toml``; users may pass their own.

A callee's ``script`` is a list of steps, each doing exactly one thing::

    { say = "Hello?" }                      speak a line (cut_after = 1.2 stops it early)
    { pause = 1.5 }                         send silence for 1.5 s
    { listen = 8.0 }                        wait until the agent spoke and fell silent (max 8 s)
    { wait_dtmf = "1", timeout = 10.0 }     wait for these DTMF tones in the agent's audio
    { press = "123#" }                      press keys (AudioSocket DTMF frames + AMI DTMF events)
    { beep = 0.5 }                          a 1 kHz beep (voicemail)
    { hangup = true }                       the callee hangs up
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

__all__ = [
    "DEFAULT_WORLD_PATH",
    "AmdPlan",
    "Callee",
    "PbxOptions",
    "Scenario",
    "Step",
    "World",
    "load_world",
]

DEFAULT_WORLD_PATH = Path(__file__).with_name("scenarios.toml")
_E164 = re.compile(r"^\+[1-9][0-9]{6,14}$")

Behavior = Literal["answer", "busy", "no_answer", "congestion", "reject", "unroutable", "noserver"]
"""What the far end does with the call (``noserver``: answers, but AudioSocket is refused)."""

_ACTIONS = ("say", "pause", "listen", "wait_dtmf", "press", "beep", "hangup")


class Step(BaseModel):
    """One step of a callee's script; exactly one action key is set."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    say: str | None = None
    cut_after: float | None = Field(default=None, gt=0)
    pause: float | None = Field(default=None, ge=0)
    listen: float | None = Field(default=None, gt=0)
    wait_dtmf: str | None = None
    timeout: float = Field(default=10.0, gt=0)
    on_timeout: Literal["hangup", "continue"] = "hangup"
    press: str | None = None
    beep: float | None = Field(default=None, gt=0)
    hangup: bool = False

    @model_validator(mode="after")
    def _one_action(self) -> Step:
        chosen = [name for name in _ACTIONS if getattr(self, name) not in (None, False)]
        if len(chosen) != 1:
            raise ValueError(f"a step does exactly one of {_ACTIONS}, got {chosen or 'none'}")
        if self.cut_after is not None and self.say is None:
            raise ValueError("cut_after only applies to say")
        for digits in (self.wait_dtmf, self.press):
            if digits is not None and not re.fullmatch(r"[0-9*#A-D]+", digits):
                raise ValueError(f"not DTMF digits: {digits!r}")
        return self

    @property
    def action(self) -> str:
        """The name of the one action this step performs."""
        return next(name for name in _ACTIONS if getattr(self, name) not in (None, False))


class AmdPlan(BaseModel):
    """What the dialplan's AMD() concludes (only when the Originate used an ``-amd`` context)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    status: Literal["HUMAN", "MACHINE", "NOTSURE", "HANGUP"] = "HUMAN"
    cause: str = "HUMAN-1-1"
    after: float = Field(default=1.0, ge=0)


class Callee(BaseModel):
    """The far end of a simulated call."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    behavior: Behavior = "answer"
    ring: float = Field(default=0.5, ge=0)
    silent: bool = False
    rate: Literal[8000, 24000] | None = None
    voice: str = "en-us"
    amd: AmdPlan | None = None
    script: tuple[Step, ...] = ()
    after_script: Literal["hold", "hangup"] = "hold"
    max_hold: float = Field(default=300.0, gt=0)


class Scenario(BaseModel):
    """One simulated number: its callee (for the PBX) and its agent table (for the AI stand-in)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    number: str
    name: str
    description: str = ""
    callee: Callee = Callee()
    agent: dict[str, Any] = Field(default_factory=dict)

    @field_validator("number")
    @classmethod
    def _e164(cls, value: str) -> str:
        compact = re.sub(r"[\s().-]", "", value)
        if not _E164.match(compact):
            raise ValueError(f"scenario number must be E.164 (+14155550101), got {value!r}")
        return compact


class PbxOptions(BaseModel):
    """How the simulated PBX itself behaves."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    silence_hangup: float = Field(default=2.0, gt=0)
    """Asterisk's AudioSocket rule: no frame either way for this long closes the socket."""
    context_rate: Literal[8000, 24000] = 24000
    """AudioSocket rate of the dialplan form (the sample dialplan uses c(slin24))."""
    connect_timeout: float = Field(default=2.0, gt=0)
    """How long the PBX tries to reach the AudioSocket address before giving up (noserver)."""


class World(BaseModel):
    """The whole simulated world: PBX options and every scenario."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    pbx: PbxOptions = PbxOptions()
    scenario: tuple[Scenario, ...] = ()

    @model_validator(mode="after")
    def _unique(self) -> World:
        seen: set[str] = set()
        for item in self.scenario:
            if item.number in seen:
                raise ValueError(f"number {item.number} has two scenarios")
            seen.add(item.number)
        return self

    def by_number(self, number: str) -> Scenario | None:
        """The scenario for a dialed number, or None."""
        return next((s for s in self.scenario if s.number == number), None)

    def by_name(self, name: str) -> Scenario:
        """The scenario with this name (KeyError if none)."""
        for item in self.scenario:
            if item.name == name:
                return item
        raise KeyError(name)


def load_world(path: Path | str | None = None) -> World:
    """Read a scenario file (TOML); the built-in world when ``path`` is None."""
    source = Path(path) if path is not None else DEFAULT_WORLD_PATH
    with source.open("rb") as fh:
        data = tomllib.load(fh)
    return World.model_validate(data)
