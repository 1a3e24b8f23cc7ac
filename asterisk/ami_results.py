"""Typed vocabulary of the AMI client: what we ask Asterisk for and what it tells us about a call.

The string values of :class:`OriginateResult` and :class:`AmdStatus` are the same as the
database's ``TelephonyResult`` and ``AmdVerdict`` (``db/states.py``), so mapping is by value;
``asterisk/`` must not import ``db``.
"""

from __future__ import annotations

import enum
import re
import uuid
from dataclasses import dataclass, field
from typing import Literal

__all__ = [
    "AckStatus",
    "AmdResult",
    "AmdStatus",
    "AmiActionRefusedError",
    "AmiAuthenticationError",
    "AmiConnectionLostError",
    "AmiError",
    "AmiNotConnectedError",
    "AmiTimeoutError",
    "CallAnswered",
    "CallEvent",
    "CallHungUp",
    "CallNotAnswered",
    "OriginateAck",
    "OriginateRequest",
    "OriginateResult",
    "OriginateUnknown",
]

_E164 = re.compile(r"^\+[1-9][0-9]{6,14}$")
_HEADER_SAFE = re.compile(r"^[^\r\n]*$")


class OriginateResult(enum.StrEnum):
    """What became of an Originate (values equal ``db.states.TelephonyResult``)."""

    ANSWERED = "answered"
    NO_ANSWER = "no_answer"
    BUSY = "busy"
    CONGESTION = "congestion"
    REJECTED = "rejected"
    FAILED = "failed"
    UNKNOWN = "unknown"


class AmdStatus(enum.StrEnum):
    """Asterisk ``AMDSTATUS`` values (equal ``db.states.AmdVerdict``)."""

    HUMAN = "HUMAN"
    MACHINE = "MACHINE"
    NOTSURE = "NOTSURE"
    HANGUP = "HANGUP"


class AckStatus(enum.StrEnum):
    """How Asterisk answered the Originate action itself (not the call)."""

    QUEUED = "queued"  # "Originate successfully queued": the result comes later as events
    REFUSED = "refused"  # Response: Error — nothing was dialed
    UNKNOWN = "unknown"  # written, but the connection dropped (or timed out) before the reply


# -- errors ------------------------------------------------------------------------------


class AmiError(Exception):
    """Base class of the AMI client's errors."""


class AmiAuthenticationError(AmiError):
    """Asterisk refused our AMI username/secret (the secret is never part of the message)."""


class AmiNotConnectedError(AmiError):
    """No logged-in AMI connection right now; the action was NOT sent."""


class AmiConnectionLostError(AmiError):
    """The AMI connection dropped while the action was in flight; its effect is unknown."""


class AmiTimeoutError(AmiError, TimeoutError):
    """Asterisk did not answer an action in time."""


class AmiActionRefusedError(AmiError):
    """Asterisk answered an action with ``Response: Error``."""


# -- the request and its acknowledgement --------------------------------------------------


@dataclass(slots=True)
class OriginateRequest:
    """One outbound call to place: who to dial and where Asterisk should stream the audio."""

    call_id: uuid.UUID
    number: str
    audiosocket_host: str
    audiosocket_port: int
    ring_timeout: float
    form: Literal["app", "context"] = "app"
    dial_template: str = "PJSIP/{number}@trunk"
    context: str = "opendeep-outbound"
    exten: str = "s"
    priority: int = 1
    caller_id: str | None = None
    variables: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not _E164.match(self.number):
            raise ValueError(f"number must be E.164 like +14155550101, got {self.number!r}")
        if "{number}" not in self.dial_template:
            raise ValueError("dial_template must contain {number}")
        if not 0 < self.audiosocket_port < 65536:
            raise ValueError(f"bad AudioSocket port {self.audiosocket_port}")
        if self.ring_timeout <= 0:
            raise ValueError("ring_timeout must be positive")
        if self.form not in ("app", "context"):
            raise ValueError(f"form must be 'app' or 'context', got {self.form!r}")
        texts = [self.audiosocket_host, self.dial_template, self.context, self.exten]
        texts += [self.caller_id or "", *self.variables, *self.variables.values()]
        for text in texts:
            if not _HEADER_SAFE.match(text):
                raise ValueError("AMI header values must not contain line breaks")
        if any("=" in key or not key for key in self.variables):
            raise ValueError("variable names must be non-empty and contain no '='")

    @property
    def channel(self) -> str:
        """The dial string Asterisk originates to (``PJSIP/+14155550101@trunk``)."""
        return self.dial_template.format(number=self.number)

    @property
    def audiosocket_address(self) -> str:
        """``host:port`` as AudioSocket expects it (IPv6 hosts in brackets)."""
        host = self.audiosocket_host
        if ":" in host and not host.startswith("["):
            host = f"[{host}]"
        return f"{host}:{self.audiosocket_port}"

    def action_fields(self, action_id: str) -> dict[str, str | list[str]]:
        """The Originate action's headers: always ``Async: true`` and ``ChannelId`` = call id."""
        call = str(self.call_id)
        fields: dict[str, str | list[str]] = {
            "Action": "Originate",
            "ActionID": action_id,
            "Channel": self.channel,
            "ChannelId": call,
            "Timeout": str(max(1, round(self.ring_timeout * 1000))),
            "Async": "true",
        }
        variables = dict(self.variables)
        if self.form == "app":
            fields["Application"] = "AudioSocket"
            fields["Data"] = f"{call},{self.audiosocket_address}"
        else:
            fields["Context"] = self.context
            fields["Exten"] = self.exten
            fields["Priority"] = str(self.priority)
            # ADDR first, then UUID: the order the sample captures show on the first leg.
            variables = {
                "AUDIOSOCKET_ADDR": self.audiosocket_address,
                "AUDIOSOCKET_UUID": call,
                **variables,
            }
        if self.caller_id:
            fields["CallerID"] = self.caller_id
        if variables:
            fields["Variable"] = [f"{k}={v}" for k, v in variables.items()]
        return fields


@dataclass(frozen=True, slots=True)
class OriginateAck:
    """Asterisk's reply to the Originate action; the call's result arrives later as events."""

    call_id: uuid.UUID
    action_id: str
    status: AckStatus
    message: str = ""


# -- call events ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CallAnswered:
    """The callee answered (OriginateResponse Reason 4, or the originated leg went Up)."""

    call_id: uuid.UUID


@dataclass(frozen=True, slots=True)
class CallNotAnswered:
    """The call never got answered. ``reason`` is None when OriginateResponse was never seen."""

    call_id: uuid.UUID
    result: OriginateResult
    reason: int | None
    cause: int


@dataclass(frozen=True, slots=True)
class CallHungUp:
    """An answered call ended; ``cause`` is the most specific non-zero cause among its legs."""

    call_id: uuid.UUID
    cause: int


@dataclass(frozen=True, slots=True)
class AmdResult:
    """The dialplan's AMD() verdict, reported by ``UserEvent(OpenDeepAMD, …)``."""

    call_id: uuid.UUID
    status: AmdStatus
    cause: str


@dataclass(frozen=True, slots=True)
class OriginateUnknown:
    """The AMI connection dropped before the call's fate was known; it was NOT re-sent.

    The call's owner keeps its AudioSocket listener open through ring + connect timeouts: an
    AudioSocket connection means answered; later events for the call may still arrive.
    """

    call_id: uuid.UUID


CallEvent = CallAnswered | CallNotAnswered | CallHungUp | AmdResult | OriginateUnknown
