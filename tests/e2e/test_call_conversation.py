"""Whole calls: PbxGateway → simulated PBX → AudioSocket → CallActor → SDK → Realtime stand-in.

Each test judges the call from three sides: what the owner was told (the CallActor's messages),
what the simulated callee received (the PBX's frame log and audio), and what the Realtime
stand-in saw (its session log).
"""

from __future__ import annotations

import asyncio
import uuid
import wave
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import ray

from actors.call_conversation import apology_audio
from ai.sim.world import WorldCall, heard_runs
from asterisk.codec import encode_uuid
from tests.e2e.conftest import E2E, CallRun, make_brief
from tests.e2e.world import GOODBYE, LONG_REPLY

pytestmark = pytest.mark.e2e


async def world_call(e2e: E2E, run: CallRun, within: float = 15.0) -> WorldCall:
    """Both simulated sides' records of the call, once the PBX has ended it."""
    call: WorldCall = await e2e.world.sim.wait_call_done(str(run.spec.call_id), within)
    return call


def payloads(messages: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    """The payloads of every message of ``kind``."""
    return [m["payload"] for m in messages if m["kind"] == kind]


async def actor_gone(run: CallRun, within: float = 10.0) -> bool:
    """True once the CallActor has exited by itself (its name is released)."""
    deadline = asyncio.get_running_loop().time() + within
    name = f"call:{run.spec.call_id}"
    while asyncio.get_running_loop().time() < deadline:
        try:
            await asyncio.to_thread(ray.get_actor, name, namespace=run.spec.namespace)
        except ValueError:
            return True
        await asyncio.sleep(0.2)
    return False


# -- a normal conversation, both audio paths ---------------------------------------------------
@pytest.mark.parametrize(
    ("form", "rate", "session_format"), [("app", 8000, "pcmu"), ("context", 24000, "pcm")]
)
async def test_conversation_reports_transcript_usage_and_a_goodbye_heard_in_full(
    e2e: E2E, form: str, rate: int, session_format: str
) -> None:
    settings = e2e.settings(originate_form=form, recording=form == "context")
    run = await e2e.place_call("+14155550200", settings=settings)
    ended = await run.ended(within=40)
    messages = await run.messages()
    call = await world_call(e2e, run)
    assert call.pbx is not None and call.agent is not None

    assert ended["telephony_result"] == "answered"
    assert ended["end_reason"] == "completed"
    assert [m["seq"] for m in messages] == list(range(1, len(messages) + 1))
    kinds = [m["kind"] for m in messages]
    assert kinds[:2] == ["originated", "answered"] and kinds[-1] == "ended"
    turns = [p["turn"] for p in payloads(messages, "transcript_turn")]
    speakers = [t["speaker"] for t in turns]
    assert speakers.count("agent") == 3 and speakers.count("callee") == 2
    assert turns[-1]["text"] == GOODBYE and not turns[-1]["interrupted"]
    assert payloads(messages, "tool_call")[0]["record"]["name"] == "end_call"
    assert ended["usage"]["output_audio_tokens"] > 0

    # The path: 8 kHz app form → µ-law session; 24 kHz dialplan form → pcm passthrough.
    assert call.pbx.rate == rate and call.pbx.form == form
    assert call.agent.input_format == session_format == call.agent.output_format
    # The goodbye: the last stretch of agent audio the callee got is the whole goodbye line.
    goodbye = call.agent.said[-1]
    assert goodbye.text == GOODBYE and goodbye.status == "completed"
    assert call.pbx.ended_by == "us"
    assert abs(heard_runs(call.pbx)[-1].ms - goodbye.audio_ms) <= 20
    assert not call.agent.truncations and not call.agent.errors

    figures = ended["figures"]
    assert figures["sender_lateness_ms"]["count"] > 100
    assert figures["inbound_forward_ms"]["count"] > 100
    assert figures["setup_ms"] is not None and figures["connect_ms"] is not None
    if form == "context":  # recording on: stereo, callee left, agent right, at the call's rate
        path = Path(ended["recording_path"])
        with wave.open(str(path)) as wav:
            assert (wav.getnchannels(), wav.getframerate()) == (2, rate)
            audio = np.frombuffer(wav.readframes(wav.getnframes()), dtype="<i2").reshape(-1, 2)
        assert abs(len(audio) / rate - figures["duration_s"]) < 1.0
        assert np.abs(audio[:, 0]).max() > 1000 and np.abs(audio[:, 1]).max() > 1000
    assert await actor_gone(run)


# -- barge-in --------------------------------------------------------------------------------
async def test_barge_in_truncates_at_what_the_callee_really_heard(e2e: E2E) -> None:
    run = await e2e.place_call("+14155550201", settings=e2e.settings(originate_form="context"))
    ended = await run.ended(within=40)
    call = await world_call(e2e, run)
    assert call.pbx is not None and call.agent is not None
    assert ended["end_reason"] == "callee_hung_up"

    long_line = next(line for line in call.agent.said if line.text == LONG_REPLY)
    truncation = next(t for t in call.agent.truncations if t.item_id == long_line.item_id)
    runs = heard_runs(call.pbx)
    assert len(runs) >= 3  # greeting, the cut reply, "Of course…"
    heard_ms = runs[1].ms
    assert heard_ms < long_line.audio_ms - 1000  # really cut, not played out
    assert abs(truncation.audio_end_ms - heard_ms) <= 20
    turns = [p["turn"] for p in payloads(await run.messages(), "transcript_turn")]
    cut = next(t for t in turns if t["text"] == LONG_REPLY)
    assert cut["interrupted"]
    barge = ended["figures"]["barge_in_ms"]
    assert barge["count"] >= 1 and barge["max"] <= 40


async def test_callee_hanging_up_mid_sentence_ends_the_call(e2e: E2E) -> None:
    run = await e2e.place_call("+14155550202")
    ended = await run.ended(within=30)
    call = await world_call(e2e, run)
    assert call.pbx is not None and call.pbx.ended_by == "callee"
    assert ended["end_reason"] == "callee_hung_up"
    assert ended["telephony_result"] == "answered"
    assert call.pbx.said[-1].cut


# -- DTMF both ways ----------------------------------------------------------------------------
async def test_send_dtmf_navigates_the_ivr(e2e: E2E) -> None:
    run = await e2e.place_call("+14155550203")
    ended = await run.ended(within=40)
    messages = await run.messages()
    call = await world_call(e2e, run)
    assert call.pbx is not None
    assert call.pbx.dtmf_heard == ["1"]  # in-band tones, detected in our audio
    assert [p["digits"] for p in payloads(messages, "dtmf_sent")] == ["1"]
    assert ended["end_reason"] == "completed"  # the IVR went on, and the agent finished


async def test_callee_dtmf_reaches_the_model_and_the_transcript(e2e: E2E) -> None:
    run = await e2e.place_call("+14155550204")
    await run.ended(within=30)
    messages = await run.messages()
    call = await world_call(e2e, run)
    assert call.agent is not None
    assert [p["digit"] for p in payloads(messages, "dtmf_received")] == ["1", "2", "#"]
    texts = " ".join(t.text for t in call.agent.texts)
    for digit in ("1", "2", "#"):
        assert f'pressed the key "{digit}"' in texts
    turns = [p["turn"]["text"] for p in payloads(messages, "transcript_turn")]
    assert "[pressed 1]" in turns


# -- human in the loop ------------------------------------------------------------------------
async def test_hitl_answer_in_time_reaches_the_model(e2e: E2E) -> None:
    settings = e2e.settings(hitl_timeout_min=0.5, hitl_timeout_max=20.0)
    brief = make_brief()
    run = await e2e.place_call("+14155550205", settings=settings, brief=brief)
    request = (await run.wait_for("hitl_requested", within=20))["payload"]
    # The tool asked for 1.5 s; answer at once (the owner would after a UI answer).
    assert await run.call.provide_user_info.remote(request["request_id"], "PN-12345")
    ended = await run.ended(within=40)
    call = await world_call(e2e, run)
    assert call.agent is not None
    assert any("PN-12345" in t.text for t in call.agent.texts)
    assert any("PN-12345" in line.text for line in call.agent.said)
    assert ended["end_reason"] == "callee_hung_up"
    assert not payloads(await run.messages(), "hitl_timed_out")
    info = await run.owner.info.remote()
    assert info["resolve_calls"] == []


async def test_hitl_timeout_ends_the_call_politely(e2e: E2E) -> None:
    run = await e2e.place_call("+14155550205", verdict="TIMED_OUT")
    request = (await run.wait_for("hitl_requested", within=20))["payload"]
    timed_out = (await run.wait_for("hitl_timed_out", within=10))["payload"]
    assert timed_out["request_id"] == request["request_id"]
    ended = await run.ended(within=30)
    assert ended["end_reason"] == "user_info_timeout"
    info = await run.owner.info.remote()
    assert info["resolve_calls"] == [request["request_id"]]
    call = await world_call(e2e, run)
    assert call.agent is not None and call.pbx is not None
    assert "call you back" in call.agent.said[-1].text
    assert call.pbx.ended_by == "us"  # we hung up after the goodbye


# -- failures mid-call ------------------------------------------------------------------------
async def test_realtime_socket_drop_plays_the_apology_and_hangs_up(e2e: E2E) -> None:
    run = await e2e.place_call("+14155550206")
    ended = await run.ended(within=30)
    call = await world_call(e2e, run)
    assert call.pbx is not None and call.agent is not None and call.agent.dropped
    assert ended["end_reason"] == "technical_error"
    assert ended["telephony_result"] == "answered"
    assert call.pbx.ended_by == "us"
    apology = heard_runs(call.pbx)[-1]  # the pre-rendered spoken apology, then we hung up
    expected_ms = len(apology_audio(call.pbx.rate or 8000)) / 2 / (call.pbx.rate or 8000) * 1000
    assert abs(apology.ms - expected_ms) <= 60, (apology, expected_ms)


async def test_machine_verdict_leaves_the_voicemail_message(e2e: E2E) -> None:
    settings = e2e.settings(originate_form="context", dialplan_context="opendeep-outbound-amd")
    brief = make_brief(voicemail_message="Please call Alex back about Monday.")
    run = await e2e.place_call("+14155550207", settings=settings, brief=brief)
    ended = await run.ended(within=40)
    messages = await run.messages()
    amd = payloads(messages, "amd_verdict")
    assert amd and amd[0]["verdict"] == "MACHINE"
    assert ended["end_reason"] == "voicemail"
    call = await world_call(e2e, run)
    assert call.agent is not None
    assert any("Please call Alex back about Monday." in line.text for line in call.agent.said)


async def test_machine_verdict_without_a_message_hangs_up_at_once(e2e: E2E) -> None:
    settings = e2e.settings(originate_form="context", dialplan_context="opendeep-outbound-amd")
    run = await e2e.place_call("+14155550207", settings=settings)
    ended = await run.ended(within=30)
    assert ended["end_reason"] == "voicemail"
    call = await world_call(e2e, run)
    assert call.agent is None  # no Realtime session was opened for a machine
    assert ended["figures"]["duration_s"] < 1.0


async def test_cancel_ends_politely_with_a_goodbye(e2e: E2E) -> None:
    run = await e2e.place_call("+14155550209")
    await run.wait_for("transcript_turn", within=20)
    await run.call.cancel.remote("the user cancelled the task")
    ended = await run.ended(within=20)
    assert ended["end_reason"] == "cancelled"
    call = await world_call(e2e, run)
    assert call.agent is not None and call.pbx is not None
    assert any("goodbye" in t.text.lower() for t in call.agent.texts)
    assert call.pbx.ended_by == "us"


async def test_max_call_duration_ends_the_call(e2e: E2E) -> None:
    run = await e2e.place_call("+14155550209", settings=e2e.settings(max_call_duration=3.0))
    ended = await run.ended(within=25)
    assert ended["end_reason"] == "max_duration"
    assert ended["figures"]["duration_s"] < 10


# -- security and delivery ---------------------------------------------------------------------
async def test_foreign_uuid_is_refused_and_an_owner_restart_loses_no_message(e2e: E2E) -> None:
    run = await e2e.place_call("+14155550208")  # rings 1.5 s: time to knock first
    record = None
    for _ in range(100):
        record = e2e.world.pbx.calls.get(str(run.spec.call_id))
        if record is not None and record.audiosocket_address:
            break
        await asyncio.sleep(0.02)
    assert record is not None and record.audiosocket_address
    host, _, port = record.audiosocket_address.rpartition(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(encode_uuid(uuid.uuid4()) + bytes(3 + 320))
    await writer.drain()
    assert await asyncio.wait_for(reader.read(), 5) == b""  # dropped, nothing sent to it
    writer.close()

    await run.wait_for("answered", within=20)  # the real callee got through
    for _ in range(2):
        ray.kill(run.owner, no_restart=False)  # the owner restarts; its __init__ reloads
        await asyncio.sleep(1.0)
    ended = await run.ended(within=40)
    assert ended["end_reason"] == "completed"
    messages = await run.messages()
    assert [m["seq"] for m in messages] == list(range(1, len(messages) + 1))
    assert messages[-1]["kind"] == "ended"
    assert (await run.owner.info.remote())["restarted"]
