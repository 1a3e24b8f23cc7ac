"""One simulated call from Originate to the last Hangup, with Asterisk 22's event sequences.

Each outcome replays the order seen in the captures (``tests/fixtures/ami/``):

- setup: ``Newchannel`` ;1 (Down) and ;2 (Ring), ``VarSet`` of the Originate's variables (;1 in
  order, ;2 reversed, as Asterisk does), ``NewCallerid``/``NewConnectedLine`` on both legs,
  ``DialBegin`` (``Dest*`` fields only);
- busy (busy.ami): ``Newstate`` ;2 Busy, ``DialEnd`` BUSY, ``HangupRequest`` ;2 0, ``Hangup`` ;1 0,
  ``SoftHangupRequest`` ;2 16, ``Hangup`` ;2 17, then ``OriginateResponse`` Failure/5;
- congestion, no answer (at exactly the Originate ``Timeout``), reject and unroutable likewise;
- answered: app form ``Newstate`` ;2/;1 Up, ``DialEnd`` ANSWER, ``OriginateResponse`` Success/4
  (answer.ami); dialplan form ``OriginateResponse`` first (answer-ctx.ami);
- the end of an answered call depends on who ended it: our side (hangup frame, EOF, the 2-second
  rule, AudioSocket refused) gives causes 0 in the app form (answer.ami) and 16 through the
  dialplan (answer-ctx.ami); the callee hanging up gives 16 (short.ami).

An AMI ``Hangup`` action is not in the captures; it is modelled as ``HangupRequest`` and
``Hangup`` with the requested cause on both legs (and ``OriginateResponse`` Failure/1 before
answer).
"""

from __future__ import annotations

import asyncio
import logging
import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field

from asterisk.sim.callee import CalleeSession, CallRecord
from asterisk.sim.channels import (
    Fields,
    Leg,
    OriginateTarget,
    channel_event,
    dial_event,
    hangup_event,
    originate_response,
)
from asterisk.sim.scenarios import AmdPlan, PbxOptions, Scenario
from asterisk.sim.speech import SpeechRenderer

__all__ = ["CallFlow", "SimCall"]

log = logging.getLogger(__name__)

_NOSERVER_DELAY = 0.011  # the AudioSocket app gives up this fast on a refused connection
_CONGESTION_LEG_DELAY = 0.012  # the ;2 Hangup (34) trails OriginateResponse in the capture
_UNROUTABLE_DELAY = 0.1
_CID_PRES = "0 (Presentation Allowed, Not Screened)"
_ADDRESS = re.compile(r"^\[?(?P<host>[^\]]+?)\]?:(?P<port>\d+)$")


@dataclass(slots=True)
class SimCall:
    """A live simulated call: the Originate's parameters, both legs and the record."""

    call_id: str
    action_id: str
    dial: str
    form: str
    target: OriginateTarget
    variables: list[tuple[str, str]]
    cid_num: str
    cid_name: str
    timeout: float
    scenario: Scenario
    leg1: Leg
    leg2: Leg
    record: CallRecord
    interrupt: asyncio.Event = field(default_factory=asyncio.Event)
    hangup_cause: int = 16
    session: CalleeSession | None = None

    def audiosocket(self) -> tuple[uuid.UUID, str, int] | None:
        """The UUID and host:port Asterisk would stream to (from Data or AUDIOSOCKET_*)."""
        if self.target.application is not None:
            uuid_text, _, address = self.target.data.partition(",")
        else:
            values = dict(self.variables)
            uuid_text = values.get("AUDIOSOCKET_UUID", "")
            address = values.get("AUDIOSOCKET_ADDR", "")
        match = _ADDRESS.match(address.strip())
        try:
            call_uuid = uuid.UUID(uuid_text.strip())
        except ValueError:
            return None
        if match is None:
            return None
        return call_uuid, match.group("host"), int(match.group("port"))


class CallFlow:
    """Plays one call's events and, once answered, its callee."""

    def __init__(
        self,
        call: SimCall,
        *,
        emit: Callable[[SimCall, Fields], None],
        options: PbxOptions,
        renderer: SpeechRenderer,
    ) -> None:
        self.call = call
        self._emit_fn = emit
        self._options = options
        self._renderer = renderer

    def _emit(self, fields: Fields) -> None:
        self._emit_fn(self.call, fields)

    def _event(self, name: str, leg: Leg, extra: Fields | None = None) -> None:
        self._emit(channel_event(name, leg, extra))

    def _cause(self, name: str, leg: Leg, cause: int) -> None:
        self._event(name, leg, [("Cause", str(cause))])

    def _hangup(self, leg: Leg, cause: int) -> None:
        self._emit(hangup_event(leg, cause))

    def _dial(self, name: str, extra: Fields) -> None:
        self._emit(dial_event(name, self.call.leg1, extra))

    def _response(self, success: bool, reason: int) -> None:
        call = self.call
        self._emit(
            originate_response(
                action_id=call.action_id,
                success=success,
                channel=call.leg1.name if success else call.dial,
                target=call.target,
                reason=reason,
                uniqueid=call.call_id,
                cid_num=call.cid_num,
                cid_name=call.cid_name,
            )
        )

    def _state(self, leg: Leg, state: int) -> None:
        leg.state = state
        self._event("Newstate", leg)

    async def _wait(self, seconds: float) -> bool:
        """Sleep; True if an AMI Hangup interrupted the wait."""
        try:
            await asyncio.wait_for(self.call.interrupt.wait(), seconds)
        except TimeoutError:
            return False
        return True

    # -- the whole call --------------------------------------------------------------------
    async def run(self) -> None:
        """Run the call to its end; the record's ``done`` is set whatever happens."""
        record = self.call.record
        try:
            await self._run()
        finally:
            record.ended_at = asyncio.get_running_loop().time()
            record.done.set()

    async def _run(self) -> None:
        callee = self.call.scenario.callee
        if callee.behavior == "unroutable":
            await asyncio.sleep(_UNROUTABLE_DELAY)
            self._unroutable()
            return
        self._setup()
        if callee.behavior in ("busy", "congestion"):
            await self._refused(callee.behavior, callee.ring)
        elif callee.behavior == "no_answer" or callee.ring >= self.call.timeout:
            self._ringing()
            if await self._wait(self.call.timeout):
                self._cancelled()
            else:
                self._no_answer()
        else:
            await self._ring_then_pick_up(callee.behavior, callee.ring)

    async def _refused(self, behavior: str, delay: float) -> None:
        if await self._wait(delay):
            self._cancelled()
        elif behavior == "busy":
            self._busy()
        else:
            await self._congestion()

    async def _ring_then_pick_up(self, behavior: str, ring: float) -> None:
        if ring > 0:
            self._ringing()
        prepare = None
        if behavior == "answer":  # render the callee's lines while it rings
            self.call.session = self._make_session()
            prepare = asyncio.create_task(self.call.session.prepare(), name="callee-prepare")
        interrupted = await self._wait(ring)
        if prepare is not None:
            await prepare
        if interrupted:
            self._cancelled()
        elif behavior == "reject":
            self._reject()
        else:
            await self._answered()

    def _make_session(self) -> CalleeSession:
        def on_press(digit: str, duration_ms: int | None) -> None:
            if duration_ms is None:
                self._event(
                    "DTMFBegin", self.call.leg1, [("Digit", digit), ("Direction", "Received")]
                )
            else:
                self._event(
                    "DTMFEnd",
                    self.call.leg1,
                    [
                        ("Digit", digit),
                        ("DurationMs", str(duration_ms)),
                        ("Direction", "Received"),
                    ],
                )

        return CalleeSession(
            self.call.record, self.call.scenario.callee, self._options, self._renderer, on_press
        )

    # -- before answer ---------------------------------------------------------------------
    def _setup(self) -> None:
        call, leg1, leg2 = self.call, self.call.leg1, self.call.leg2
        self._event("Newchannel", leg1)
        self._event("Newchannel", leg2)
        for name, value in call.variables:
            self._event("VarSet", leg1, [("Variable", name), ("Value", value)])
        leg1.cid_num, leg1.cid_name = call.cid_num, call.cid_name
        self._event("NewCallerid", leg1, [("CID-CallingPres", _CID_PRES)])
        leg1.connected_num, leg1.connected_name = call.cid_num, call.cid_name
        self._event("NewConnectedLine", leg1)
        for name, value in reversed(call.variables):
            self._event("VarSet", leg2, [("Variable", name), ("Value", value)])
        leg2.cid_num, leg2.cid_name = call.cid_num, call.cid_name
        leg2.connected_num, leg2.connected_name = call.cid_num, call.cid_name
        self._event("NewCallerid", leg2, [("CID-CallingPres", _CID_PRES)])
        self._event("NewConnectedLine", leg2)
        self._dial("DialBegin", [("DialString", call.dial.partition("/")[2] or call.dial)])

    def _ringing(self) -> None:
        self._state(self.call.leg1, 5)
        self._dial("DialState", [("DialStatus", "RINGING")])

    def _busy(self) -> None:
        leg1, leg2 = self.call.leg1, self.call.leg2
        self._state(leg2, 7)
        self._dial("DialEnd", [("DialStatus", "BUSY")])
        self._cause("HangupRequest", leg2, 0)
        self._hangup(leg1, 0)
        self._cause("SoftHangupRequest", leg2, 16)
        self._hangup(leg2, 17)
        self._response(False, 5)
        self.call.record.outcome = "busy"

    async def _congestion(self) -> None:
        leg1, leg2 = self.call.leg1, self.call.leg2
        self._state(leg2, 7)
        self._dial("DialEnd", [("DialStatus", "CONGESTION")])
        self._cause("HangupRequest", leg2, 0)
        self._response(False, 8)
        self._hangup(leg1, 0)
        self._cause("SoftHangupRequest", leg2, 16)
        await asyncio.sleep(_CONGESTION_LEG_DELAY)
        self._hangup(leg2, 34)
        self.call.record.outcome = "congestion"

    def _no_answer(self) -> None:
        leg1, leg2 = self.call.leg1, self.call.leg2
        self._cause("HangupRequest", leg2, 19)
        self._response(False, 3)
        self._hangup(leg1, 19)
        self._cause("SoftHangupRequest", leg2, 16)
        self._hangup(leg2, 19)
        self.call.record.outcome = "no_answer"

    def _reject(self) -> None:
        leg1, leg2 = self.call.leg1, self.call.leg2
        self._cause("SoftHangupRequest", leg2, 16)
        self._cause("HangupRequest", leg1, 21)
        self._hangup(leg2, 21)
        self._dial("DialEnd", [("DialStatus", "NOANSWER")])
        self._hangup(leg1, 21)
        self._response(False, 0)
        self.call.record.outcome = "rejected"

    def _unroutable(self) -> None:
        leg1, leg2, call = self.call.leg1, self.call.leg2, self.call
        self._response(False, 0)
        self._event("Newchannel", leg1)
        self._event("Newchannel", leg2)
        for leg in (leg1, leg2):
            leg.cid_num, leg.cid_name = call.cid_num, call.cid_name
            self._event("NewCallerid", leg, [("CID-CallingPres", _CID_PRES)])
            leg.connected_num, leg.connected_name = call.cid_num, call.cid_name
            self._event("NewConnectedLine", leg)
        self._hangup(leg2, 0)
        self._hangup(leg1, 0)
        call.record.outcome = "failed"

    def _cancelled(self) -> None:
        """An AMI Hangup before answer (not captured; modelled)."""
        leg1, leg2, cause = self.call.leg1, self.call.leg2, self.call.hangup_cause
        self._cause("HangupRequest", leg1, cause)
        self._dial("DialEnd", [("DialStatus", "CANCEL")])
        self._hangup(leg1, cause)
        self._cause("SoftHangupRequest", leg2, 16)
        self._hangup(leg2, cause)
        self._response(False, 1)
        self.call.record.outcome = "cancelled"
        self.call.record.ended_by = "ami"

    # -- answered --------------------------------------------------------------------------
    async def _answered(self) -> None:
        call, leg1, leg2 = self.call, self.call.leg1, self.call.leg2
        if call.form == "context":
            self._response(True, 4)
        leg2.state = leg1.state = 6
        self._event("Newstate", leg2)
        self._event("Newstate", leg1)
        self._dial("DialEnd", [("DialStatus", "ANSWER")])
        if call.form == "app":
            self._response(True, 4)
        else:  # the dialplan now runs on ;1
            leg1.context, leg1.exten = call.target.context, call.target.exten
        call.record.outcome = "answered"
        ended_by = await self._after_answer()
        call.record.ended_by = ended_by
        self._end(ended_by)

    async def _after_answer(self) -> str:
        call = self.call
        if call.form == "context" and call.target.context.endswith("-amd"):
            plan = call.scenario.callee.amd or AmdPlan()
            if await self._wait(plan.after):
                return "ami"
            self._amd(plan)
        if call.scenario.callee.behavior == "noserver":
            await asyncio.sleep(_NOSERVER_DELAY)
            return "noserver"
        target = call.audiosocket()
        if target is None or call.session is None:
            log.warning("call %s: no usable AudioSocket target", call.call_id)
            return "noserver"
        call_uuid, host, port = target
        call.record.audiosocket_uuid = str(call_uuid)
        call.record.audiosocket_address = f"{host}:{port}"
        session = call.session
        watcher = asyncio.create_task(self._end_on_interrupt(session), name="callee-ami-hangup")
        try:
            return await session.run(host, port, call_uuid)
        finally:
            watcher.cancel()

    async def _end_on_interrupt(self, session: CalleeSession) -> None:
        await self.call.interrupt.wait()
        session.end("ami")

    def _amd(self, plan: AmdPlan) -> None:
        leg1 = self.call.leg1
        self._event("VarSet", leg1, [("Variable", "AMDSTATUS"), ("Value", plan.status)])
        self._event("VarSet", leg1, [("Variable", "AMDCAUSE"), ("Value", plan.cause)])
        self._event(
            "UserEvent",
            leg1,
            [
                ("UserEvent", "OpenDeepAMD"),
                ("CallId", self._audiosocket_uuid()),
                ("Status", plan.status),
                ("Cause", plan.cause),
            ],
        )

    def _audiosocket_uuid(self) -> str:
        target = self.call.audiosocket()
        return str(target[0]) if target is not None else ""

    def _end(self, ended_by: str) -> None:
        leg1, leg2 = self.call.leg1, self.call.leg2
        if ended_by == "callee":  # short.ami: the callee's leg hangs up first
            self._cause("SoftHangupRequest", leg2, 16)
            self._cause("HangupRequest", leg1, 16)
            self._hangup(leg2, 16)
            self._hangup(leg1, 16)
        elif ended_by == "ami":
            cause = self.call.hangup_cause
            self._cause("HangupRequest", leg1, cause)
            self._cause("HangupRequest", leg2, cause)
            self._hangup(leg1, cause)
            self._cause("SoftHangupRequest", leg2, 16)
            self._hangup(leg2, cause)
        elif self.call.form == "context":  # answer-ctx.ami: the dialplan hangs up after us
            self._cause("SoftHangupRequest", leg1, 16)
            self._cause("HangupRequest", leg2, 16)
            self._cause("SoftHangupRequest", leg2, 16)
            self._hangup(leg2, 16)
            self._hangup(leg1, 16)
        else:  # answer.ami: the AudioSocket application returned
            self._cause("HangupRequest", leg2, 0)
            self._hangup(leg1, 0)
            self._cause("SoftHangupRequest", leg2, 16)
            self._hangup(leg2, 0)
