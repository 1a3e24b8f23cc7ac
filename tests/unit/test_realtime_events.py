"""Realtime GA wire events: registry lookup, unknown and malformed events, client event shapes."""

from __future__ import annotations

import base64
import json
import logging
from typing import Any

import pytest
from openai.types.realtime import RealtimeClientEvent, RealtimeServerEvent
from pydantic import TypeAdapter

from ai import events as ev

pytestmark = pytest.mark.unit

LOGGER = "ai.events"
AUDIO = base64.b64encode(bytes(range(256)) * 4).decode()

# One GA payload per modelled server event, shaped as the openai SDK's own types describe them.
GA_SAMPLES: dict[str, dict[str, Any]] = {
    "session.created": {"session": {"type": "realtime", "id": "sess_1"}},
    "session.updated": {"session": {"type": "realtime", "id": "sess_1"}},
    "input_audio_buffer.speech_started": {"audio_start_ms": 1200, "item_id": "item_1"},
    "input_audio_buffer.speech_stopped": {"audio_end_ms": 2400, "item_id": "item_1"},
    "input_audio_buffer.committed": {"item_id": "item_1", "previous_item_id": None},
    "conversation.item.input_audio_transcription.delta": {
        "item_id": "item_1",
        "content_index": 0,
        "delta": "Hel",
    },
    "conversation.item.input_audio_transcription.completed": {
        "item_id": "item_1",
        "content_index": 0,
        "transcript": "Hello?",
        "usage": {"type": "duration", "seconds": 1.2},
    },
    "response.created": {"response": {"id": "resp_1", "status": "in_progress"}},
    "response.output_audio.delta": {
        "response_id": "resp_1",
        "item_id": "item_2",
        "output_index": 0,
        "content_index": 0,
        "delta": AUDIO,
    },
    "response.output_audio.done": {
        "response_id": "resp_1",
        "item_id": "item_2",
        "output_index": 0,
        "content_index": 0,
    },
    "response.output_audio_transcript.delta": {
        "response_id": "resp_1",
        "item_id": "item_2",
        "output_index": 0,
        "content_index": 0,
        "delta": "Hi, ",
    },
    "response.output_audio_transcript.done": {
        "response_id": "resp_1",
        "item_id": "item_2",
        "output_index": 0,
        "content_index": 0,
        "transcript": "Hi, this is an AI assistant.",
    },
    "response.function_call_arguments.done": {
        "response_id": "resp_1",
        "item_id": "item_3",
        "output_index": 1,
        "call_id": "call_1",
        "name": "send_dtmf",
        "arguments": '{"digits":"1"}',
    },
    "response.output_item.done": {
        "response_id": "resp_1",
        "output_index": 1,
        "item": {
            "id": "item_3",
            "type": "function_call",
            "status": "completed",
            "name": "send_dtmf",
            "call_id": "call_1",
            "arguments": '{"digits":"1"}',
        },
    },
    "response.done": {
        "response": {
            "id": "resp_1",
            "status": "cancelled",
            "status_details": {"type": "cancelled", "reason": "turn_detected"},
            "usage": {
                "total_tokens": 100,
                "input_tokens": 60,
                "output_tokens": 40,
                "input_token_details": {"text_tokens": 20, "audio_tokens": 40, "cached_tokens": 8},
                "output_token_details": {"text_tokens": 10, "audio_tokens": 30},
            },
        }
    },
    "conversation.item.truncated": {"item_id": "item_2", "content_index": 0, "audio_end_ms": 640},
    "error": {
        "error": {
            "type": "invalid_request_error",
            "code": "response_cancel_not_active",
            "message": "no active response",
            "event_id": "evt_c1",
        }
    },
}


def _sample(kind: str) -> dict[str, Any]:
    return {"type": kind, "event_id": "event_1", **GA_SAMPLES[kind]}


@pytest.fixture(autouse=True)
def _fresh_log_memory() -> None:
    """Each test sees unknown and malformed types for the first time."""
    ev._seen_unknown.clear()
    ev._malformed.clear()


def test_every_modelled_server_event_is_in_the_registry_and_has_a_ga_sample() -> None:
    assert set(ev.SERVER_EVENTS) == set(GA_SAMPLES)
    assert not set(ev.SERVER_EVENTS) & ev.IGNORED_SERVER_EVENTS


def test_the_samples_are_valid_ga_events_for_the_openai_sdk() -> None:
    adapter: TypeAdapter[Any] = TypeAdapter(RealtimeServerEvent)
    for kind in GA_SAMPLES:
        assert adapter.validate_python(_sample(kind)).type == kind


@pytest.mark.parametrize("kind", sorted(GA_SAMPLES))
def test_registry_lookup_returns_the_typed_model(kind: str) -> None:
    event = ev.parse_server_event(_sample(kind))
    assert isinstance(event, ev.SERVER_EVENTS[kind])
    assert event.type == kind
    assert event.event_id == "event_1"


@pytest.mark.parametrize("kind", sorted(GA_SAMPLES))
def test_decoding_a_text_frame_equals_parsing_the_decoded_object(kind: str) -> None:
    raw = _sample(kind)
    assert ev.decode_server_message(json.dumps(raw).encode()) == ev.parse_server_event(raw)
    assert ev.decode_server_message(json.dumps(raw)) == ev.parse_server_event(raw)


def test_new_fields_the_api_adds_are_ignored() -> None:
    raw = {**_sample("response.output_audio.delta"), "brand_new_field": {"x": 1}}
    event = ev.decode_server_message(json.dumps(raw))
    assert isinstance(event, ev.OutputAudioDelta)
    assert event.delta == AUDIO


def test_usage_maps_to_the_call_usage_shape() -> None:
    event = ev.parse_server_event(_sample("response.done"))
    assert isinstance(event, ev.ResponseDone)
    assert event.response.status == "cancelled"
    assert event.response.usage is not None
    usage = event.response.usage.to_usage()
    assert (usage.input_text_tokens, usage.input_audio_tokens, usage.input_cached_tokens) == (
        20,
        40,
        8,
    )
    assert (usage.output_text_tokens, usage.output_audio_tokens) == (10, 30)


@pytest.mark.parametrize(
    "beta_name",
    [
        "response.audio.delta",
        "response.audio.done",
        "response.audio_transcript.delta",
        "response.audio_transcript.done",
        "response.text.delta",
        "conversation.item.input_audio_transcription.failed_beta",
    ],
)
def test_beta_style_names_are_unknown(beta_name: str) -> None:
    raw = {**GA_SAMPLES["response.output_audio.delta"], "type": beta_name}
    assert ev.parse_server_event(raw) is None
    assert ev.decode_server_message(json.dumps(raw)) is None


def test_unknown_types_are_skipped_and_logged_once_per_type(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger=LOGGER)
    for _ in range(3):
        assert ev.parse_server_event({"type": "response.audio.delta", "delta": AUDIO}) is None
        assert ev.parse_server_event({"type": "rate_limits.updated", "rate_limits": []}) is None
    records = [r for r in caplog.records if r.name == LOGGER]
    assert [(r.levelno, "response.audio.delta" in r.getMessage()) for r in records] == [
        (logging.INFO, True),
        (logging.DEBUG, False),
    ]
    assert "rate_limits.updated" in records[1].getMessage()


@pytest.mark.parametrize(
    "raw",
    [
        {"type": "response.output_audio.delta", "response_id": "resp_1", "delta": 5},
        {"type": "input_audio_buffer.speech_started", "audio_start_ms": "soon"},
        {"type": "error", "error": "boom"},
        {"type": "response.done"},
        {"type": "response.done", "response": {"usage": {"input_tokens": "many"}}},
        {"no_type": True},
        {"type": 7},
    ],
)
def test_malformed_events_are_dropped_without_raising(raw: dict[str, Any]) -> None:
    assert ev.parse_server_event(raw) is None
    assert ev.decode_server_message(json.dumps(raw)) is None


def test_a_malformed_delta_is_logged_without_its_audio(caplog: pytest.LogCaptureFixture) -> None:
    raw = {"type": "response.output_audio.delta", "item_id": 3, "delta": AUDIO}
    assert ev.decode_server_message(json.dumps(raw)) is None
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "response_id" in warnings[0] and "item_id" in warnings[0]
    assert AUDIO[:16] not in warnings[0]


def test_a_stream_of_malformed_events_cannot_flood_the_log(
    caplog: pytest.LogCaptureFixture,
) -> None:
    for _ in range(100):
        ev.parse_server_event({"type": "response.output_audio.delta"})
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 7  # counts 1, 2, 4, 8, 16, 32, 64


@pytest.mark.parametrize("data", [b"not json", b"\xff\xfe", b"[1, 2]", b'"text"', b""])
def test_frames_that_are_not_json_objects_are_dropped(data: bytes) -> None:
    assert ev.decode_server_message(data) is None


def test_a_delta_token_inside_another_events_text_does_not_take_the_fast_path() -> None:
    raw = _sample("response.output_audio_transcript.done")
    raw["transcript"] = 'say "response.output_audio.delta" aloud'
    event = ev.decode_server_message(json.dumps(raw))
    assert isinstance(event, ev.OutputAudioTranscriptDone)


CLIENT_EVENTS: list[ev.ClientEvent] = [
    ev.SessionUpdate(session={"type": "realtime", "instructions": "x"}),
    ev.InputAudioBufferAppend(audio=AUDIO),
    ev.ConversationItemCreate(item=ev.UserMessageItem(content=[ev.InputText(text="hi")])),
    ev.ConversationItemCreate(item=ev.FunctionCallOutputItem(call_id="call_1", output="ok")),
    ev.ResponseCreate(),
    ev.ResponseCreate(response=ev.ResponseOptions(instructions="Say goodbye.")),
    ev.ResponseCancel(),
    ev.ConversationItemTruncate(item_id="item_2", audio_end_ms=640),
]


@pytest.mark.parametrize("event", CLIENT_EVENTS, ids=lambda e: e.type)
def test_client_events_serialise_to_ga_shapes_the_sdk_accepts(event: ev.ClientEvent) -> None:
    wire = json.loads(event.to_json())
    assert wire["type"] == event.type
    assert None not in wire.values()
    parsed = TypeAdapter(RealtimeClientEvent).validate_python(wire)
    assert parsed.type == event.type


def test_truncate_names_the_first_content_part() -> None:
    wire = json.loads(ev.ConversationItemTruncate(item_id="i", audio_end_ms=5).to_json())
    assert wire == {
        "type": "conversation.item.truncate",
        "item_id": "i",
        "content_index": 0,
        "audio_end_ms": 5,
    }
