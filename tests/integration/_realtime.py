"""Shared pieces of the Realtime stand-in tests: a small world, a GA session, event readers."""

from __future__ import annotations

import asyncio
import base64
import json
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import numpy as np
from openai import AsyncOpenAI
from openai.resources.realtime.realtime import AsyncRealtimeConnection
from openai.types.realtime import RealtimeServerEvent
from pydantic import TypeAdapter

from ai.sim import RealtimeStandIn
from asterisk.g711 import ulaw_encode
from asterisk.sim.scenarios import World
from asterisk.sim.speech import SpeechRenderer

ROOT = Path(__file__).resolve().parents[2]
SERVER_EVENT: TypeAdapter[Any] = TypeAdapter(RealtimeServerEvent)
GREETING = "Hello, this is an AI assistant calling for Alex."
CALLEE_LINE = "Hello, this is Robin speaking."
LONG = (
    "Let me explain the whole situation in detail, because there are quite a few things to go "
    "through about the order, the invoice, the delivery date and the refund we talked about."
)
WORLD = World.model_validate(
    {
        "scenario": [
            {
                "number": "+14155550170",
                "name": "t-talk",
                "callee": {"script": [{"say": CALLEE_LINE}, {"listen": 5.0}]},
                "agent": {
                    "greeting": GREETING,
                    "turns": [
                        {"say": "Hi Robin, can we meet on Tuesday?"},
                        {
                            "text": "^book it$",
                            "tool": {
                                "name": "reschedule_call",
                                "arguments": {"when": "Thursday after 3", "reason": "asked"},
                            },
                        },
                        {"tool_output": "reschedule_call", "say": "Booked: {output}."},
                        {"text": "^drop$", "say": LONG, "drop_after": 2},
                        {"text": "^long$", "say": LONG, "speed": 2.0},
                        {"text": "^hang$", "say": LONG, "hang_after": 1},
                    ],
                },
            },
            {"number": "+14155550171", "name": "t-silent", "agent": {"silent": True}},
            {"number": "+14155550172", "name": "t-expire", "agent": {"session_limit": 0.3}},
        ]
    }
)
TOOLS = [
    {
        "type": "function",
        "name": name,
        "description": name,
        "parameters": {
            "type": "object",
            "properties": {k: {"type": "string"} for k in required},
            "required": required,
        },
    }
    for name, required in (
        ("end_call", ["reason"]),
        ("send_dtmf", ["digits"]),
        ("reschedule_call", ["when", "reason"]),
        ("request_user_info", ["question", "timeout_seconds", "recipient_message"]),
    )
]


def session_config(call_id: str, fmt: str = "pcm") -> dict[str, Any]:
    """A GA session.update body like OpenDeep's."""
    audio_format = {"type": "audio/pcm", "rate": 24000} if fmt == "pcm" else {"type": "audio/pcmu"}
    return {
        "type": "realtime",
        "instructions": "You are OpenDeep's calling agent.",
        "tools": TOOLS,
        "tracing": {"group_id": call_id},
        "audio": {
            "input": {
                "format": audio_format,
                "transcription": {"model": "gpt-4o-mini-transcribe"},
                "turn_detection": {"type": "server_vad", "silence_duration_ms": 500},
            },
            "output": {"format": audio_format, "voice": "marin"},
        },
    }


async def event(conn: AsyncRealtimeConnection, within: float = 5.0) -> dict[str, Any]:
    """The next server event, checked against the SDK's GA server-event models."""
    data: dict[str, Any] = json.loads(await asyncio.wait_for(conn.recv_bytes(), within))
    SERVER_EVENT.validate_python(data)
    return data


async def until(
    conn: AsyncRealtimeConnection,
    kind: str,
    seen: list[dict[str, Any]] | None = None,
    within: float = 5.0,
) -> dict[str, Any]:
    """Read events until one of ``kind`` (collecting the others into ``seen``)."""
    while True:
        item = await event(conn, within)
        if seen is not None:
            seen.append(item)
        if item["type"] == kind:
            return item


@asynccontextmanager
async def realtime(
    standin: RealtimeStandIn,
    scenario: str | None = "+14155550170",
    fmt: str = "pcm",
    **headers: str,
) -> AsyncIterator[tuple[AsyncRealtimeConnection, str]]:
    """A session through the real SDK, past session.created/updated; yields (conn, call id)."""
    call_id = str(uuid.uuid4())
    if scenario is not None:
        standin.assign(call_id, scenario)
    client = AsyncOpenAI(api_key="test-key", websocket_base_url=standin.url)
    async with client.realtime.connect(model="gpt-realtime", extra_headers=headers) as conn:
        created = await event(conn)
        assert created["type"] == "session.created"
        await conn.session.update(session=session_config(call_id, fmt))  # type: ignore[arg-type]
        if not headers:
            assert (await event(conn))["type"] == "session.updated"
        yield conn, call_id


def render(text: str, rate: int) -> np.ndarray[Any, np.dtype[np.int16]]:
    return SpeechRenderer().render(text, rate, "en-us")


async def append_speech(
    conn: AsyncRealtimeConnection,
    text: str,
    fmt: str = "pcm",
    lead_s: float = 1.0,
    tail_s: float = 1.0,
) -> None:
    """Append silence, a rendered line, silence, in 20 ms chunks (as fast as the socket takes)."""
    rate = 24000 if fmt == "pcm" else 8000
    pcm = np.concatenate(
        (
            np.zeros(int(lead_s * rate), np.int16),
            render(text, rate),
            np.zeros(int(tail_s * rate), np.int16),
        )
    )
    step = rate // 50
    for start in range(0, pcm.size, step):
        chunk = pcm[start : start + step]
        data = chunk.astype("<i2").tobytes() if fmt == "pcm" else ulaw_encode(chunk)
        await conn.input_audio_buffer.append(audio=base64.b64encode(data).decode())
