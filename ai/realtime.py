"""One OpenAI Realtime (GA) session per call, over the official SDK's websocket.

Exactly one send task drains the outbox and is the only writer of the socket; one receive task
parses frames with :mod:`ai.events` into the inbox that :meth:`RealtimeSession.events` yields
from. How a session ends is recorded once: our own :meth:`~RealtimeSession.close` is
``closed``; a clean close by the server (code 1000/1001, e.g. the 60-minute limit, when the
SDK's iterator simply stops) is ``session_ended``; anything else (a close frame with an error
code, a dropped TCP connection, a dead keep-alive) is ``dropped``. ``error`` events are logged
(type, code, message — never audio) and passed on; the socket stays open.

:class:`AudioConverter` turns AudioSocket audio into the session's format and back.
"""

from __future__ import annotations

import asyncio
import binascii
import json
import logging
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any, Final, Literal, cast

import numpy as np

from ai.events import (
    ClientEvent,
    ConversationItemCreate,
    ConversationItemTruncate,
    ErrorEvent,
    FunctionCallOutputItem,
    InputText,
    OutputAudioDelta,
    ResponseCancel,
    ResponseCreate,
    ResponseOptions,
    ServerEvent,
    SessionCreated,
    SessionUpdated,
    UserMessageItem,
    decode_server_message,
)
from asterisk.codec import Kind
from asterisk.g711 import ulaw_decode, ulaw_encode
from asterisk.resample import Downsampler3, Upsampler3

if TYPE_CHECKING:
    from openai import AsyncOpenAI
    from openai.resources.realtime.realtime import AsyncRealtimeConnection

__all__ = [
    "AudioConverter",
    "AudioFormat",
    "RealtimeError",
    "RealtimeSession",
    "SessionEndReason",
]

logger = logging.getLogger(__name__)

AudioFormat = Literal["pcm24k", "pcmu"]
SessionEndReason = Literal["closed", "session_ended", "dropped"]

SEND_BACKLOG_LIMIT: Final = 250  # queued messages (~5 s of 20 ms appends): the socket is stalled
CLOSE_TIMEOUT: Final = 2.0  # s for the close handshake before the connection is dropped
KEEPALIVE: Final = 10.0  # s between pings, and to wait for a pong: a half-open socket dies in ≤20 s
# Errors that happen in ordinary races (a cancel arriving just after the response ended).
_BENIGN_ERROR_CODES: Final = frozenset({"response_cancel_not_active"})
_APPEND_HEAD: Final = '{"type":"input_audio_buffer.append","audio":"'
_APPEND_TAIL: Final = '"}'
_RESPONSE_CREATE: Final = ResponseCreate().to_json()
_RESPONSE_CANCEL: Final = ResponseCancel().to_json()


class RealtimeError(Exception):
    """The session could not be set up (connect, handshake, or an ``error`` reply to it)."""

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        self.code = code


def _label(session_update: dict[str, Any]) -> str:
    """The call id from ``tracing.group_id``, to name the session in logs."""
    session = session_update.get("session")
    tracing = session.get("tracing") if isinstance(session, dict) else None
    return str(tracing.get("group_id", "-")) if isinstance(tracing, dict) else "-"


class RealtimeSession:
    """A live Realtime session: queue client events, iterate typed server events, close."""

    def __init__(
        self,
        connection: AsyncRealtimeConnection,
        client: AsyncOpenAI,
        *,
        audio_format: AudioFormat,
        label: str = "-",
    ) -> None:
        self.audio_format: AudioFormat = audio_format
        self.label = label
        self.ended = asyncio.Event()
        self.end_reason: SessionEndReason | None = None
        self.session_id: str | None = None
        self.audio_dropped = 0  # appends refused: session over or socket stalled
        self._conn = connection
        self._client = client
        self._outbox: asyncio.Queue[str] = asyncio.Queue()
        self._inbox: asyncio.Queue[ServerEvent | None] = asyncio.Queue()
        self._configured: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._closing = False
        self._stall_logged = False
        self._sender: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    @classmethod
    async def connect(
        cls,
        *,
        api_key: str,
        model: str,
        base_url: str | None,
        session_update: dict[str, Any],
        audio_format: AudioFormat,
        connect_timeout: float = 10.0,
    ) -> RealtimeSession:
        """Open the socket, send ``session.update`` first, return once ``session.updated`` came."""
        if audio_format not in ("pcm24k", "pcmu"):
            raise ValueError(f"unknown audio format {audio_format!r} (use pcm24k or pcmu)")
        if session_update.get("type") != "session.update":
            raise ValueError("session_update must be a session.update event")
        # Lazy: the SDK costs ~30 MB, and only a live call needs it.
        from openai import AsyncOpenAI, OpenAIError  # noqa: PLC0415
        from websockets.exceptions import WebSocketException  # noqa: PLC0415

        client = AsyncOpenAI(api_key=api_key, websocket_base_url=base_url, max_retries=0)
        label = _label(session_update)
        session: RealtimeSession | None = None
        try:
            async with asyncio.timeout(connect_timeout):
                manager = client.realtime.connect(
                    model=model, websocket_connection_options=_ws_options(connect_timeout)
                )
                connection = await manager.enter()
                session = cls(connection, client, audio_format=audio_format, label=label)
                session._start()
                session.send(session_update)
                await session._configured
        except BaseException as exc:
            await (session.close() if session is not None else client.close())
            if isinstance(exc, TimeoutError):
                raise RealtimeError(
                    f"timed out: no connection and session.updated within {connect_timeout:g} s"
                ) from None
            if isinstance(exc, OSError | WebSocketException | OpenAIError):
                raise RealtimeError(f"cannot connect: {type(exc).__name__}: {exc}") from exc
            raise
        logger.info("Realtime %s: session %s configured", label, session.session_id or "?")
        return session

    # -- sending (never blocks; the send task is the socket's only writer) ---------------------

    def append_audio(self, audio: bytes) -> None:
        """Queue ``input_audio_buffer.append`` for audio already in the session's input format."""
        if self.audio_format == "pcm24k" and len(audio) & 1:
            raise ValueError(f"{len(audio)} bytes is not whole 16-bit samples")
        if self._closing or self.end_reason is not None:
            self.audio_dropped += 1
            return
        if self._outbox.qsize() >= SEND_BACKLOG_LIMIT:
            self.audio_dropped += 1
            if not self._stall_logged:
                self._stall_logged = True
                logger.warning("Realtime %s: socket not draining; dropping audio", self.label)
            return
        self._stall_logged = False
        b64 = binascii.b2a_base64(audio, newline=False).decode("ascii")
        self._outbox.put_nowait(_APPEND_HEAD + b64 + _APPEND_TAIL)

    def send(self, event: dict[str, Any] | ClientEvent) -> None:
        """Queue any client event (a dict in the GA wire shape, or a typed model)."""
        if isinstance(event, ClientEvent):
            data = event.to_json()
        else:
            if not isinstance(event.get("type"), str):
                raise ValueError("a client event needs a string 'type'")
            data = json.dumps(event, separators=(",", ":"), ensure_ascii=False)
        self._enqueue(data)

    def create_response(self, instructions: str | None = None) -> None:
        """Ask the model to respond now (optionally with one-off instructions)."""
        if instructions is None:
            self._enqueue(_RESPONSE_CREATE)
        else:
            self.send(ResponseCreate(response=ResponseOptions(instructions=instructions)))

    def cancel_response(self, response_id: str | None = None) -> None:
        """Cancel the response in progress (or the one named)."""
        if response_id is None:
            self._enqueue(_RESPONSE_CANCEL)
        else:
            self.send(ResponseCancel(response_id=response_id))

    def truncate(self, item_id: str, audio_end_ms: int) -> None:
        """Tell the model how much of an assistant item the callee really heard."""
        self.send(ConversationItemTruncate(item_id=item_id, audio_end_ms=max(0, audio_end_ms)))

    def send_function_output(self, call_id: str, output: str, *, respond: bool = True) -> None:
        """Answer a tool call, then (by default) let the model speak."""
        self.send(
            ConversationItemCreate(item=FunctionCallOutputItem(call_id=call_id, output=output))
        )
        if respond:
            self.create_response()

    def add_user_text(self, text: str, *, respond: bool = True) -> None:
        """Add a user text item (a DTMF note, the creator's answer), then let the model speak."""
        item = UserMessageItem(content=[InputText(text=text)])
        self.send(ConversationItemCreate(item=item))
        if respond:
            self.create_response()

    def _enqueue(self, data: str) -> None:
        if self._closing or self.end_reason is not None:
            logger.debug("Realtime %s: session over; client event not sent", self.label)
            return
        self._outbox.put_nowait(data)

    # -- receiving ------------------------------------------------------------------------

    def events(self) -> AsyncIterator[ServerEvent]:
        """Typed server events in arrival order; the iteration ends when the session ends."""
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[ServerEvent]:
        while True:
            event = await self._inbox.get()
            if event is None:
                self._inbox.put_nowait(None)  # so a later iterator ends too
                return
            yield event

    # -- life cycle -----------------------------------------------------------------------

    async def close(self) -> None:
        """Close the socket (code 1000; unsent events are dropped) and wait for both tasks."""
        if not self._closing:
            self._closing = True
            if self._sender is not None:
                self._sender.cancel()
            try:
                async with asyncio.timeout(CLOSE_TIMEOUT * 2):
                    await self._conn.close()
            except TimeoutError:
                logger.warning("Realtime %s: close handshake timed out", self.label)
        await self._wait_tasks()
        self._finish("closed")
        await self._client.close()

    def _start(self) -> None:
        loop = asyncio.get_running_loop()
        self._sender = loop.create_task(self._send_loop(), name=f"realtime-send-{self.label}")
        receiver = loop.create_task(self._receive_loop(), name=f"realtime-recv-{self.label}")
        for task in (self._sender, receiver):
            self._tasks.add(task)
            task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if task.cancelled() or (exc := task.exception()) is None:
            return
        logger.error("Realtime %s: %s failed", self.label, task.get_name(), exc_info=exc)
        self._finish("dropped")
        if not self._closing:
            # Without its other half the session is useless: close so the peer task ends too.
            closer = asyncio.get_running_loop().create_task(self.close(), name="realtime-close")
            self._tasks.add(closer)
            closer.add_done_callback(self._task_done)

    async def _wait_tasks(self) -> None:
        current = asyncio.current_task()
        pending = [t for t in self._tasks if t is not current]
        if not pending:
            return
        _, stuck = await asyncio.wait(pending, timeout=CLOSE_TIMEOUT)
        for task in stuck:
            task.cancel()
        if stuck:
            await asyncio.wait(stuck)

    async def _send_loop(self) -> None:
        from websockets.exceptions import ConnectionClosed  # noqa: PLC0415 -- with the SDK

        send = self._conn.send_raw
        outbox = self._outbox
        while True:
            data = await outbox.get()
            try:
                await send(data)
            except ConnectionClosed:
                return  # the receive task sees the same close and records why

    async def _receive_loop(self) -> None:
        from websockets.exceptions import ConnectionClosed, ConnectionClosedOK  # noqa: PLC0415

        recv = self._conn.recv_bytes
        inbox = self._inbox
        try:
            while True:
                event = decode_server_message(await recv())
                if event is None:
                    continue
                if type(event) is not OutputAudioDelta:  # the hot path needs no bookkeeping
                    self._observe(event)
                inbox.put_nowait(event)
        except ConnectionClosedOK:
            self._finish("closed" if self._closing else "session_ended")
        except ConnectionClosed as exc:
            if not self._closing:
                code = exc.rcvd.code if exc.rcvd is not None else None
                logger.warning("Realtime %s: connection lost (close code %s)", self.label, code)
            self._finish("closed" if self._closing else "dropped")

    def _observe(self, event: ServerEvent) -> None:
        if isinstance(event, SessionCreated):
            session_id = event.session.get("id")
            self.session_id = session_id if isinstance(session_id, str) else None
        elif isinstance(event, SessionUpdated):
            if not self._configured.done():
                self._configured.set_result(None)
        elif isinstance(event, ErrorEvent):
            self._log_error(event)
            if not self._configured.done():
                err = event.error
                self._configured.set_exception(
                    RealtimeError(f"session.update refused: {err.message}", code=err.code)
                )

    def _log_error(self, event: ErrorEvent) -> None:
        err = event.error
        level = logging.INFO if err.code in _BENIGN_ERROR_CODES else logging.WARNING
        logger.log(
            level,
            "Realtime %s: error event type=%s code=%s param=%s caused_by=%s: %s",
            self.label,
            err.type,
            err.code,
            err.param,
            err.event_id,
            err.message,
        )

    def _finish(self, reason: SessionEndReason) -> None:
        """Record the end once (the first reason wins) and wake every waiter."""
        if self.end_reason is None:
            self.end_reason = reason
            logger.info("Realtime %s: session ended: %s", self.label, reason)
            self._inbox.put_nowait(None)
        if not self._configured.done():
            self._configured.set_exception(
                RealtimeError(f"session ended before session.updated ({reason})")
            )
            self._configured.exception()  # retrieved: nobody may be waiting any more
        self.ended.set()
        if self._sender is not None and self._sender is not asyncio.current_task():
            self._sender.cancel()


def _ws_options(connect_timeout: float) -> Any:
    # Not in the SDK's TypedDict, but passed through to websockets' connect(): a dead peer is
    # noticed by keep-alive, and the opening handshake shares our connect budget.
    return cast(
        Any,
        {
            "open_timeout": connect_timeout,
            "ping_interval": KEEPALIVE,
            "ping_timeout": KEEPALIVE,
            "close_timeout": CLOSE_TIMEOUT,
        },
    )


class AudioConverter:
    """AudioSocket slin <-> the session's audio format; stateful, exact sample counts."""

    __slots__ = ("_carry", "_down", "_mode", "_up")

    def __init__(self, audio_kind: Kind, realtime_8k_format: AudioFormat) -> None:
        if realtime_8k_format not in ("pcmu", "pcm24k"):
            raise ValueError(f"unknown realtime 8 kHz format {realtime_8k_format!r}")
        if audio_kind is Kind.SLIN_24K:
            self._mode: Literal["pass", "ulaw", "resample"] = "pass"
        elif audio_kind is Kind.SLIN_8K:
            self._mode = "ulaw" if realtime_8k_format == "pcmu" else "resample"
        else:
            raise ValueError(
                f"unsupported AudioSocket kind {Kind(audio_kind).name}: use 8 or 24 kHz"
            )
        self._up = Upsampler3() if self._mode == "resample" else None
        self._down = Downsampler3() if self._mode == "resample" else None
        self._carry = b""  # model audio not yet converted: a split sample, or < 3 samples

    @property
    def session_format(self) -> AudioFormat:
        """The Realtime audio format this call's session must use."""
        return "pcmu" if self._mode == "ulaw" else "pcm24k"

    @property
    def model_bytes_per_ms(self) -> int:
        """Bytes of session-format audio per millisecond (µ-law 8, pcm16 24 kHz 48)."""
        return 8 if self._mode == "ulaw" else 48

    def to_model(self, pcm_frame: bytes) -> bytes:
        """One inbound slin frame in the session's input format."""
        if len(pcm_frame) & 1:
            raise ValueError(f"{len(pcm_frame)} bytes is not whole 16-bit samples")
        if self._mode == "pass":
            return pcm_frame
        if self._mode == "ulaw":
            return ulaw_encode(pcm_frame)
        assert self._up is not None
        up = self._up.process(np.frombuffer(pcm_frame, dtype="<i2"))
        return up.astype("<i2", copy=False).tobytes()

    def from_model(self, audio: bytes) -> bytes:
        """Model audio (decoded delta) as slin at the call's rate; partial samples are carried."""
        if self._mode == "ulaw":
            return ulaw_decode(audio).astype("<i2", copy=False).tobytes()
        data = self._carry + audio if self._carry else audio
        # 24 kHz passthrough keeps whole samples; 24 → 8 kHz needs whole groups of 3 samples.
        step = 2 if self._mode == "pass" else 6
        usable = len(data) - len(data) % step
        self._carry = data[usable:]
        if self._mode == "pass":
            return data if usable == len(data) else data[:usable]
        if not usable:
            return b""
        assert self._down is not None
        down = self._down.process(np.frombuffer(data, dtype="<i2", count=usable // 2))
        return down.astype("<i2", copy=False).tobytes()

    def reset_output(self) -> None:
        """Forget model audio in flight (after a barge-in dropped the playout)."""
        self._carry = b""
        if self._down is not None:
            self._down.reset()
