"""Turn raw AMI events into typed call events, whatever order Asterisk sends them in.

Pure logic, no sockets: :class:`CallRouter` is fed events (and the time) and returns the typed
events to hand on. Facts it relies on (DESIGN.md §5 and the Asterisk 22 captures):

- every leg of an originated call carries ``Linkedid`` = our ``ChannelId``; the first leg's
  ``Uniqueid`` is ``ChannelId`` and a Local channel's second leg is ``<ChannelId>-2``;
- ``OriginateResponse`` carries the Originate's ``ActionID`` and ``Reason`` (4 answered,
  3 no answer, 5 busy, 8 congestion, 0 failed/rejected, 1 hung up before answer);
- leg ``Hangup`` events may come before or after ``OriginateResponse`` (busy: before; congestion:
  the 34 comes ~13 ms after; no such context: the legs appear only after it).

Settling rule: an unanswered call is reported once ``OriginateResponse`` was seen AND every leg
seen or implied (a Local ``;1`` implies its ``;2``) has hung up, or ``settle_grace`` after
``OriginateResponse`` (late or absent legs). An answered call ends when its first leg and all the
others have hung up, or ``settle_grace`` after its first leg did. Legs that hang up with no
``OriginateResponse`` (it was lost in an AMI outage) settle from their causes alone after
``orphan_wait``; any event showing our first leg ``Up`` (even its ``Hangup``) proves the call was
answered.
"""

from __future__ import annotations

import enum
import logging
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from asterisk.ami_results import (
    AmdResult,
    AmdStatus,
    CallAnswered,
    CallEvent,
    CallHungUp,
    CallNotAnswered,
    OriginateResult,
    OriginateUnknown,
)

__all__ = ["AMD_USER_EVENT", "CallRouter", "classify", "most_specific_cause"]

log = logging.getLogger(__name__)

AMD_USER_EVENT = "OpenDeepAMD"
"""``UserEvent`` name the sample dialplan uses to report ``AMD()``'s verdict."""

STATE_UP = "6"
REASON_ANSWERED = 4

# Q.850 causes that say more than "something ended" about an unanswered call.
_CAUSE_RESULT: Mapping[int, OriginateResult] = {
    17: OriginateResult.BUSY,
    18: OriginateResult.NO_ANSWER,  # no user responding
    19: OriginateResult.NO_ANSWER,  # user alerting, no answer
    20: OriginateResult.NO_ANSWER,  # subscriber absent
    21: OriginateResult.REJECTED,
    34: OriginateResult.CONGESTION,  # circuit/channel congestion
    38: OriginateResult.CONGESTION,  # network out of order
    41: OriginateResult.CONGESTION,  # temporary failure
    42: OriginateResult.CONGESTION,  # switching equipment congestion
}
_REASON_RESULT: Mapping[int, OriginateResult] = {
    3: OriginateResult.NO_ANSWER,
    5: OriginateResult.BUSY,
    8: OriginateResult.CONGESTION,
}
_CAUSE_NORMAL = 16
_CAUSE_REJECTED = 21


def most_specific_cause(causes: Iterable[int]) -> int:
    """The most telling cause: any non-zero cause other than 16 beats 16, which beats 0.

    Ties go to the later leg in the given order (callers list the originated leg first, so the
    far end's cause wins: a busy Local call says 0 on ``;1`` and 17 on ``;2``).
    """
    best, best_rank = 0, -1
    for cause in causes:
        rank = 0 if cause == 0 else 1 if cause == _CAUSE_NORMAL else 2
        if rank >= best_rank and cause != 0:
            best, best_rank = cause, rank
    return best


def classify(reason: int | None, causes: list[int]) -> tuple[OriginateResult, int]:
    """Map an unanswered call's ``Reason`` (None if never seen) and leg causes to a result.

    Reason 0 is rejected when any leg says 21, else failed (DESIGN.md §5). Reason 1 ("hung up
    before answer") and a missing Reason are judged by the cause: 17 busy, 18-20 no answer,
    21 rejected, 34/38/41/42 congestion, anything else failed.
    """
    cause = most_specific_cause(causes)
    if reason in _REASON_RESULT:
        return _REASON_RESULT[reason], cause  # type: ignore[index]
    if reason == 0:
        rejected = _CAUSE_REJECTED in causes
        return (OriginateResult.REJECTED if rejected else OriginateResult.FAILED), cause
    if reason in (1, None):
        return _CAUSE_RESULT.get(cause, OriginateResult.FAILED), cause
    return OriginateResult.FAILED, cause


class _Phase(enum.Enum):
    DIALING = "dialing"
    ANSWERED = "answered"
    DONE = "done"


@dataclass(slots=True)
class _Leg:
    uniqueid: str
    channel: str = ""
    cause: int | None = None

    @property
    def hung_up(self) -> bool:
        return self.cause is not None


@dataclass(slots=True)
class _Call:
    call_id: uuid.UUID
    key: str
    action_id: str
    expect_by: float | None
    last_activity: float
    legs: dict[str, _Leg] = field(default_factory=dict)
    phase: _Phase = _Phase.DIALING
    reason: int | None = None
    response_seen: bool = False
    unknown_reported: bool = False
    answer_sent: bool = False
    deadline: float | None = None
    done_at: float | None = None

    def leg(self, uniqueid: str, channel: str) -> _Leg:
        leg = self.legs.get(uniqueid)
        if leg is None:
            leg = self.legs[uniqueid] = _Leg(uniqueid, channel)
        elif channel and not leg.channel:
            leg.channel = channel
        return leg

    @property
    def primary(self) -> _Leg | None:
        return self.legs.get(self.key)

    def causes(self) -> list[int]:
        ordered = sorted(self.legs.values(), key=lambda leg: leg.uniqueid != self.key)
        return [leg.cause for leg in ordered if leg.cause is not None]

    def all_legs_down(self) -> bool:
        """Every leg seen, and every leg implied by what was seen, has hung up.

        Our first leg (Uniqueid = ChannelId) is always implied, and a Local channel's ``;1``
        implies its ``;2`` (``<ChannelId>-2``): a shuffled busy call must wait for the 17.
        """
        if not self.legs or self.key not in self.legs:
            return False
        if self.legs[self.key].channel.endswith(";1") and f"{self.key}-2" not in self.legs:
            return False
        return all(leg.hung_up for leg in self.legs.values())


def _text(event: Mapping[str, Any], name: str) -> str:
    value = event.get(name, "")
    if isinstance(value, list):  # a repeated header: the last one wins
        value = value[-1] if value else ""
    return str(value)


def _int(text: str) -> int | None:
    try:
        return int(text.strip())
    except ValueError:
        return None


class CallRouter:
    """Collects each tracked call's AMI events and emits typed events once a fact is settled."""

    def __init__(
        self,
        *,
        settle_grace: float = 1.0,
        orphan_wait: float = 3.0,
        linger: float = 30.0,
        unknown_ttl: float = 6 * 3600.0,
    ) -> None:
        self._settle_grace = settle_grace
        self._orphan_wait = orphan_wait
        self._linger = linger
        self._unknown_ttl = unknown_ttl
        self._calls: dict[str, _Call] = {}
        self._by_action: dict[str, str] = {}

    # -- bookkeeping ------------------------------------------------------------------------
    def track(
        self, call_id: uuid.UUID, action_id: str, now: float, expect_by: float | None = None
    ) -> None:
        """Start collecting events for a call before its Originate is written.

        ``expect_by``: if nothing settled the call by then, report it unknown (never hang).
        """
        key = str(call_id)
        if key in self._calls:
            raise ValueError(f"call {key} is already tracked")
        self._calls[key] = _Call(call_id, key, action_id, expect_by, now)
        self._by_action[action_id] = key

    def forget(self, call_id: uuid.UUID) -> None:
        """Stop tracking a call (e.g. its Originate was refused, or its owner is done)."""
        call = self._calls.pop(str(call_id), None)
        if call is not None:
            self._by_action.pop(call.action_id, None)

    def __contains__(self, call_id: object) -> bool:
        return str(call_id) in self._calls

    def __len__(self) -> int:
        return len(self._calls)

    def channel_of(self, call_id: uuid.UUID) -> str | None:
        """The name of the call's originated channel (``PJSIP/trunk-00000001``), once seen."""
        call = self._calls.get(str(call_id))
        primary = call.primary if call is not None else None
        return primary.channel if primary is not None and primary.channel else None

    def mark_unknown(self, call_id: uuid.UUID) -> list[CallEvent]:
        """The Originate's own reply was lost: report the call unknown (once) and keep listening."""
        call = self._calls.get(str(call_id))
        if call is None or call.phase is not _Phase.DIALING or call.response_seen:
            return []
        return self._report_unknown(call)

    def connection_lost(self) -> list[CallEvent]:
        """The AMI connection dropped: every call still waiting for OriginateResponse is unknown."""
        out: list[CallEvent] = []
        for call in self._calls.values():
            if call.phase is _Phase.DIALING and not call.response_seen:
                out += self._report_unknown(call)
        return out

    def _report_unknown(self, call: _Call) -> list[CallEvent]:
        if call.unknown_reported:
            return []
        call.unknown_reported = True
        return [OriginateUnknown(call.call_id)]

    # -- events -----------------------------------------------------------------------------
    def feed(self, event: Mapping[str, Any], now: float) -> list[CallEvent]:
        """Take one AMI event; return the typed events it settles (often none)."""
        ev = {str(k).lower(): v for k, v in event.items()}
        name = _text(ev, "event")
        call = self._route(ev, name)
        if call is None:
            return []
        call.last_activity = now
        if name == "UserEvent":  # a verdict is worth passing on even after the call settled
            return self._on_user_event(call, ev)
        if call.phase is _Phase.DONE:
            return []
        if name == "OriginateResponse":
            self._on_originate_response(call, ev)
        else:
            self._on_channel_event(call, ev, name)
        return self._evaluate(call, now)

    def _route(self, ev: Mapping[str, Any], name: str) -> _Call | None:
        for fname in ("linkedid", "destlinkedid"):
            call = self._calls.get(_text(ev, fname))
            if call is not None:
                return call
        if name == "OriginateResponse":
            key = self._by_action.get(_text(ev, "actionid"))
            if key is not None:
                return self._calls.get(key)
        if name == "UserEvent" and _text(ev, "userevent") == AMD_USER_EVENT:
            call = self._calls.get(_text(ev, "callid").strip())
            if call is not None:
                return call
        for fname in ("uniqueid", "destuniqueid"):
            value = _text(ev, fname)
            if not value:
                continue
            call = self._calls.get(value) or self._calls.get(value.rpartition("-")[0])
            if call is not None:
                return call
        return None

    def _on_originate_response(self, call: _Call, ev: Mapping[str, Any]) -> None:
        call.response_seen = True
        call.reason = _int(_text(ev, "reason"))
        if _text(ev, "response") == "Success" or call.reason == REASON_ANSWERED:
            call.phase = _Phase.ANSWERED

    def _on_channel_event(self, call: _Call, ev: Mapping[str, Any], name: str) -> None:
        dest = name.startswith("Dial")
        uniqueid = _text(ev, "destuniqueid" if dest else "uniqueid")
        if not uniqueid:
            return
        channel = _text(ev, "destchannel" if dest else "channel")
        leg = call.leg(uniqueid, channel)
        state = _text(ev, "destchannelstate" if dest else "channelstate")
        if state == STATE_UP and uniqueid == call.key:
            call.phase = _Phase.ANSWERED  # our originated leg is Up: answered, whatever else says
        if name == "Hangup":
            leg.cause = _int(_text(ev, "cause")) or 0

    def _on_user_event(self, call: _Call, ev: Mapping[str, Any]) -> list[CallEvent]:
        if _text(ev, "userevent") != AMD_USER_EVENT:
            return []
        raw = _text(ev, "status").strip().upper()
        try:
            status = AmdStatus(raw)
        except ValueError:
            log.warning(
                "AMD status %r not understood for call %s; treating as NOTSURE", raw, call.key
            )
            status = AmdStatus.NOTSURE
        return [AmdResult(call.call_id, status, _text(ev, "cause").strip())]

    # -- settling ---------------------------------------------------------------------------
    def _evaluate(self, call: _Call, now: float) -> list[CallEvent]:
        out: list[CallEvent] = []
        if call.phase is _Phase.ANSWERED:
            out += self._announce_answer(call)
            primary = call.primary
            if primary is not None and primary.hung_up:
                if call.all_legs_down():
                    out += self._finish(call, now)
                elif call.deadline is None:
                    call.deadline = now + self._settle_grace
            return out
        if call.response_seen:
            if call.all_legs_down():
                out += self._finish(call, now)
            elif call.deadline is None:
                call.deadline = now + self._settle_grace
        elif call.all_legs_down() and call.deadline is None:
            call.deadline = now + self._orphan_wait
        return out

    def _announce_answer(self, call: _Call) -> list[CallEvent]:
        if call.answer_sent:
            return []
        call.answer_sent = True
        return [CallAnswered(call.call_id)]

    def _finish(self, call: _Call, now: float) -> list[CallEvent]:
        call.deadline = None
        call.done_at = now
        causes = call.causes()
        if call.phase is _Phase.ANSWERED:
            out = self._announce_answer(call)
            call.phase = _Phase.DONE
            return [*out, CallHungUp(call.call_id, most_specific_cause(causes))]
        call.phase = _Phase.DONE
        result, cause = classify(call.reason if call.response_seen else None, causes)
        return [CallNotAnswered(call.call_id, result, call.reason, cause)]

    def poll(self, now: float) -> list[CallEvent]:
        """Settle calls whose grace has run out, time out silent ones, purge old records."""
        out: list[CallEvent] = []
        for call in list(self._calls.values()):
            if call.phase is _Phase.DONE:
                if call.done_at is not None and now - call.done_at >= self._linger:
                    self._drop(call)
                continue
            if call.deadline is not None and now >= call.deadline:
                out += self._finish(call, now)
            elif call.phase is _Phase.DIALING and not call.response_seen:
                if call.expect_by is not None and now >= call.expect_by:
                    out += self._report_unknown(call)
                if call.unknown_reported and now - call.last_activity >= self._unknown_ttl:
                    log.info(
                        "dropping call %s: unknown and silent for %.0f s",
                        call.key,
                        now - call.last_activity,
                    )
                    self._drop(call)
            elif now - call.last_activity >= self._unknown_ttl:
                self._drop(call)  # answered, but its hangup was lost in an AMI outage
        return out

    def next_deadline(self) -> float | None:
        """The earliest time :meth:`poll` has something to do (None: nothing pending)."""
        times = [c.deadline for c in self._calls.values() if c.deadline is not None]
        times += [
            c.expect_by
            for c in self._calls.values()
            if c.expect_by is not None and c.phase is _Phase.DIALING and not c.unknown_reported
        ]
        return min(times) if times else None

    def _drop(self, call: _Call) -> None:
        self._calls.pop(call.key, None)
        self._by_action.pop(call.action_id, None)
