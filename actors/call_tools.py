"""The four tools the model may call during a call, and the HITL mailbox (DESIGN.md §4).

Every call is validated by :func:`ai.tools.parse_tool_call`; bad arguments are answered to the
model as an error (it can correct itself) and never end the call. Every call is reported to the
owner as a ``ToolCalled`` record with the result the model got.

HITL: ``request_user_info`` reports ``HitlRequested`` (request id made here) and tells the model
to say ``recipient_message`` and keep the callee on the line. The answer arrives through
:meth:`ToolRunner.provide_user_info` (the owner calls ``CallActor.provide_user_info``). When the
clamped timer fires first, the owner gets ``HitlTimedOut`` and is asked to arbitrate
(``resolve_hitl_timeout``): ``TIMED_OUT`` → the model says it will call back and the call ends
with ``user_info_timeout``; ``ANSWERED`` → the answer (which the owner sends) goes in.
"""

from __future__ import annotations

import asyncio
import enum
import json
import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from zoneinfo import ZoneInfo

from ray.exceptions import RayError

from actors.call_bridge import CallBridge
from actors.call_dial import get_pbx
from actors.call_report import CallReporter, OwnerUnavailableError
from actors.call_spec import CallSpec
from ai.events import FunctionCallArgumentsDone
from ai.prompts import HITL_TIMEOUT_INSTRUCTIONS, HITL_WAITING_OUTPUT, user_info_answer
from ai.realtime import RealtimeSession
from ai.tools import (
    EndCallArgs,
    RequestUserInfoArgs,
    RescheduleCallArgs,
    SendDtmfArgs,
    ToolArgs,
    ToolArgumentError,
    parse_tool_call,
    parse_when,
)
from asterisk.codec import SAMPLE_RATES
from asterisk.dtmf import generate
from db.messages import CallMessageKind, DtmfSent, HitlRequested, HitlTimedOut, ToolCalled
from db.shapes import ToolCallRecord, utcnow
from db.states import EndReason, HitlStatus
from opendeep.settings import Settings

__all__ = ["EndMode", "EndRequest", "ToolRunner"]

log = logging.getLogger(__name__)

RESOLVE_WAIT = 3.0  # s to get the owner's verdict on a timed-out question before assuming TIMED_OUT
ANSWER_GRACE = 5.0  # s for the answer to follow an ANSWERED verdict
HITL_END_GRACE = 30.0  # s for the model to say it will call back and end, before we end the call


class EndMode(enum.Enum):
    """How a call is brought to its end."""

    NOW = "now"  # no more audio (callee gone, voicemail without a message)
    AFTER_PLAYOUT = "after_playout"  # let what is queued (the goodbye) play, then hang up
    SAY_GOODBYE = "say_goodbye"  # ask the model for a short goodbye, play it, hang up
    APOLOGY = "apology"  # the Realtime session is gone: play the apology chime, hang up


@dataclass(frozen=True, slots=True)
class EndRequest:
    """Why and how the call should end."""

    reason: EndReason
    mode: EndMode


Respond = Callable[[str | None], None]
"""Ask the model for a response (optional instructions), once the current one is done."""
RequestEnd = Callable[[EndRequest], None]


class _Ask(enum.Enum):
    PENDING = "pending"
    RESOLVING = "resolving"  # the timer fired; asking the owner who won
    ANSWERED = "answered"
    TIMED_OUT = "timed_out"


@dataclass(slots=True)
class _Question:
    request_id: uuid.UUID
    question: str
    state: _Ask = _Ask.PENDING
    answered: asyncio.Event = field(default_factory=asyncio.Event)


class ToolRunner:
    """Runs the model's tool calls for one call; owns the HITL mailbox."""

    def __init__(
        self,
        spec: CallSpec,
        settings: Settings,
        session: RealtimeSession,
        bridge: CallBridge,
        reporter: CallReporter,
        *,
        respond: Respond,
        request_end: RequestEnd,
    ) -> None:
        self._spec = spec
        self._settings = settings
        self._session = session
        self._bridge = bridge
        self._reporter = reporter
        self._respond = respond
        self._request_end = request_end
        self._questions: dict[uuid.UUID, _Question] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self.hitl_timed_out = False

    # -- dispatch ---------------------------------------------------------------------------
    def handle(self, event: FunctionCallArgumentsDone) -> None:
        """One tool call from the model; slow tools run as tracked tasks so audio keeps flowing."""
        try:
            args = parse_tool_call(event.name, event.arguments)
        except ToolArgumentError as exc:
            self._answer(event, str(exc), arguments=_loose_json(event.arguments), error=True)
            return
        if isinstance(args, EndCallArgs):
            self._end_call(event, args)
        elif isinstance(args, RescheduleCallArgs):
            self._reschedule(event, args)
        else:
            self._spawn(self._run_async(event, args), f"tool-{event.name}")

    async def _run_async(self, event: FunctionCallArgumentsDone, args: ToolArgs) -> None:
        if isinstance(args, SendDtmfArgs):
            await self._send_dtmf(event, args)
        elif isinstance(args, RequestUserInfoArgs):
            self._request_user_info(event, args)

    def _answer(
        self,
        event: FunctionCallArgumentsDone,
        output: str,
        *,
        arguments: dict[str, Any],
        result: str | None = None,
        error: bool = False,
        respond: bool = True,
        instructions: str | None = None,
    ) -> None:
        """Give the model the tool's output and report the call to the owner."""
        if error:
            output = f"error: {output}"
            log.info("call %s: tool %s refused: %s", self._spec.call_id, event.name, output)
        self._session.send_function_output(event.call_id, output, respond=False)
        if respond:
            self._respond(instructions)
        record = ToolCallRecord(
            name=event.name, arguments=arguments, result=result or output, at=utcnow()
        )
        self._reporter.report(CallMessageKind.TOOL_CALL, ToolCalled(record=record))

    # -- end_call -----------------------------------------------------------------------------
    def _end_call(self, event: FunctionCallArgumentsDone, args: EndCallArgs) -> None:
        reason = EndReason.USER_INFO_TIMEOUT if self.hitl_timed_out else args.reason
        self._bridge.protect_active()  # the goodbye plays in full, whatever the callee does
        self._answer(
            event,
            "The call is ending.",
            arguments=args.model_dump(mode="json"),
            result=f"ending: {reason.value}",
            respond=False,
        )
        self._request_end(EndRequest(reason, EndMode.AFTER_PLAYOUT))

    # -- send_dtmf ------------------------------------------------------------------------------
    async def _send_dtmf(self, event: FunctionCallArgumentsDone, args: SendDtmfArgs) -> None:
        digits = args.digits
        if self._settings.dtmf_mode == "ami":
            sent = await self._dtmf_over_ami(digits)
            if sent < len(digits):
                self._answer(
                    event,
                    f"only {sent} of {len(digits)} keys could be sent; try again",
                    arguments=args.model_dump(mode="json"),
                    error=True,
                )
                return
        else:
            rate = SAMPLE_RATES[self._bridge.kind]
            self._bridge.play_tones(generate(digits, rate=rate).astype("<i2").tobytes())
        self._reporter.report(CallMessageKind.DTMF_SENT, DtmfSent(digits=digits, at=utcnow()))
        self._answer(
            event,
            f"Pressed {digits}. Wait quietly for the menu or a person to speak.",
            arguments=args.model_dump(mode="json"),
        )

    async def _dtmf_over_ami(self, digits: str) -> int:
        try:
            pbx = await get_pbx(self._spec.namespace)
            sent: int = await pbx.play_dtmf.remote(self._spec.call_id, digits)
        except (ValueError, RayError) as exc:
            log.warning("call %s: PlayDTMF failed: %s", self._spec.call_id, exc)
            return 0
        return sent

    # -- reschedule_call ---------------------------------------------------------------------
    def _reschedule(self, event: FunctionCallArgumentsDone, args: RescheduleCallArgs) -> None:
        brief = self._spec.brief
        language = brief.language.split("-", 1)[0].lower()
        languages = (language,) if language == "en" else (language, "en")
        arguments = args.model_dump(mode="json")
        try:
            when = parse_when(args.when, zone=brief.timezone, now=utcnow(), languages=languages)
        except (ToolArgumentError, ValueError) as exc:
            self._answer(event, str(exc), arguments=arguments, error=True)
            return
        local = when.astimezone(ZoneInfo(brief.timezone))
        result = json.dumps({"callback_at": when.isoformat(), "reason": args.reason})
        self._answer(
            event,
            f"Noted: we will call back on {local:%A %Y-%m-%d at %H:%M} (the callee's time). "
            "Confirm this time to the callee, say goodbye, then call end_call with reason "
            "callback_requested.",
            arguments=arguments,
            result=result,
        )

    # -- request_user_info and the mailbox ----------------------------------------------------
    def _request_user_info(
        self, event: FunctionCallArgumentsDone, args: RequestUserInfoArgs
    ) -> None:
        request_id = uuid.uuid4()
        timeout = self._settings.clamp_hitl_timeout(args.timeout_seconds)
        question = self._questions[request_id] = _Question(request_id, args.question)
        self._reporter.report(
            CallMessageKind.HITL_REQUESTED,
            HitlRequested(
                request_id=request_id,
                question=args.question,
                recipient_message=args.recipient_message,
                timeout_seconds=timeout,
                at=utcnow(),
            ),
        )
        self._answer(
            event,
            HITL_WAITING_OUTPUT,
            arguments=args.model_dump(mode="json"),
            result=json.dumps({"request_id": str(request_id), "timeout_seconds": timeout}),
        )
        self._spawn(self._hitl_timer(question, timeout), f"hitl-timer-{request_id}")

    def provide_user_info(self, request_id: str, answer: str) -> bool:
        """The creator's answer: into the conversation if the question still waits for it."""
        try:
            question = self._questions.get(uuid.UUID(request_id))
        except ValueError:
            return False
        if question is None or question.state in (_Ask.ANSWERED, _Ask.TIMED_OUT):
            return False
        question.state = _Ask.ANSWERED
        question.answered.set()
        text = user_info_answer(self._spec.brief, question.question, answer)
        self._session.add_user_text(text, respond=False)
        self._respond(None)
        log.info("call %s: answer to %s injected", self._spec.call_id, request_id)
        return True

    async def _hitl_timer(self, question: _Question, timeout: float) -> None:  # noqa: ASYNC109
        try:
            await asyncio.wait_for(question.answered.wait(), timeout)
            return  # answered in time
        except TimeoutError:
            pass
        question.state = _Ask.RESOLVING
        message = self._reporter.report(
            CallMessageKind.HITL_TIMED_OUT,
            HitlTimedOut(request_id=question.request_id, at=utcnow()),
        )
        verdict = await self._verdict(question, message.seq)
        if verdict is HitlStatus.ANSWERED and not question.answered.is_set():
            try:  # the owner won ANSWERED and sends the answer through provide_user_info
                await asyncio.wait_for(question.answered.wait(), ANSWER_GRACE)
            except TimeoutError:
                log.warning("call %s: ANSWERED but no answer came", self._spec.call_id)
        if question.answered.is_set():
            return  # the answer went in (during the wait, or while we asked)
        question.state = _Ask.TIMED_OUT
        self.hitl_timed_out = True
        self._respond(HITL_TIMEOUT_INSTRUCTIONS)
        await asyncio.sleep(HITL_END_GRACE)  # the model should have ended the call by now
        self._request_end(EndRequest(EndReason.USER_INFO_TIMEOUT, EndMode.AFTER_PLAYOUT))

    async def _verdict(self, question: _Question, seq: int) -> HitlStatus:
        """The owner's arbitration; TIMED_OUT when it cannot answer in time (the call goes on)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + RESOLVE_WAIT
        # The owner must have the HitlTimedOut (and the request before it) before it can decide.
        await self._reporter.wait_delivered(seq, RESOLVE_WAIT)
        try:
            raw = await self._reporter.ask(
                "resolve_hitl_timeout",
                str(question.request_id),
                timeout=max(0.5, deadline - loop.time()),
            )
            return HitlStatus(raw)
        except (OwnerUnavailableError, ValueError) as exc:
            log.warning("call %s: no HITL verdict (%s); timing out", self._spec.call_id, exc)
            return HitlStatus.TIMED_OUT

    def on_call_ending(self) -> None:
        """The call ends with questions still open: each is reported timed out (DESIGN.md §2)."""
        for question in self._questions.values():
            if question.state is _Ask.PENDING:
                question.state = _Ask.TIMED_OUT
                self._reporter.report(
                    CallMessageKind.HITL_TIMED_OUT,
                    HitlTimedOut(request_id=question.request_id, at=utcnow()),
                )

    @property
    def open_questions(self) -> int:
        """Questions still waiting for an answer."""
        return sum(q.state in (_Ask.PENDING, _Ask.RESOLVING) for q in self._questions.values())

    # -- tasks ------------------------------------------------------------------------------------
    def _spawn(self, coro: Any, name: str) -> None:
        task = asyncio.get_running_loop().create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and (exc := task.exception()) is not None:
            log.error("call %s: %s failed", self._spec.call_id, task.get_name(), exc_info=exc)

    async def close(self) -> None:
        """Stop timers and tool tasks."""
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks)


def _loose_json(text: str) -> dict[str, Any]:
    """Arguments as a dict for the record, whatever the model sent."""
    try:
        value = json.loads(text)
    except ValueError:
        return {"raw": text[:500]}
    return value if isinstance(value, dict) else {"raw": text[:500]}
