"""The simulated world and the agent scripts of the default scenario file."""

from __future__ import annotations

import asyncio
import base64
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from openai import AsyncOpenAI
from openai.resources.realtime.realtime import AsyncRealtimeConnection

from ai.sim.script import (
    AgentScript,
    CalleeLineDone,
    ScriptedAgent,
    TextReceived,
    ToolOutputReceived,
)
from ai.sim.transcripts import CalleeLine, CalleeTranscriber
from ai.sim.world import SimulatedWorld, heard_runs
from asterisk.ami_results import OriginateRequest
from asterisk.audiosocket import AudioSocketServer
from asterisk.codec import Kind
from asterisk.g711 import ulaw_decode, ulaw_encode
from asterisk.sim.scenarios import load_world
from tests.integration._realtime import event, session_config, until

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def speech_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("speech")


# -- the scripts and the transcriber ----------------------------------------------------------
E2E_TOOLS = {  # the scenario each end-to-end case uses, and the tool its agent must call
    "+14155550100": "end_call",
    "+14155550106": "send_dtmf",
    "+14155550112": "reschedule_call",
    "+14155550113": "end_call",
    "+14155550115": "request_user_info",
    "+14155550119": "request_user_info",
    "+14155550105": "end_call",
    "+14155550111": "end_call",
}


def test_every_default_scenario_has_a_valid_agent_for_its_callee() -> None:
    world = load_world()
    tools = {"end_call", "send_dtmf", "reschedule_call", "request_user_info"}
    for scenario in world.scenario:
        script = AgentScript.model_validate(scenario.agent)
        lines = sum(step.say is not None for step in scenario.callee.script)
        assert all(t.callee is None or t.callee <= lines for t in script.turns), scenario.name
        assert {t.tool.name for t in script.turns if t.tool} <= tools, scenario.name
        called = {t.tool.name for t in script.turns if t.tool}
        if scenario.number in E2E_TOOLS:
            assert E2E_TOOLS[scenario.number] in called, scenario.name
    assert AgentScript.model_validate(world.by_name("model-silent").agent).silent
    drop = AgentScript.model_validate(world.by_name("realtime-drop").agent)
    assert drop.turns[0].drop_after is not None


def test_the_hitl_script_says_the_answer_or_calls_back_on_timeout() -> None:
    script = AgentScript.model_validate(load_world().by_name("needs-info").agent)
    answered, timed_out = ScriptedAgent(script), ScriptedAgent(script)
    for agent in (answered, timed_out):
        assert agent.plan() is not None  # the greeting
        agent.notice(CalleeLineDone(1, "Claims department, how can I help?"))
        agent.plan()
        agent.notice(CalleeLineDone(2, "I'll need the policy number to find that claim."))
        ask = agent.plan()
        assert ask is not None and ask.tools[0].name == "request_user_info"
        agent.notice(
            ToolOutputReceived(
                "request_user_info", '{"status": "waiting"}', dict(ask.tools[0].arguments)
            )
        )
        hold = agent.plan()
        assert hold is not None and hold.say == ask.tools[0].arguments["recipient_message"]
    answered.notice(TextReceived("user", 'Information from the task creator: "PN-4471-XZ".'))
    answer = answered.plan()
    assert answer is not None and answer.say is not None and "PN-4471-XZ" in answer.say
    assert not answer.tools
    timed_out.notice(
        TextReceived(
            "system",
            "The task creator did not answer in time. Say you "
            "will call back with the information, then end the call.",
        )
    )
    bye = timed_out.plan()
    assert bye is not None and "call you back" in (bye.say or "")
    assert [(t.name, t.arguments["reason"]) for t in bye.tools] == [
        ("end_call", "callback_requested")
    ]


def test_the_dtmf_script_acknowledges_each_key_and_instructions_do_not_fire_the_greeting() -> None:
    agent = ScriptedAgent(AgentScript.model_validate(load_world().by_name("presses-dtmf").agent))
    first = agent.plan('Greet the callee and say "press a key".')
    assert first is not None and first.fired == ["greeting"]
    for digit in "5#":
        agent.notice(TextReceived("user", f"The callee pressed {digit} on the keypad."))
        plan = agent.plan()
        assert plan is not None and plan.say == f"Thank you, I received {digit}."
    ending = agent.plan("The task was cancelled: say goodbye and end the call.")
    assert ending is not None and ending.tools[0].arguments["reason"] == "other"


def test_the_transcriber_splits_a_line_by_voiced_time_and_cuts_words() -> None:
    lines = [CalleeLine("one two three four five six", 3000), CalleeLine("a b c d", 2000, 1000)]
    hear = CalleeTranscriber(lines)
    first = hear.hear(1000, 2500)  # half of the first line, then a pause longer than the VAD's
    rest = hear.hear(2900, 4000)
    cut = hear.hear(5000, 6000)
    extra = hear.hear(7000, 7200)
    assert (first.transcript, first.complete, first.line) == ("one two three", False, None)
    assert (rest.transcript, rest.line) == ("four five six", 1)
    assert (cut.transcript, cut.line) == ("a b", 2)
    assert (extra.transcript, extra.line) == ("", None)


# -- the simulated world ----------------------------------------------------------------------
async def test_the_world_ties_a_call_to_its_scenario_through_channel_id_and_group_id(
    speech_cache: Path,
) -> None:
    world = SimulatedWorld(ami_port=0, username="u", secret="s", speech_cache=speech_cache)
    await world.start()
    call_id = uuid.uuid4()
    server = await AudioSocketServer.start(call_id, bind_host="127.0.0.1")
    try:
        await originate(world.pbx.ami_port, call_id, "+14155550100", server.address[1])
        audio = await server.wait_connected(5)
        audio.set_audio_kind(Kind.SLIN_8K)
        client = AsyncOpenAI(api_key="k", websocket_base_url=world.realtime_url)
        async with client.realtime.connect(model="gpt-realtime") as conn:
            await conn.session.update(session=session_config(str(call_id), "pcmu"))  # type: ignore[arg-type]
            await conn.response.create()
            greeting = await agent_audio(conn)
            # What the callee hears: the greeting, paced like a CallActor's playout, then silence.
            playout = asyncio.create_task(play(audio, greeting))
            forward = asyncio.create_task(forward_callee(audio, conn))
            try:
                text = await until(
                    conn, "conversation.item.input_audio_transcription.completed", within=10
                )
                answer = await until(conn, "response.output_audio_transcript.done")
                await playout
            finally:
                forward.cancel()
                playout.cancel()
        await audio.hangup()
        both = await world.wait_call_done(str(call_id), 5)
    finally:
        await server.close()
        await world.stop()
    assert text["transcript"] == "Good morning, Bright Smile Dental, this is Dana speaking."
    assert "move Alex's appointment" in answer["transcript"]
    assert both.agent is not None and both.agent.scenario == "dentist-reception"
    assert both.pbx is not None and both.pbx.said[0].text == text["transcript"]
    # The agent's audio never goes digitally silent, so the callee's record shows exactly the
    # stretch we played (what a barge-in test compares with the truncate's audio_end_ms).
    runs = heard_runs(both.pbx)
    assert len(runs) == 1 and abs(runs[0].ms - len(greeting) / 8) <= 20
    assert world.realtime.stats.protocol_errors == 0


async def originate(ami_port: int, call_id: uuid.UUID, number: str, port: int) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", ami_port)
    await reader.readline()
    request = OriginateRequest(
        call_id=call_id,
        number=number,
        audiosocket_host="127.0.0.1",
        audiosocket_port=port,
        ring_timeout=5,
    )
    for fields in (
        [("Action", "Login"), ("Username", "u"), ("Secret", "s")],
        list(request.action_fields("a1").items()),
    ):
        text = "".join(f"{k}: {v}\r\n" for k, v in fields) + "\r\n"
        writer.write(text.encode())
    await writer.drain()
    writer.close()


async def agent_audio(conn: AsyncRealtimeConnection) -> bytes:
    """The µ-law audio of the next response."""
    data = b""
    while (item := await event(conn))["type"] != "response.done":
        if item["type"] == "response.output_audio.delta":
            data += base64.b64decode(item["delta"])
    return data


async def play(audio: Any, ulaw: bytes) -> None:
    """Send µ-law audio to the callee as 20 ms slin frames, then half a second of silence."""
    pcm = ulaw_decode(ulaw)
    pcm = np.concatenate((pcm, np.zeros(-pcm.size % 160 + 25 * 160, np.int16)))
    loop = asyncio.get_running_loop()
    start_time = loop.time()
    for number, start in enumerate(range(0, pcm.size, 160)):
        audio.send_audio(pcm[start : start + 160].astype("<i2").tobytes())
        await asyncio.sleep(max(0.0, start_time + (number + 1) * 0.02 - loop.time()))


async def forward_callee(audio: Any, conn: AsyncRealtimeConnection) -> None:
    """The CallActor's inbound pump, reduced: 8 kHz slin → µ-law → append."""
    while (frame := await audio.recv()) is not None:
        if frame.kind is Kind.SLIN_8K:
            data = ulaw_encode(np.frombuffer(frame.payload, dtype="<i2"))
            await conn.input_audio_buffer.append(audio=base64.b64encode(data).decode())


def test_python_m_ai_sim_runs_the_world_until_interrupted(tmp_path: Path) -> None:
    env = {**os.environ, "OPENDEEP_VAR_DIR": str(tmp_path)}
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "ai.sim",
            "--ami-port",
            "0",
            "--realtime-port",
            "0",
            "--speech-cache",
            str(tmp_path),
        ],
        cwd=ROOT,
        env=env,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stderr is not None
        line = ""
        deadline = time.monotonic() + 20
        while "SIMULATED WORLD" not in line and time.monotonic() < deadline:
            line = process.stderr.readline()
        assert "Realtime stand-in at ws://127.0.0.1:" in line
        process.send_signal(signal.SIGINT)
        assert process.wait(10) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
