"""The Realtime stand-in speaks the GA protocol to the real ``openai`` SDK, over real sockets."""

from __future__ import annotations

import base64
import json
import logging
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from openai import AsyncOpenAI
from websockets.asyncio.client import connect as ws_connect
from websockets.exceptions import ConnectionClosedError, InvalidStatus

from ai.sim import RealtimeStandIn
from tests.integration._realtime import (
    CALLEE_LINE,
    GREETING,
    TOOLS,
    WORLD,
    append_speech,
    event,
    realtime,
    render,
    session_config,
    until,
)

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def speech_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("speech")


@pytest.fixture
async def standin(speech_cache: Path) -> AsyncIterator[RealtimeStandIn]:
    server = RealtimeStandIn(port=0, world=WORLD, speech_cache=speech_cache)
    await server.start()
    yield server
    await server.stop()


# -- handshake and GA validation --------------------------------------------------------------
async def test_handshake_answers_session_created_then_updated_in_ga_shapes(
    standin: RealtimeStandIn,
) -> None:
    call_id = str(uuid.uuid4())
    client = AsyncOpenAI(api_key="any", websocket_base_url=standin.url)
    async with client.realtime.connect(model="gpt-realtime") as conn:
        created = await event(conn)
        assert created["type"] == "session.created"
        assert created["session"]["type"] == "realtime"
        assert created["session"]["audio"]["input"]["format"] == {
            "type": "audio/pcm",
            "rate": 24000,
        }
        await conn.session.update(session=session_config(call_id, "pcmu"))  # type: ignore[arg-type]
        updated = (await event(conn))["session"]
    assert updated["tracing"]["group_id"] == call_id
    assert updated["audio"]["input"]["format"] == {"type": "audio/pcmu"}
    assert updated["audio"]["input"]["turn_detection"]["silence_duration_ms"] == 500
    assert [t["name"] for t in updated["tools"]] == [t["name"] for t in TOOLS]
    record = await standin.wait_session(call_id, 1)
    assert (record.input_format, record.output_format, record.voice) == ("pcmu", "pcmu", "marin")
    assert standin.stats.protocol_errors == 0


BETA_MESSAGES = {
    "session-without-type": (
        {"type": "session.update", "session": {"instructions": "x"}},
        "session.type",
    ),
    "input_audio_format-on-top": (
        {"type": "session.update", "session": {"type": "realtime", "input_audio_format": "pcm16"}},
        "session.input_audio_format",
    ),
    "voice-on-top": (
        {"type": "session.update", "session": {"type": "realtime", "voice": "alloy"}},
        "session.voice",
    ),
    "beta-format-name": (
        {
            "type": "session.update",
            "session": {"type": "realtime", "audio": {"input": {"format": "g711_ulaw"}}},
        },
        "session.audio.input.format",
    ),
    "unknown-nested-field": (
        {
            "type": "session.update",
            "session": {"type": "realtime", "audio": {"input": {"vad": True}}},
        },
        "session.audio.input.vad",
    ),
    "response-modalities": (
        {"type": "response.create", "response": {"modalities": ["audio"]}},
        "response.modalities",
    ),
    "assistant-text-content": (
        {
            "type": "conversation.item.create",
            "item": {
                "type": "message",
                "role": "assistant",
                "content": [{"type": "text", "text": "hi"}],
            },
        },
        "item.content[0].type",
    ),
    "beta-server-event-name": ({"type": "response.audio.delta", "delta": ""}, "type"),
}


@pytest.mark.parametrize("name", list(BETA_MESSAGES))
async def test_a_beta_style_client_event_gets_an_error_event_and_is_counted(
    standin: RealtimeStandIn, caplog: pytest.LogCaptureFixture, name: str
) -> None:
    message, param = BETA_MESSAGES[name]
    async with realtime(standin) as (conn, _):
        await conn.send_raw(json.dumps(message))
        error = await until(conn, "error")
        # The session goes on after the error, as the API's does.
        await conn.session.update(session={"type": "realtime", "instructions": "again"})
        assert (await until(conn, "session.updated"))["session"]["instructions"] == "again"
    assert error["error"]["type"] == "invalid_request_error"
    assert error["error"]["param"] == param
    assert "GA" in error["error"]["message"]
    assert standin.stats.protocol_errors == 1
    assert any(r.levelno == logging.ERROR and "protocol error" in r.message for r in caplog.records)


async def test_the_beta_header_is_refused_with_an_error_event(standin: RealtimeStandIn) -> None:
    async with realtime(standin, **{"OpenAI-Beta": "realtime=v1"}) as (conn, _):
        error = await until(conn, "error")
    assert error["error"]["code"] == "beta_shape" and "OpenAI-Beta" in error["error"]["message"]
    assert standin.stats.protocol_errors == 1


async def test_malformed_json_gets_an_error_event_and_the_session_goes_on(
    standin: RealtimeStandIn,
) -> None:
    async with realtime(standin) as (conn, _):
        await conn.send_raw("{not json")
        first = await until(conn, "error")
        await conn.send_raw("[1, 2]")
        second = await until(conn, "error")
        await conn.send_raw(json.dumps({"type": "input_audio_buffer.append", "audio": "%%%"}))
        third = await until(conn, "error")
        await conn.response.create()
        assert (await until(conn, "response.done"))["response"]["status"] == "completed"
    assert first["error"]["code"] == second["error"]["code"] == "invalid_json"
    assert third["error"]["param"] == "audio"
    assert standin.stats.protocol_errors == 3


async def test_a_handshake_without_bearer_model_or_right_path_is_refused(
    standin: RealtimeStandIn,
) -> None:
    base = standin.url
    cases = [
        (f"{base}/realtime?model=gpt-realtime", {}, 401),
        (f"{base}/realtime", {"Authorization": "Bearer k"}, 400),
        (f"{base}/beta/realtime?model=gpt-realtime", {"Authorization": "Bearer k"}, 404),
    ]
    for url, headers, status in cases:
        with pytest.raises(InvalidStatus) as refused:
            async with ws_connect(url, additional_headers=headers):
                pass
        assert refused.value.response.status_code == status
    assert standin.stats.refused_handshakes == 3 and standin.stats.connections == 0


# -- VAD, transcription, responses ------------------------------------------------------------
@pytest.mark.parametrize("fmt", ["pcm", "pcmu"])
async def test_appended_speech_is_detected_and_transcribed_with_the_scripted_line(
    standin: RealtimeStandIn, fmt: str
) -> None:
    seen: list[dict[str, Any]] = []
    async with realtime(standin, fmt=fmt) as (conn, call_id):
        await append_speech(conn, CALLEE_LINE, fmt)
        started = await until(conn, "input_audio_buffer.speech_started", seen)
        stopped = await until(conn, "input_audio_buffer.speech_stopped", seen)
        committed = await until(conn, "input_audio_buffer.committed", seen)
        text = await until(conn, "conversation.item.input_audio_transcription.completed", seen)
        done = await until(conn, "response.done", seen)
    assert started["item_id"] == stopped["item_id"] == committed["item_id"] == text["item_id"]
    # 1 s of silence first; audio_start_ms includes the 300 ms prefix padding.
    assert 600 <= started["audio_start_ms"] <= 800
    voiced_ms = len(render(CALLEE_LINE, 24000)) / 24
    assert 1000 + voiced_ms <= stopped["audio_end_ms"] <= 1000 + voiced_ms + 600
    assert text["transcript"] == CALLEE_LINE
    # create_response (server_vad's default): the agent's first response greets, then answers.
    transcript = next(e for e in seen if e["type"] == "response.output_audio_transcript.done")
    assert transcript["transcript"] == f"{GREETING} Hi Robin, can we meet on Tuesday?"
    assert done["response"]["status"] == "completed"
    record = standin.session_for(call_id)
    assert record is not None and record.heard[0].line == 1
    assert standin.stats.protocol_errors == 0


async def test_the_greeting_streams_in_bursts_faster_than_real_time_with_usage(
    standin: RealtimeStandIn,
) -> None:
    seen: list[dict[str, Any]] = []
    async with realtime(standin) as (conn, _):
        await conn.response.create()
        done = await until(conn, "response.done", seen)
    kinds = [e["type"] for e in seen if not e["type"].endswith(".delta")]
    assert kinds == [
        "response.created",
        "response.output_item.added",
        "conversation.item.added",
        "response.content_part.added",
        "response.output_audio.done",
        "response.output_audio_transcript.done",
        "response.content_part.done",
        "response.output_item.done",
        "conversation.item.done",
        "response.done",
    ]
    deltas = [e for e in seen if e["type"] == "response.output_audio.delta"]
    sizes = [len(base64.b64decode(e["delta"])) for e in deltas]
    assert all(size == 9600 for size in sizes[:-1]) and sizes[-1] % 2 == 0  # 200 ms, whole samples
    audio_s = sum(sizes) / 48000
    pieces = "".join(
        e["delta"] for e in seen if e["type"] == "response.output_audio_transcript.delta"
    )
    assert pieces.strip() == GREETING
    usage = done["response"]["usage"]
    assert usage["output_token_details"]["audio_tokens"] == int(audio_s * 20)
    assert (
        usage["input_tokens"] > 0
        and usage["total_tokens"] == usage["input_tokens"] + usage["output_tokens"]
    )
    assert audio_s > 2.0


async def test_audio_arrives_many_times_faster_than_it_plays(standin: RealtimeStandIn) -> None:
    async with realtime(standin) as (conn, _):
        await conn.response.create()  # the greeting, rendered now (cached afterwards)
        await until(conn, "response.done")
        await conn.conversation.item.create(
            item={
                "type": "message",
                "role": "user",
                "content": [{"type": "input_text", "text": "book it"}],
            }
        )
        await conn.response.create()
        call = await until(conn, "response.function_call_arguments.done")
        await until(conn, "response.done")
        await conn.conversation.item.create(
            item={"type": "function_call_output", "call_id": call["call_id"], "output": "ok"}
        )
        await conn.response.create()
        first = await until(conn, "response.output_audio.delta")
        start, total = time.perf_counter(), len(base64.b64decode(first["delta"]))
        while (item := await event(conn))["type"] != "response.output_audio.done":
            if item["type"] == "response.output_audio.delta":
                total += len(base64.b64decode(item["delta"]))
        wall = time.perf_counter() - start
    assert total / 48000 / max(wall, 1e-3) > 5  # ≫ real time (20× by default)


@pytest.mark.parametrize("fmt", ["pcm", "pcmu"])
async def test_pcm_and_pcmu_outputs_carry_the_same_speech_length(
    standin: RealtimeStandIn, fmt: str
) -> None:
    async with realtime(standin, fmt=fmt) as (conn, call_id):
        await conn.response.create()
        seen: list[dict[str, Any]] = []
        await until(conn, "response.done", seen)
    sizes = [
        len(base64.b64decode(e["delta"]))
        for e in seen
        if e["type"] == "response.output_audio.delta"
    ]
    per_ms = 48 if fmt == "pcm" else 8
    assert all(size == 200 * per_ms for size in sizes[:-1])
    record = standin.session_for(call_id)
    assert record is not None
    assert record.said[0].audio_ms == sum(sizes) / per_ms
    espeak_ms = len(render(GREETING, 24000)) / 24  # both formats: the same voiced length
    assert abs(sum(sizes) / per_ms - espeak_ms) < 400  # the renderer's lead-in/out trimmed


async def test_speech_started_cancels_a_streaming_response(standin: RealtimeStandIn) -> None:
    seen: list[dict[str, Any]] = []
    async with realtime(standin) as (conn, call_id):
        await conn.response.create()
        await until(conn, "response.done")
        await conn.conversation.item.create(
            item={
                "type": "message",
                "role": "user",
                "content": [{"type": "input_text", "text": "long"}],
            }
        )
        await conn.response.create()
        await until(conn, "response.output_audio.delta")
        await append_speech(conn, CALLEE_LINE, lead_s=0.0, tail_s=0.0)
        await until(conn, "input_audio_buffer.speech_started", seen)
        after: list[dict[str, Any]] = []
        done = await until(conn, "response.done", after)
    assert not [e for e in after if e["type"] == "response.output_audio.delta"]
    assert done["response"]["status"] == "cancelled"
    assert done["response"]["status_details"]["reason"] == "turn_detected"
    item = next(e for e in after if e["type"] == "response.output_item.done")["item"]
    assert item["status"] == "incomplete"
    record = standin.session_for(call_id)
    assert record is not None and record.said[-1].status == "cancelled"
    assert record.said[-1].sent_ms < record.said[-1].audio_ms
    assert standin.stats.cancelled_responses == 1


async def test_a_client_cancel_ends_the_response_and_a_second_cancel_is_refused(
    standin: RealtimeStandIn,
) -> None:
    async with realtime(standin) as (conn, _):
        await conn.response.create()
        await until(conn, "response.done")
        await conn.conversation.item.create(
            item={
                "type": "message",
                "role": "user",
                "content": [{"type": "input_text", "text": "long"}],
            }
        )
        await conn.response.create()
        await until(conn, "response.output_audio.delta")
        await conn.response.create()  # one response at a time
        busy = await until(conn, "error")
        await conn.response.cancel()
        done = await until(conn, "response.done")
        await conn.response.cancel()
        late = await until(conn, "error")
    assert busy["error"]["code"] == "conversation_already_has_active_response"
    assert done["response"]["status_details"]["reason"] == "client_cancelled"
    assert late["error"]["code"] == "response_cancel_not_active"
    assert standin.stats.request_errors == 2 and standin.stats.protocol_errors == 0


async def test_a_truncate_is_recorded_with_audio_end_ms_and_checked_against_the_audio(
    standin: RealtimeStandIn,
) -> None:
    async with realtime(standin) as (conn, call_id):
        await conn.response.create()
        done = await until(conn, "response.done")
        item_id = done["response"]["output"][0]["id"]
        await conn.conversation.item.truncate(item_id=item_id, content_index=0, audio_end_ms=1200)
        truncated = await until(conn, "conversation.item.truncated")
        await conn.conversation.item.truncate(item_id=item_id, content_index=0, audio_end_ms=99999)
        too_long = await until(conn, "error")
    assert (truncated["item_id"], truncated["audio_end_ms"]) == (item_id, 1200)
    assert "shorter than 99999ms" in too_long["error"]["message"]
    record = standin.session_for(call_id)
    assert record is not None
    cut = record.truncations[0]
    assert (cut.item_id, cut.audio_end_ms, cut.text) == (item_id, 1200, GREETING)
    assert cut.item_audio_ms == record.said[0].audio_ms
    assert standin.stats.request_errors == 1 and standin.stats.protocol_errors == 0


async def test_a_tool_call_round_trip_continues_the_script(standin: RealtimeStandIn) -> None:
    async with realtime(standin) as (conn, call_id):
        await conn.response.create()
        await until(conn, "response.done")
        await conn.conversation.item.create(
            item={
                "type": "message",
                "role": "user",
                "content": [{"type": "input_text", "text": "book it"}],
            }
        )
        echo = await until(conn, "conversation.item.added")
        await conn.response.create()
        call = await until(conn, "response.function_call_arguments.done")
        done = await until(conn, "response.done")
        await conn.conversation.item.create(
            item={"type": "function_call_output", "call_id": "call_nope", "output": "x"}
        )
        unknown = await until(conn, "error")
        await conn.conversation.item.create(
            item={
                "type": "function_call_output",
                "call_id": call["call_id"],
                "output": "Thursday 15:00",
            }
        )
        await conn.response.create()
        spoken = await until(conn, "response.output_audio_transcript.done")
    assert echo["item"]["content"][0] == {"type": "input_text", "text": "book it"}
    assert call["name"] == "reschedule_call"
    assert json.loads(call["arguments"]) == {"when": "Thursday after 3", "reason": "asked"}
    assert done["response"]["output"][0]["type"] == "function_call"
    assert "not found" in unknown["error"]["message"]
    assert spoken["transcript"] == "Booked: Thursday 15:00."
    record = standin.session_for(call_id)
    assert record is not None
    assert [c.name for c in record.tool_calls] == ["reschedule_call"]
    assert [(o.name, o.output) for o in record.tool_outputs] == [
        ("reschedule_call", "Thursday 15:00")
    ]
    assert [t.text for t in record.texts] == ["book it"]


async def test_drop_after_aborts_the_socket_mid_response(standin: RealtimeStandIn) -> None:
    deltas = 0
    async with realtime(standin) as (conn, call_id):
        await conn.conversation.item.create(
            item={
                "type": "message",
                "role": "user",
                "content": [{"type": "input_text", "text": "drop"}],
            }
        )
        await conn.response.create()
        with pytest.raises(ConnectionClosedError) as closed:
            while True:
                if (await event(conn))["type"] == "response.output_audio.delta":
                    deltas += 1
    assert deltas == 2
    assert closed.value.rcvd is None  # no close frame: the TCP connection was cut
    record = standin.session_for(call_id)
    assert record is not None and record.dropped and record.said[-1].status == "dropped"
    assert standin.stats.drops == 1


async def test_hang_after_stalls_the_response_until_the_client_cancels(
    standin: RealtimeStandIn,
) -> None:
    seen: list[dict[str, Any]] = []
    async with realtime(standin) as (conn, _):
        await conn.response.create()
        await until(conn, "response.done")
        await conn.conversation.item.create(
            item={
                "type": "message",
                "role": "user",
                "content": [{"type": "input_text", "text": "hang"}],
            }
        )
        await conn.response.create()
        await until(conn, "response.output_audio.delta", seen)
        with pytest.raises(TimeoutError):
            await event(conn, within=0.4)
        await conn.response.cancel()
        done = await until(conn, "response.done", seen)
    assert sum(e["type"] == "response.output_audio.delta" for e in seen) == 1
    assert done["response"]["status_details"]["reason"] == "client_cancelled"


async def test_a_session_limit_ends_the_session_with_close_code_1001(
    standin: RealtimeStandIn,
) -> None:
    kinds: list[str] = []
    async with realtime(standin, scenario="+14155550172") as (conn, _):
        async for item in conn:  # the SDK's iterator just stops on 1001
            kinds.append(item.type if item.type != "error" else item.error.code or "")
    assert kinds == ["session_expired"]


async def test_a_silent_model_never_answers(standin: RealtimeStandIn) -> None:
    async with realtime(standin, scenario="+14155550171") as (conn, _):
        await conn.response.create()
        with pytest.raises(TimeoutError):
            await event(conn, within=0.5)


async def test_an_unknown_call_gets_the_generic_agent(standin: RealtimeStandIn) -> None:
    async with realtime(standin, scenario=None) as (conn, call_id):
        await conn.response.create()
        spoken = await until(conn, "response.output_audio_transcript.done")
    assert "AI assistant" in spoken["transcript"]
    record = standin.session_for(call_id)
    assert record is not None and record.scenario is None
