"""The small shared state of one call: its phase, how it ends, and what the PBX said about it."""

from __future__ import annotations

import asyncio
import enum
from dataclasses import dataclass, field

from asterisk.ami_results import (
    AmdResult,
    AmdStatus,
    CallAnswered,
    CallEvent,
    CallHungUp,
    CallNotAnswered,
    OriginateUnknown,
)
from db.states import EndReason, TelephonyResult

__all__ = ["Ending", "PbxState", "Phase"]


class Phase(enum.StrEnum):
    """Where a CallActor is (``status()`` reports it to the owner's reconcile)."""

    CREATED = "created"
    DIALING = "dialing"
    CONNECTED = "connected"  # AudioSocket up, conversation under way
    ENDING = "ending"  # goodbye playing / hanging up / reporting
    ENDED = "ended"  # Ended reported; the actor is about to exit


@dataclass(slots=True)
class Ending:
    """How the call ends: what the PBX said and why we (or the callee) ended it."""

    telephony_result: TelephonyResult
    end_reason: EndReason
    originate_reason: int | None = None
    hangup_cause: int | None = None


@dataclass(slots=True)
class PbxState:
    """What the PbxGateway reported about the call, in any order (AMI never promises one)."""

    answered: bool = False
    not_answered: CallNotAnswered | None = None
    hung_up: CallHungUp | None = None
    unknown: bool = False
    amd: AmdResult | None = None
    changed: asyncio.Event = field(default_factory=asyncio.Event)

    def apply(self, event: CallEvent) -> None:
        """Record one event and wake whoever waits on ``changed``."""
        if isinstance(event, CallAnswered):
            self.answered = True
        elif isinstance(event, CallNotAnswered):
            self.not_answered = event
        elif isinstance(event, CallHungUp):
            self.answered = True  # only answered calls end with CallHungUp
            self.hung_up = event
        elif isinstance(event, OriginateUnknown):
            self.unknown = True
        elif isinstance(event, AmdResult):
            self.amd = event
        self.changed.set()

    @property
    def machine(self) -> bool:
        """True when AMD() said an answering machine picked up."""
        return self.amd is not None and self.amd.status is AmdStatus.MACHINE

    async def wait_changed(self, timeout: float) -> None:  # noqa: ASYNC109
        """Wait for the next event (or ``timeout`` seconds); the caller checks the state after."""
        self.changed.clear()  # no await since the caller looked at the state: nothing is missed
        try:
            await asyncio.wait_for(self.changed.wait(), timeout)
        except TimeoutError:
            return
