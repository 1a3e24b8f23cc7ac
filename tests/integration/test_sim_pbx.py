"""The simulated PBX speaks AMI like the captured Asterisk 22: events, fields, order, causes."""

from __future__ import annotations

import asyncio
import itertools
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any, NamedTuple

import pytest

from asterisk.ami_results import OriginateRequest
from asterisk.audiosocket import AudioSocketConnection, AudioSocketServer
from asterisk.codec import Kind
from asterisk.sim import SimulatedPbx
from asterisk.sim.__main__ import main as sim_main
from asterisk.sim.capture import CapturedMessage, parse_capture
from asterisk.sim.scenarios import World, load_world

pytestmark = pytest.mark.integration

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "ami"
USER, SECRET = "opendeep", "test-secret"

WORLD = World.model_validate(
    {
        "scenario": [
            {
                "number": "+14155550100",
                "name": "answer",
                "callee": {"ring": 0, "script": [{"say": "Hello."}]},
            },
            {"number": "+14155550101", "name": "busy", "callee": {"behavior": "busy", "ring": 0}},
            {"number": "+14155550102", "name": "noanswer", "callee": {"behavior": "no_answer"}},
            {
                "number": "+14155550103",
                "name": "congestion",
                "callee": {"behavior": "congestion", "ring": 0},
            },
            {
                "number": "+14155550104",
                "name": "reject",
                "callee": {"behavior": "reject", "ring": 0},
            },
            {"number": "+14155550107", "name": "silent", "callee": {"ring": 0, "silent": True}},
            {
                "number": "+14155550109",
                "name": "dtmf",
                "callee": {"ring": 0, "script": [{"pause": 0.1}, {"press": "123#"}]},
            },
            {
                "number": "+14155550110",
                "name": "noserver",
                "callee": {"behavior": "noserver", "ring": 0},
            },
            {
                "number": "+14155550111",
                "name": "amd",
                "callee": {
                    "ring": 0,
                    "amd": {"status": "MACHINE", "cause": "MAXWORDS-3-2", "after": 0.2},
                },
            },
            {
                "number": "+14155550114",
                "name": "short",
                "callee": {"ring": 0, "script": [{"say": "Bye."}, {"hangup": True}]},
            },
        ]
    }
)

# What the simulated PBX emits; captures also hold dialplan-internal events (Newexten, MixMonitor).
SIM_EVENTS = {
    "Newchannel",
    "VarSet",
    "NewCallerid",
    "NewConnectedLine",
    "DialBegin",
    "DialState",
    "DialEnd",
    "Newstate",
    "OriginateResponse",
    "HangupRequest",
    "SoftHangupRequest",
    "Hangup",
    "DTMFBegin",
    "DTMFEnd",
    "UserEvent",
}
OUR_VARIABLES = {"AUDIOSOCKET_ADDR", "AUDIOSOCKET_UUID", "AMDSTATUS", "AMDCAUSE"}


class RawAmi:
    """A bare AMI client: what goes over the wire, nothing interpreted."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.banner = ""
        self.ids = itertools.count(1)

    @classmethod
    async def open(cls, port: int) -> RawAmi:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        ami = cls(reader, writer)
        ami.banner = (await asyncio.wait_for(reader.readline(), 2)).decode()
        return ami

    async def send(self, fields: dict[str, Any]) -> None:
        lines = []
        for key, value in fields.items():
            values = value if isinstance(value, list) else [value]
            lines += [f"{key}: {v}" for v in values]
        self.writer.write(("\r\n".join(lines) + "\r\n\r\n").encode())
        await self.writer.drain()

    async def read(self) -> CapturedMessage:
        data = await asyncio.wait_for(self.reader.readuntil(b"\r\n\r\n"), 5)
        fields = []
        for line in data.decode().split("\r\n"):
            if line:
                key, _, value = line.partition(": ")
                fields.append((key, value))
        return CapturedMessage(0.0, tuple(fields))

    async def action(self, fields: dict[str, Any]) -> CapturedMessage:
        await self.send({**fields, "ActionID": f"raw-{next(self.ids)}"})
        while True:
            message = await self.read()
            if message.get("Response"):
                return message

    async def login(self) -> CapturedMessage:
        return await self.action({"Action": "Login", "Username": USER, "Secret": SECRET})

    async def close(self) -> None:
        self.writer.close()


@pytest.fixture
async def pbx(tmp_path: Path) -> AsyncIterator[SimulatedPbx]:
    sim = SimulatedPbx(
        host="127.0.0.1",
        port=0,
        username=USER,
        secret=SECRET,
        world=WORLD,
        speech_cache=tmp_path,
    )
    await sim.start()
    yield sim
    await sim.stop()


@pytest.fixture
async def ami(pbx: SimulatedPbx) -> AsyncIterator[RawAmi]:
    client = await RawAmi.open(pbx.ami_port)
    reply = await client.login()
    assert reply.get("Message") == "Authentication accepted"
    assert (await client.read()).get("Event") == "FullyBooted"
    yield client
    await client.close()


def leg_of(message: CapturedMessage) -> str:
    channel = message.get("Channel") or message.get("DestChannel")
    return channel[channel.rfind(";") :] if ";" in channel else ""


def shape(message: CapturedMessage) -> tuple[str, ...]:
    """Everything that must match a capture: names, field names in order, states, causes."""
    return (
        message.name,
        leg_of(message),
        ",".join(message.keys),
        *(
            message.get(k)
            for k in (
                "ChannelState",
                "DestChannelState",
                "Cause",
                "Cause-txt",
                "Reason",
                "Response",
                "DialStatus",
                "Variable",
                "Digit",
                "Direction",
                "UserEvent",
                "Status",
            )
        ),
    )


def comparable(messages: list[CapturedMessage]) -> tuple[list[tuple[str, ...]], list[Any]]:
    """Sequence shapes, with two races of real Asterisk taken out of the order.

    The two legs' ``Newstate`` Up come in either order (answer.ami: ;2 first; short.ami: ;1
    first), and ``OriginateResponse`` Success lands anywhere around them (before them in
    answer-ctx/noserver/dtmf, after DialEnd in answer/silent): it is compared on its own.
    """
    picked = [
        m
        for m in messages
        if m.name in SIM_EVENTS and (m.name != "VarSet" or m.get("Variable") in OUR_VARIABLES)
    ]
    success = [
        shape(m) for m in picked if m.name == "OriginateResponse" and m.get("Response") == "Success"
    ]
    rest = [
        m for m in picked if not (m.name == "OriginateResponse" and m.get("Response") == "Success")
    ]
    shapes = [shape(m) for m in rest]
    for i in range(len(shapes) - 1):
        a, b = shapes[i], shapes[i + 1]
        if a[0] == b[0] == "Newstate" and a[3] == b[3] == "6" and a[1] > b[1]:
            shapes[i], shapes[i + 1] = b, a
    return shapes, success


def capture(name: str) -> list[CapturedMessage]:
    return parse_capture((FIXTURES / f"{name}.ami.txt").read_text())


async def originate(
    ami: RawAmi,
    call_id: uuid.UUID,
    number: str,
    port: int,
    *,
    form: str = "app",
    context: str = "opendeep-outbound",
    ring_timeout: float = 5.0,
) -> CapturedMessage:
    request = OriginateRequest(
        call_id=call_id,
        number=number,
        audiosocket_host="127.0.0.1",
        audiosocket_port=port,
        ring_timeout=ring_timeout,
        form=form,  # type: ignore[arg-type]  # "app" | "context", checked by the dataclass
        context=context,
        caller_id='"Outbound" <1000>',
    )
    fields = request.action_fields(f"act-{call_id.hex[:8]}")
    await ami.send(fields)
    return await ami.read()


async def events_until_done(ami: RawAmi, call_id: uuid.UUID) -> list[CapturedMessage]:
    """Read this call's events until OriginateResponse and both legs' Hangup have come."""
    key, seen, hung = str(call_id), list[CapturedMessage](), set[str]()
    response = False
    while not (response and hung == {";1", ";2"}):
        message = await ami.read()
        if key not in (
            message.get("Linkedid"),
            message.get("DestLinkedid"),
            message.get("Uniqueid"),
        ):
            continue
        seen.append(message)
        response |= message.name == "OriginateResponse"
        if message.name == "Hangup":
            hung.add(leg_of(message))
    return seen


Driver = Callable[[AudioSocketConnection], Any]


async def we_hang_up(conn: AudioSocketConnection) -> None:
    await asyncio.sleep(0.2)
    await conn.hangup()


async def callee_hangs_up(conn: AudioSocketConnection) -> None:
    while await conn.recv() is not None:
        pass


async def dtmf_then_hang_up(conn: AudioSocketConnection) -> None:
    digits: list[str] = []
    while len(digits) < 4:
        frame = await conn.recv()
        assert frame is not None
        if frame.kind is Kind.DTMF:
            digits.append(frame.payload.decode())
    assert digits == ["1", "2", "3", "#"]
    await conn.hangup()


class Case(NamedTuple):
    """One capture to reproduce, and what our side does once AudioSocket is up."""

    capture: str
    number: str
    form: str = "app"
    context: str = "opendeep-outbound"
    driver: Driver | None = None


CASES = [
    Case("busy", "+14155550101"),
    Case("congestion", "+14155550103"),
    Case("noanswer", "+14155550102"),
    Case("reject", "+14155550104"),
    Case("nosuchcontext", "+14155550188"),
    Case("noserver", "+14155550110"),
    Case("answer", "+14155550100", driver=we_hang_up),
    Case("answer-ctx", "+14155550100", form="context", driver=we_hang_up),
    Case("short", "+14155550114", driver=callee_hangs_up),
    Case("silent", "+14155550107", driver=callee_hangs_up),
    Case("dtmf", "+14155550109", driver=dtmf_then_hang_up),
]


@pytest.mark.parametrize("case", CASES, ids=[c.capture for c in CASES])
async def test_simulated_call_matches_the_asterisk_capture(
    pbx: SimulatedPbx, ami: RawAmi, case: Case
) -> None:
    call_id = uuid.uuid4()
    server = await AudioSocketServer.start(call_id, bind_host="127.0.0.1")
    try:
        ack = await originate(
            ami,
            call_id,
            case.number,
            server.address[1],
            form=case.form,
            context=case.context,
            ring_timeout=0.3,
        )
        assert (ack.get("Response"), ack.get("Message")) == (
            "Success",
            "Originate successfully queued",
        )
        collector = asyncio.create_task(events_until_done(ami, call_id))
        if case.driver is not None:
            await case.driver(await server.wait_connected(3.0))
        events = await asyncio.wait_for(collector, 6.0)
    finally:
        await server.close()
    record = await pbx.wait_call_done(str(call_id), 3.0)
    assert comparable(events) == comparable(capture(case.capture))
    wire = [(m.name, m.keys) for m in events]
    assert [(m.name, m.keys) for m in record.ami_log if m.get("Event")] == wire


async def test_amd_context_reports_the_verdict_like_the_sample_dialplan(
    pbx: SimulatedPbx, ami: RawAmi
) -> None:
    call_id = uuid.uuid4()
    server = await AudioSocketServer.start(call_id, bind_host="127.0.0.1")
    try:
        await originate(
            ami,
            call_id,
            "+14155550111",
            server.address[1],
            form="context",
            context="opendeep-outbound-amd",
        )
        collector = asyncio.create_task(events_until_done(ami, call_id))
        await we_hang_up(await server.wait_connected(3.0))
        events = await asyncio.wait_for(collector, 6.0)
    finally:
        await server.close()
    ours, _ = comparable(events)
    theirs, _ = comparable(capture("amd-userevent"))
    upto = next(i for i, s in enumerate(theirs) if s[0] == "UserEvent") + 1
    assert ours[:upto] == theirs[:upto]
    verdict = next(m for m in events if m.name == "UserEvent")
    assert (verdict.get("CallId"), verdict.get("Status"), verdict.get("Cause")) == (
        str(call_id),
        "MACHINE",
        "MAXWORDS-3-2",
    )
    assert {(leg_of(m), m.get("Cause")) for m in events if m.name == "Hangup"} == {
        (";1", "16"),
        (";2", "16"),
    }


async def test_no_answer_comes_exactly_at_the_originate_timeout(
    pbx: SimulatedPbx, ami: RawAmi
) -> None:
    call_id = uuid.uuid4()
    loop = asyncio.get_running_loop()
    start = loop.time()
    await originate(ami, call_id, "+14155550102", 9, ring_timeout=0.5)
    events = await events_until_done(ami, call_id)
    response = next(m for m in events if m.name == "OriginateResponse")
    assert response.get("Reason") == "3"
    assert 0.45 <= loop.time() - start <= 0.8


async def test_banner_ping_logoff_and_unknown_actions_answer_like_asterisk(
    pbx: SimulatedPbx,
) -> None:
    client = await RawAmi.open(pbx.ami_port)
    assert client.banner == "Asterisk Call Manager/11.0.0\r\n"
    denied = await client.action({"Action": "Ping"})
    assert (denied.get("Response"), denied.get("Message")) == ("Error", "Permission denied")
    await client.login()
    assert (await client.read()).get("Event") == "FullyBooted"
    pong = await client.action({"Action": "Ping"})
    assert (pong.get("Response"), pong.get("Ping")) == ("Success", "Pong")
    assert pong.keys[:3] == ("Response", "ActionID", "Ping")
    unknown = await client.action({"Action": "CoreShowChannels"})
    assert (unknown.get("Response"), unknown.get("Message")) == ("Error", "Invalid/unknown command")
    bye = await client.action({"Action": "Logoff"})
    assert bye.get("Response") == "Goodbye"
    assert await client.reader.read() == b""  # closed after Goodbye
    await client.close()


async def test_wrong_secret_is_refused_and_the_connection_closed(pbx: SimulatedPbx) -> None:
    client = await RawAmi.open(pbx.ami_port)
    reply = await client.action({"Action": "Login", "Username": USER, "Secret": "nope"})
    assert (reply.get("Response"), reply.get("Message")) == ("Error", "Authentication failed")
    assert await client.reader.read() == b""
    await client.close()


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        (
            {"Channel": "PJSIP/+14155550100@trunk", "Application": "AudioSocket"},
            "The simulated PBX requires Async: true (a synchronous Originate blocks AMI)",
        ),
        ({"Async": "true", "Application": "AudioSocket"}, "Channel not specified"),
        (
            {"Async": "true", "Channel": "PJSIP/+14155550100@trunk", "Exten": "s"},
            "Originate with 'Exten' requires 'Context' and 'Priority'",
        ),
    ],
)
async def test_malformed_originate_is_refused_with_an_error(
    pbx: SimulatedPbx, ami: RawAmi, fields: dict[str, str], message: str
) -> None:
    reply = await ami.action({"Action": "Originate", "ChannelId": "x-1", **fields})
    assert (reply.get("Response"), reply.get("Message")) == ("Error", message)
    assert pbx.originates_received["x-1"] == 1
    assert "x-1" not in pbx.calls


async def test_answered_call_records_what_the_callee_heard_and_said(
    pbx: SimulatedPbx, ami: RawAmi, tmp_path: Path
) -> None:
    call_id = uuid.uuid4()
    server = await AudioSocketServer.start(call_id, bind_host="127.0.0.1")
    try:
        await originate(ami, call_id, "+14155550100", server.address[1])
        conn = await server.wait_connected(3.0)
        conn.set_audio_kind(Kind.SLIN_8K)
        for _ in range(25):
            conn.send_audio(b"\x10\x00" * 160)
            await asyncio.sleep(0.02)
        await conn.hangup()
    finally:
        await server.close()
    record = await pbx.wait_call_done(str(call_id), 3.0)
    assert record.ended_by == "us"
    assert record.audiosocket_uuid == str(call_id)
    audio = [f for f in record.frames if f.kind == Kind.SLIN_8K]
    assert len(audio) == 25 and all(f.size == 320 for f in audio)
    assert record.frames[-1].kind == Kind.HANGUP
    assert [line.text for line in record.said] == ["Hello."]
    record.write_wav(tmp_path / "heard.wav")
    assert (tmp_path / "heard.wav").stat().st_size == 44 + 25 * 320


def test_simulated_world_doc_lists_every_scenario_of_the_default_file() -> None:
    doc = (Path(__file__).resolve().parents[2] / "docs" / "simulated-world.md").read_text()
    rows = [
        tuple(cell.strip() for cell in line.strip().strip("|").split("|"))
        for line in doc.splitlines()
        if line.startswith("| +")
    ]
    world = load_world()
    assert rows == [(s.number, s.name, s.callee.behavior, s.description) for s in world.scenario]


def test_list_scenarios_prints_number_scenario_and_description(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert sim_main(["--list-scenarios"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].split()[:3] == ["number", "scenario", "behavior"]
    assert any(line.startswith("+14155550106") and "ivr-menu" in line for line in out)
    assert len(out) == 1 + len(load_world().scenario)
