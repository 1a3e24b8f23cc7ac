"""The simulated PBX: an AMI server on loopback whose callees dial back over AudioSocket.

Client code is the same as against a real Asterisk: it listens on the ``OPENDEEP_AMI_*`` host,
port and credentials by default. The dialed number (found in the Originate's ``Channel``, e.g.
``PJSIP/+14155550100@trunk``) picks the scenario from the world file; numbers not in it are
unroutable. Form and audio rate: ``Application: AudioSocket`` (app form) streams slin 8 kHz, as
the AudioSocket application does; the dialplan form (``Context``/``Exten``) streams at the
scenario's ``rate`` or the world's ``pbx.context_rate`` (24 kHz: the sample dialplan's
``Dial(AudioSocket/…/c(slin24))``). A context whose name ends in ``-amd`` runs ``AMD()`` first
and reports the verdict with ``UserEvent(OpenDeepAMD, …)``, as the sample dialplan does.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import re
import time
from collections import Counter
from pathlib import Path

from asterisk.sim.ami_server import AmiAction, AmiServer, AmiSession, reply
from asterisk.sim.call_flow import CallFlow, SimCall
from asterisk.sim.callee import CallRecord
from asterisk.sim.capture import CapturedMessage
from asterisk.sim.channels import Fields, Leg, OriginateTarget, channel_event
from asterisk.sim.scenarios import Callee, Scenario, World, load_world
from asterisk.sim.speech import SpeechRenderer
from opendeep.settings import get_settings

__all__ = ["SimulatedPbx"]

log = logging.getLogger(__name__)

_NUMBER = re.compile(r"\+?[0-9]{7,15}")
_CALLER_ID = re.compile(r'^\s*"?(?P<name>[^"<]*?)"?\s*<(?P<num>[^>]*)>\s*$')
_TRUE = {"true", "yes", "1", "on"}
_DEFAULT_TIMEOUT_MS = 30000


def dialed_number(channel: str) -> str | None:
    """The E.164 number inside a dial string (``PJSIP/+14155550100@trunk`` → ``+14155550100``)."""
    match = _NUMBER.search(channel.partition("/")[2] or channel)
    if match is None:
        return None
    digits = match.group(0)
    return digits if digits.startswith("+") else f"+{digits}"


def parse_caller_id(text: str | None) -> tuple[str, str]:
    """``"Outbound" <1000>`` → (``1000``, ``Outbound``); missing parts are ``<unknown>``."""
    if not text:
        return "<unknown>", "<unknown>"
    match = _CALLER_ID.match(text)
    if match is None:
        return text.strip(), "<unknown>"
    return match.group("num").strip() or "<unknown>", match.group("name").strip() or "<unknown>"


class SimulatedPbx:
    """An in-process stand-in for Asterisk 22: AMI on loopback plus simulated callees."""

    def __init__(
        self,
        *,
        host: str | None = None,
        port: int | None = None,
        username: str | None = None,
        secret: str | None = None,
        world: World | Path | str | None = None,
        speech_cache: Path | None = None,
    ) -> None:
        if host is None or port is None or username is None or secret is None:
            settings = get_settings()
            host = settings.ami_host if host is None else host
            port = settings.ami_port if port is None else port
            username = settings.ami_user if username is None else username
            secret = settings.ami_secret.get_secret_value() if secret is None else secret
        self.world = world if isinstance(world, World) else load_world(world)
        self._renderer = SpeechRenderer(speech_cache)
        self._ami = AmiServer(
            host=host, port=port, username=username, secret=secret, on_action=self._on_action
        )
        self.originates_received: Counter[str] = Counter()
        """How many Originate actions arrived per ChannelId (a re-sent one would count 2)."""
        self.calls: dict[str, CallRecord] = {}
        """What happened on each call, by ChannelId."""
        self._live: dict[str, SimCall] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._seq = itertools.count(1)
        self._drop_next_originate = False

    # -- lifecycle ---------------------------------------------------------------------------
    @property
    def host(self) -> str:
        """The AMI host."""
        return self._ami.host

    @property
    def ami_port(self) -> int:
        """The AMI port (the real one after :meth:`start` when 0 was asked)."""
        return self._ami.port

    @property
    def speech_engine(self) -> str:
        """``espeak-ng`` or ``synthetic``."""
        return self._renderer.engine

    async def start(self) -> None:
        """Start listening for AMI clients."""
        await self._ami.start()

    async def stop(self) -> None:
        """Hang up every call and stop listening."""
        for call in list(self._live.values()):
            call.interrupt.set()
        tasks = list(self._tasks)
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=2.0)
            for task in pending:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        await self._ami.stop()

    async def restart_ami(self) -> None:
        """Drop every AMI connection and listen again on the same port; calls go on."""
        await self._ami.restart()

    def freeze_ami(self) -> None:
        """Make current AMI connections half-open (no reads, no writes, no close)."""
        self._ami.freeze()

    def drop_connection_on_next_originate(self) -> None:
        """Close the AMI connection right after the next Originate arrives, before replying."""
        self._drop_next_originate = True

    async def wait_call_done(self, call_id: str, within: float) -> CallRecord:
        """Wait until a call has ended in the PBX (its last Hangup was emitted)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within
        while call_id not in self.calls:
            if loop.time() >= deadline:
                raise TimeoutError(f"no Originate for {call_id} arrived")
            await asyncio.sleep(0.01)
        record = self.calls[call_id]
        await asyncio.wait_for(record.done.wait(), max(0.0, deadline - loop.time()))
        return record

    # -- AMI actions ---------------------------------------------------------------------------
    def _on_action(self, session: AmiSession, action: AmiAction) -> Fields | None:
        name = action.name.lower()
        if name == "originate":
            return self._originate(session, action)
        if name == "hangup":
            return self._hangup(action)
        return self._play_dtmf(action)

    def _find(self, channel: str | None) -> SimCall | None:
        if not channel:
            return None
        for call in self._live.values():
            if channel in (call.leg1.name, call.leg2.name):
                return call
        return None

    def _hangup(self, action: AmiAction) -> Fields:
        call = self._find(action.get("Channel"))
        if call is None:
            return reply(action, "Error", "No such channel")
        cause = (action.get("Cause") or "16").strip()
        call.hangup_cause = int(cause) if cause.isdigit() else 16
        call.interrupt.set()
        return reply(action, "Success", "Channel Hungup")

    def _play_dtmf(self, action: AmiAction) -> Fields:
        digit = (action.get("Digit") or "").strip()
        if not digit:
            return reply(action, "Error", "No digit specified")
        call = self._find(action.get("Channel"))
        if call is None:
            return reply(action, "Error", "No such channel")
        call.record.dtmf_via_ami.append(digit[0])
        duration = (action.get("Duration") or "250").strip()
        for event, extra in (("DTMFBegin", []), ("DTMFEnd", [("DurationMs", duration)])):
            self._emit(
                call,
                [
                    *channel_event(event, call.leg1),
                    ("Digit", digit[0]),
                    *extra,
                    ("Direction", "Sent"),
                ],
            )
        return reply(action, "Success", "DTMF successfully queued")

    def _originate(self, session: AmiSession, action: AmiAction) -> Fields | None:
        channel_id = (action.get("ChannelId") or "").strip() or f"{time.time():.6f}"
        self.originates_received[channel_id] += 1
        error = _originate_error(action)
        if error is None and channel_id in self._live:
            error = "Originate failed: ChannelId already in use"
        if error is not None:
            log.info("Originate for %s refused: %s", channel_id, error)
            return reply(action, "Error", error)
        call = self._new_call(channel_id, action)
        self._start(call)
        call.record.ami_log.append(
            CapturedMessage(0.0, tuple(reply(action, "Success", "Originate successfully queued")))
        )
        if self._drop_next_originate:
            self._drop_next_originate = False
            log.info("dropping the AMI connection right after the Originate for %s", channel_id)
            session.abort()
            return None
        return reply(action, "Success", "Originate successfully queued")

    def _new_call(self, channel_id: str, action: AmiAction) -> SimCall:
        dial = (action.get("Channel") or "").strip()
        number = dialed_number(dial)
        scenario = self.world.by_number(number) if number else None
        if scenario is None:
            scenario = Scenario(
                number=number or "+10000000000",
                name="unroutable",
                callee=Callee(behavior="unroutable"),
            )
        application = action.get("Application")
        context_form = application is None
        target = OriginateTarget(
            application=application,
            data=action.get("Data") or "",
            context=action.get("Context") or "",
            exten=action.get("Exten") or "s",
        )
        rate = (scenario.callee.rate or self.world.pbx.context_rate) if context_form else 8000
        timeout_ms = int((action.get("Timeout") or str(_DEFAULT_TIMEOUT_MS)).strip())
        cid_num, cid_name = parse_caller_id(action.get("CallerID"))
        local = f"Local/s@callee-{scenario.name}-{next(self._seq):08x}"
        context = f"callee-{scenario.name}"
        loop = asyncio.get_running_loop()
        record = CallRecord(
            call_id=channel_id,
            number=scenario.number,
            scenario=scenario.name,
            form="context" if context_form else "app",
            originated_at=loop.time(),
            rate=rate,
        )
        self.calls[channel_id] = record
        return SimCall(
            call_id=channel_id,
            action_id=action.get("ActionID") or "",
            dial=dial,
            form=record.form,
            target=target,
            variables=_variables(action),
            cid_num=cid_num,
            cid_name=cid_name,
            timeout=timeout_ms / 1000,
            scenario=scenario,
            leg1=Leg(f"{local};1", channel_id, channel_id, 0, context),
            leg2=Leg(f"{local};2", f"{channel_id}-2", channel_id, 4, context),
            record=record,
        )

    def _start(self, call: SimCall) -> None:
        flow = CallFlow(call, emit=self._emit, options=self.world.pbx, renderer=self._renderer)
        self._live[call.call_id] = call
        task = asyncio.get_running_loop().create_task(flow.run(), name=f"sim-call-{call.call_id}")
        self._tasks.add(task)

        def done(task: asyncio.Task[None]) -> None:
            self._tasks.discard(task)
            self._live.pop(call.call_id, None)
            if not task.cancelled() and task.exception() is not None:
                log.error("simulated call %s failed", call.call_id, exc_info=task.exception())

        task.add_done_callback(done)

    def _emit(self, call: SimCall, fields: Fields) -> None:
        now = asyncio.get_running_loop().time()
        call.record.ami_log.append(
            CapturedMessage(round(now - call.record.originated_at, 6), tuple(fields))
        )
        self._ami.broadcast(fields)


def _variables(action: AmiAction) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    for header in action.get_all("Variable"):
        for item in header.split(","):
            name, sep, value = item.partition("=")
            if sep and name.strip():
                out.append((name.strip(), value))
    return out


def _originate_error(action: AmiAction) -> str | None:
    """Asterisk's refusal message for a malformed Originate, or None."""
    channel = (action.get("Channel") or "").strip()
    timeout = (action.get("Timeout") or str(_DEFAULT_TIMEOUT_MS)).strip()
    application = action.get("Application")
    checks = [
        (
            (action.get("Async") or "").strip().lower() not in _TRUE,
            "The simulated PBX requires Async: true (a synchronous Originate blocks AMI)",
        ),
        (not channel, "Channel not specified"),
        ("/" not in channel, "Invalid channel"),
        (not timeout.isdigit() or not timeout.strip("0"), "Invalid timeout"),
    ]
    if application is not None:
        checks.append(
            (
                application.strip().lower() != "audiosocket",
                f"The simulated PBX only runs AudioSocket, not {application!r}",
            )
        )
    else:
        checks += [
            (
                action.get("Exten") is None or action.get("Context") is None,
                "Originate with 'Exten' requires 'Context' and 'Priority'",
            ),
            (not (action.get("Priority") or "").strip().isdigit(), "Invalid priority"),
        ]
    return next((message for failed, message in checks if failed), None)
