"""RealtimeSession over the real openai SDK against a small local server speaking the GA protocol.

The fake server here is the minimum needed to pin the session's behaviour (handshake, ordering,
end reasons, error events); the scripted stand-in of DESIGN.md §6 lives in ai/sim.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import socket
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed

from ai.events import (
    ErrorEvent,
    FunctionCallArgumentsDone,
    OutputAudioDelta,
    ResponseDone,
    ServerEvent,
    SessionCreated,
    SessionUpdated,
    SpeechStarted,
)
from ai.realtime import SEND_BACKLOG_LIMIT, RealtimeError, RealtimeSession

pytestmark = pytest.mark.integration

CALL_ID = uuid.UUID("0b9e5a52-6a55-4d8e-9d8e-3c1f1e0c2a77")
API_KEY = "sk-test-not-a-real-key"
MODEL = "gpt-realtime"
SESSION_UPDATE: dict[str, Any] = {
    "type": "session.update",
    "session": {
        "type": "realtime",
        "instructions": "Be brief.",
        "audio": {"input": {"format": {"type": "audio/pcmu"}}},
        "tracing": {"group_id": str(CALL_ID), "workflow_name": "opendeep-call"},
    },
}
GA_CLIENT_EVENTS = frozenset(
    {
        "session.update",
        "input_audio_buffer.append",
        "input_audio_buffer.clear",
        "input_audio_buffer.commit",
        "conversation.item.create",
        "conversation.item.truncate",
        "conversation.item.delete",
        "conversation.item.retrieve",
        "response.create",
        "response.cancel",
        "output_audio_buffer.clear",
    }
)
LOGGER = "ai.realtime"


class FakeRealtime:
    """A GA Realtime peer: session.created, session.updated, errors for malformed events."""

    def __init__(self) -> None:
        self.reply_session_updated = True
        self.refuse_session_update = False
        self.received: list[dict[str, Any]] = []
        self.appended = bytearray()
        self.requests: list[Any] = []
        self.arrived = asyncio.Condition()
        self.ws: ServerConnection | None = None
        self.connected = asyncio.Event()

    async def handler(self, ws: ServerConnection) -> None:
        self.ws = ws
        self.requests.append(ws.request)
        self.connected.set()
        try:
            await self._send(ws, {"type": "session.created", "session": {"id": "sess_1"}})
            async for message in ws:
                await self._on_message(ws, message)
        except ConnectionClosed:
            pass  # the tests drop and close connections on purpose

    async def _on_message(self, ws: ServerConnection, message: str | bytes) -> None:
        try:
            event = json.loads(message)
        except ValueError:
            await self._error(ws, "invalid_json", "not JSON")
            return
        if not isinstance(event, dict) or not isinstance(event.get("type"), str):
            await self._error(ws, "invalid_event", "missing type")
            return
        kind = event["type"]
        if kind not in GA_CLIENT_EVENTS:
            await self._error(ws, "unknown_event", f"Invalid event type {kind!r}", event)
        elif kind == "session.update":
            await self._session_update(ws, event)
        elif kind == "input_audio_buffer.append":
            self.appended += base64.b64decode(event["audio"], validate=True)
        async with self.arrived:
            self.received.append(event)
            self.arrived.notify_all()

    async def _session_update(self, ws: ServerConnection, event: dict[str, Any]) -> None:
        session = event.get("session") or {}
        if self.refuse_session_update or session.get("type") != "realtime":
            await self._error(ws, "invalid_value", "session.type must be realtime", event)
        elif self.reply_session_updated:
            await self._send(
                ws, {"type": "session.updated", "session": {"id": "sess_1", **session}}
            )

    async def _error(
        self, ws: ServerConnection, code: str, message: str, cause: dict[str, Any] | None = None
    ) -> None:
        error = {"type": "invalid_request_error", "code": code, "message": message}
        if cause and cause.get("event_id"):
            error["event_id"] = cause["event_id"]
        await self._send(ws, {"type": "error", "error": error})

    async def _send(self, ws: ServerConnection, event: dict[str, Any]) -> None:
        await ws.send(json.dumps({"event_id": f"evt_{uuid.uuid4().hex[:8]}", **event}))

    async def send(self, event: dict[str, Any]) -> None:
        """Send one server event to the connected client."""
        assert self.ws is not None
        await self._send(self.ws, event)

    async def wait_for(self, count: int) -> list[dict[str, Any]]:
        """The first ``count`` client events, once they have arrived."""
        async with asyncio.timeout(5), self.arrived:
            await self.arrived.wait_for(lambda: len(self.received) >= count)
        return self.received[:count]


@pytest.fixture
async def fake() -> AsyncIterator[tuple[FakeRealtime, str]]:
    peer = FakeRealtime()
    server: Server = await serve(peer.handler, "127.0.0.1", 0)
    port = next(iter(server.sockets)).getsockname()[1]
    yield peer, f"ws://127.0.0.1:{port}/v1"
    server.close()
    await server.wait_closed()


async def _connect(base_url: str, connect_timeout: float = 5.0) -> RealtimeSession:
    return await RealtimeSession.connect(
        api_key=API_KEY,
        model=MODEL,
        base_url=base_url,
        session_update=SESSION_UPDATE,
        audio_format="pcmu",
        connect_timeout=connect_timeout,
    )


async def _collect(session: RealtimeSession, limit_s: float = 5.0) -> list[ServerEvent]:
    events = []
    async with asyncio.timeout(limit_s):
        async for event in session.events():
            events.append(event)
    return events


async def _next_of(session: RealtimeSession, cls: type[ServerEvent]) -> ServerEvent:
    async with asyncio.timeout(5):
        async for event in session.events():
            if isinstance(event, cls):
                return event
    raise AssertionError(f"session ended before a {cls.__name__}")


async def test_connect_sends_session_update_first_and_waits_for_session_updated(
    fake: tuple[FakeRealtime, str],
) -> None:
    peer, url = fake
    session = await _connect(url)
    try:
        first = (await peer.wait_for(1))[0]
        assert first == SESSION_UPDATE
        assert session.session_id == "sess_1"
        assert session.label == str(CALL_ID)
        request = peer.requests[0]
        assert request.path == f"/v1/realtime?model={MODEL}"
        assert request.headers["Authorization"] == f"Bearer {API_KEY}"
        assert isinstance(await _next_of(session, SessionCreated), SessionCreated)
        assert isinstance(await _next_of(session, SessionUpdated), SessionUpdated)
    finally:
        await session.close()


async def test_append_audio_arrives_base64_in_order(fake: tuple[FakeRealtime, str]) -> None:
    peer, url = fake
    session = await _connect(url)
    try:
        chunks = [bytes([i]) * 160 for i in range(100)]
        for chunk in chunks:
            session.append_audio(chunk)
        received = await peer.wait_for(1 + len(chunks))
        assert [e["type"] for e in received[1:]] == ["input_audio_buffer.append"] * 100
        assert set(received[1]) == {"type", "audio"}
        assert bytes(peer.appended) == b"".join(chunks)
    finally:
        await session.close()


async def test_helpers_send_ga_client_events(fake: tuple[FakeRealtime, str]) -> None:
    peer, url = fake
    session = await _connect(url)
    try:
        session.create_response()
        session.create_response("Say goodbye.")
        session.cancel_response()
        session.truncate("item_7", 1234)
        session.send_function_output("call_1", '{"ok": true}', respond=False)
        session.add_user_text("The callee pressed the key 5.")
        received = (await peer.wait_for(8))[1:]
    finally:
        await session.close()
    assert received == [
        {"type": "response.create"},
        {"type": "response.create", "response": {"instructions": "Say goodbye."}},
        {"type": "response.cancel"},
        {
            "type": "conversation.item.truncate",
            "item_id": "item_7",
            "content_index": 0,
            "audio_end_ms": 1234,
        },
        {
            "type": "conversation.item.create",
            "item": {"type": "function_call_output", "call_id": "call_1", "output": '{"ok": true}'},
        },
        {
            "type": "conversation.item.create",
            "item": {
                "type": "message",
                "role": "user",
                "content": [{"type": "input_text", "text": "The callee pressed the key 5."}],
            },
        },
        {"type": "response.create"},
    ]


async def test_server_events_arrive_typed_and_unknown_ones_are_skipped(
    fake: tuple[FakeRealtime, str],
) -> None:
    peer, url = fake
    session = await _connect(url)
    audio = base64.b64encode(b"\xff" * 160).decode()
    script: list[dict[str, Any]] = [
        {"type": "input_audio_buffer.speech_started", "audio_start_ms": 500, "item_id": "item_1"},
        {"type": "response.audio.delta", "delta": audio},  # beta-era name: skipped
        {
            "type": "response.output_audio.delta",
            "response_id": "resp_1",
            "item_id": "item_2",
            "output_index": 0,
            "content_index": 0,
            "delta": audio,
        },
        {"type": "response.output_audio.delta", "response_id": "resp_1"},  # malformed: skipped
        {
            "type": "response.function_call_arguments.done",
            "response_id": "resp_1",
            "item_id": "item_3",
            "output_index": 1,
            "call_id": "call_1",
            "name": "end_call",
            "arguments": '{"reason":"completed"}',
        },
        {
            "type": "response.done",
            "response": {
                "id": "resp_1",
                "status": "completed",
                "usage": {
                    "total_tokens": 30,
                    "input_tokens": 20,
                    "output_tokens": 10,
                    "input_token_details": {"text_tokens": 5, "audio_tokens": 15},
                    "output_token_details": {"text_tokens": 2, "audio_tokens": 8},
                },
            },
        },
    ]
    try:
        for event in script:
            await peer.send(event)
        await peer.ws.close(1001, "session expired")  # type: ignore[union-attr]
        events = [
            e for e in await _collect(session) if not isinstance(e, SessionCreated | SessionUpdated)
        ]
    finally:
        await session.close()
    assert [type(e) for e in events] == [
        SpeechStarted,
        OutputAudioDelta,
        FunctionCallArgumentsDone,
        ResponseDone,
    ]
    delta = events[1]
    assert isinstance(delta, OutputAudioDelta)
    assert base64.b64decode(delta.delta) == b"\xff" * 160
    done = events[3]
    assert isinstance(done, ResponseDone) and done.response.usage is not None
    assert done.response.usage.to_usage().output_audio_tokens == 8


async def test_server_close_1001_ends_events_with_session_ended(
    fake: tuple[FakeRealtime, str],
) -> None:
    peer, url = fake
    session = await _connect(url)
    try:
        await peer.ws.close(1001, "session expired")  # type: ignore[union-attr]
        await _collect(session)
        assert session.end_reason == "session_ended"
        assert session.ended.is_set()
        session.append_audio(b"\xff" * 160)  # after the end: dropped, never raises
        assert session.audio_dropped == 1
    finally:
        await session.close()
    assert session.end_reason == "session_ended"


async def test_abrupt_tcp_drop_ends_with_dropped_without_hanging(
    fake: tuple[FakeRealtime, str], caplog: pytest.LogCaptureFixture
) -> None:
    peer, url = fake
    session = await _connect(url)
    try:
        peer.ws.transport.abort()  # type: ignore[union-attr]
        await _collect(session, limit_s=3.0)
        assert session.end_reason == "dropped"
        assert any("connection lost" in r.getMessage() for r in caplog.records)
    finally:
        async with asyncio.timeout(5):
            await session.close()
    assert session.end_reason == "dropped"


async def test_error_event_is_logged_and_passed_on_and_the_session_stays_open(
    fake: tuple[FakeRealtime, str], caplog: pytest.LogCaptureFixture
) -> None:
    peer, url = fake
    session = await _connect(url)
    caplog.set_level(logging.INFO, logger=LOGGER)
    try:
        session.send({"type": "response.audio.append", "event_id": "evt_client_9"})
        error = await _next_of(session, ErrorEvent)
        assert isinstance(error, ErrorEvent)
        assert error.error.code == "unknown_event"
        assert error.error.event_id == "evt_client_9"
        logged = [r.getMessage() for r in caplog.records if r.name == LOGGER]
        assert any("code=unknown_event" in m and "evt_client_9" in m for m in logged)
        session.append_audio(b"\x01" * 160)
        await peer.wait_for(3)
        assert bytes(peer.appended) == b"\x01" * 160
        assert session.end_reason is None and not session.ended.is_set()
    finally:
        await session.close()


async def test_our_close_ends_with_closed_and_is_idempotent(
    fake: tuple[FakeRealtime, str],
) -> None:
    _, url = fake
    session = await _connect(url)
    await session.close()
    await session.close()
    assert session.end_reason == "closed"
    assert session.ended.is_set()
    assert [type(e) for e in await _collect(session)] == [SessionCreated, SessionUpdated]


async def test_refused_session_update_raises_realtime_error(
    fake: tuple[FakeRealtime, str],
) -> None:
    peer, url = fake
    peer.refuse_session_update = True
    with pytest.raises(RealtimeError) as info:
        await _connect(url)
    assert info.value.code == "invalid_value"


async def test_missing_session_updated_times_out_with_realtime_error(
    fake: tuple[FakeRealtime, str],
) -> None:
    peer, url = fake
    peer.reply_session_updated = False
    with pytest.raises(RealtimeError, match=r"timed out: no connection and session\.updated"):
        await _connect(url, connect_timeout=0.5)


async def test_server_closing_during_handshake_raises_realtime_error(
    fake: tuple[FakeRealtime, str],
) -> None:
    peer, url = fake
    peer.reply_session_updated = False
    task = asyncio.create_task(_connect(url))
    await asyncio.wait_for(peer.connected.wait(), 5)
    await peer.wait_for(1)
    await peer.ws.close(1011, "internal error")  # type: ignore[union-attr]
    with pytest.raises(RealtimeError, match=r"before session\.updated"):
        await asyncio.wait_for(task, 5)


async def test_unreachable_endpoint_raises_realtime_error() -> None:
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(RealtimeError, match="cannot connect"):
        await _connect(f"ws://127.0.0.1:{port}/v1", connect_timeout=2.0)


async def test_a_stalled_socket_drops_audio_not_control_events(
    fake: tuple[FakeRealtime, str], caplog: pytest.LogCaptureFixture
) -> None:
    peer, url = fake
    session = await _connect(url)
    try:
        for _ in range(SEND_BACKLOG_LIMIT + 50):  # no await: the send task cannot drain
            session.append_audio(b"\xff" * 160)
        session.create_response()
        assert session.audio_dropped == 50
        assert sum("dropping audio" in r.getMessage() for r in caplog.records) == 1
        received = await peer.wait_for(1 + SEND_BACKLOG_LIMIT + 1)
        assert received[-1] == {"type": "response.create"}
    finally:
        await session.close()


async def test_a_failing_receive_task_is_logged_and_ends_the_session_as_dropped(
    fake: tuple[FakeRealtime, str],
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    peer, url = fake
    session = await _connect(url)

    def broken(data: str | bytes) -> None:
        raise RuntimeError("parser bug")

    monkeypatch.setattr("ai.realtime.decode_server_message", broken)
    try:
        for _ in range(2):  # the loop already holds the real parser while it awaits a frame
            await peer.send({"type": "rate_limits.updated", "rate_limits": []})
        await _collect(session)
        assert session.end_reason == "dropped"
        failures = [r for r in caplog.records if r.levelno == logging.ERROR and r.name == LOGGER]
        assert failures and failures[0].exc_info is not None
    finally:
        async with asyncio.timeout(5):
            await session.close()
