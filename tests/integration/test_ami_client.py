"""AmiClient (on panoramisk) against the simulated PBX over real TCP on 127.0.0.1."""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import pytest

from asterisk import dtmf
from asterisk.ami import AmiClient
from asterisk.ami_results import (
    AckStatus,
    AmdResult,
    AmdStatus,
    AmiAuthenticationError,
    AmiConnectionLostError,
    AmiNotConnectedError,
    CallAnswered,
    CallEvent,
    CallHungUp,
    CallNotAnswered,
    OriginateRequest,
    OriginateResult,
    OriginateUnknown,
)
from asterisk.audiosocket import AudioSocketConnection, AudioSocketServer
from asterisk.codec import Kind
from asterisk.sim import SimulatedPbx
from asterisk.sim.scenarios import World

pytestmark = pytest.mark.integration

USER, SECRET = "opendeep", "s3cret-for-tests"
R = OriginateResult

WORLD = World.model_validate(
    {
        "scenario": [
            {
                "number": "+14155550100",
                "name": "talker",
                "callee": {"ring": 0.1, "script": [{"say": "Hi."}]},
            },
            {"number": "+14155550101", "name": "busy", "callee": {"behavior": "busy", "ring": 0}},
            {"number": "+14155550102", "name": "no-answer", "callee": {"behavior": "no_answer"}},
            {
                "number": "+14155550103",
                "name": "congestion",
                "callee": {"behavior": "congestion", "ring": 0},
            },
            {
                "number": "+14155550104",
                "name": "reject",
                "callee": {"behavior": "reject", "ring": 0.1},
            },
            {
                "number": "+14155550106",
                "name": "ivr",
                "callee": {
                    "ring": 0.1,
                    "script": [
                        {"say": "Press 1."},
                        {"wait_dtmf": "1", "timeout": 4.0},
                        {"say": "Thanks."},
                        {"hangup": True},
                    ],
                },
            },
            {"number": "+14155550107", "name": "silent", "callee": {"ring": 0.1, "silent": True}},
            {
                "number": "+14155550108",
                "name": "hangs-up",
                "callee": {
                    "ring": 0.1,
                    "script": [
                        {
                            "say": "I am busy right now so whatever you are selling",
                            "cut_after": 0.3,
                        },
                        {"hangup": True},
                    ],
                },
            },
            {
                "number": "+14155550109",
                "name": "presses",
                "callee": {"ring": 0.1, "script": [{"pause": 0.1}, {"press": "123#"}]},
            },
            {
                "number": "+14155550110",
                "name": "noserver",
                "callee": {"behavior": "noserver", "ring": 0.1},
            },
            {
                "number": "+14155550111",
                "name": "machine",
                "callee": {
                    "ring": 0.1,
                    "amd": {"status": "MACHINE", "cause": "MAXWORDS-3-2", "after": 0.2},
                },
            },
            {
                "number": "+14155550120",
                "name": "slow-busy",
                "callee": {"behavior": "busy", "ring": 0.6},
            },
        ]
    }
)


class Recorder:
    """Collects the client's typed events and waits for conditions on them."""

    def __init__(self) -> None:
        self.events: list[CallEvent] = []
        self._changed = asyncio.Event()

    def __call__(self, event: CallEvent) -> None:
        self.events.append(event)
        self._changed.set()

    def of(self, call_id: uuid.UUID) -> list[CallEvent]:
        return [e for e in self.events if e.call_id == call_id]

    async def until(self, done: Callable[[], bool], within: float = 5.0) -> None:
        async def wait() -> None:
            while not done():
                self._changed.clear()
                await self._changed.wait()

        await asyncio.wait_for(wait(), within)

    async def settled(self, call_id: uuid.UUID, within: float = 5.0) -> list[CallEvent]:
        await self.until(
            lambda: any(isinstance(e, CallNotAnswered | CallHungUp) for e in self.of(call_id)),
            within,
        )
        return self.of(call_id)


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


def make_client(pbx: SimulatedPbx, recorder: Recorder, **overrides: Any) -> AmiClient:
    options: dict[str, Any] = {
        "connect_timeout": 2.0,
        "action_timeout": 2.0,
        "reconnect_min": 0.05,
        "reconnect_max": 0.3,
        "settle_grace": 0.3,
        **overrides,
    }
    return AmiClient(
        host="127.0.0.1",
        port=pbx.ami_port,
        username=USER,
        secret=SECRET,
        on_event=recorder,
        **options,
    )


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()


@pytest.fixture
async def client(pbx: SimulatedPbx, recorder: Recorder) -> AsyncIterator[AmiClient]:
    ami = make_client(pbx, recorder)
    await ami.connect()
    yield ami
    await ami.close()


def request(call_id: uuid.UUID, number: str, port: int = 9, **extra: Any) -> OriginateRequest:
    return OriginateRequest(
        call_id=call_id,
        number=number,
        audiosocket_host="127.0.0.1",
        audiosocket_port=port,
        ring_timeout=extra.pop("ring_timeout", 3.0),
        caller_id='"OpenDeep" <1000>',
        **extra,
    )


async def first_audio_kind(conn: AudioSocketConnection) -> Kind:
    while True:
        frame = await conn.recv()
        assert frame is not None
        if frame.kind is not Kind.DTMF:
            return frame.kind


Driver = Callable[[AudioSocketConnection], Awaitable[None]]


async def hang_up_8k(conn: AudioSocketConnection) -> None:
    assert await first_audio_kind(conn) is Kind.SLIN_8K
    await conn.hangup()


async def hang_up_24k(conn: AudioSocketConnection) -> None:
    assert await first_audio_kind(conn) is Kind.SLIN_24K
    await conn.hangup()


async def wait_for_eof(conn: AudioSocketConnection) -> None:
    while await conn.recv() is not None:
        pass


Expect = Callable[[uuid.UUID], list[CallEvent]]


class Case(NamedTuple):
    """A callee scenario, how we originate it, what we do on AudioSocket, what we must hear."""

    name: str
    number: str
    expect: Expect
    extra: dict[str, Any] = {}  # noqa: RUF012 -- never mutated; NamedTuple needs a default
    driver: Driver | None = None


CONTEXT_AMD = {"form": "context", "context": "opendeep-outbound-amd"}
CASES = [
    Case("busy", "+14155550101", lambda c: [CallNotAnswered(c, R.BUSY, 5, 17)]),
    Case(
        "no-answer",
        "+14155550102",
        lambda c: [CallNotAnswered(c, R.NO_ANSWER, 3, 19)],
        {"ring_timeout": 0.3},
    ),
    Case("congestion", "+14155550103", lambda c: [CallNotAnswered(c, R.CONGESTION, 8, 34)]),
    Case("reject", "+14155550104", lambda c: [CallNotAnswered(c, R.REJECTED, 0, 21)]),
    Case("unroutable", "+14155550177", lambda c: [CallNotAnswered(c, R.FAILED, 0, 0)]),
    Case("noserver", "+14155550110", lambda c: [CallAnswered(c), CallHungUp(c, 0)]),
    Case(
        "talker-app",
        "+14155550100",
        lambda c: [CallAnswered(c), CallHungUp(c, 0)],
        driver=hang_up_8k,
    ),
    Case(
        "talker-context",
        "+14155550100",
        lambda c: [CallAnswered(c), CallHungUp(c, 16)],
        {"form": "context"},
        hang_up_24k,
    ),
    Case(
        "callee-hangs-up",
        "+14155550108",
        lambda c: [CallAnswered(c), CallHungUp(c, 16)],
        driver=wait_for_eof,
    ),
    Case(
        "amd-machine",
        "+14155550111",
        lambda c: [
            CallAnswered(c),
            AmdResult(c, AmdStatus.MACHINE, "MAXWORDS-3-2"),
            CallHungUp(c, 16),
        ],
        CONTEXT_AMD,
        hang_up_24k,
    ),
]


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
async def test_every_callee_scenario_gives_the_right_typed_result(
    pbx: SimulatedPbx, client: AmiClient, recorder: Recorder, case: Case
) -> None:
    call_id = uuid.uuid4()
    server = await AudioSocketServer.start(
        call_id, bind_host="127.0.0.1", allowed_peers=["127.0.0.1"]
    )
    try:
        ack = await client.originate(request(call_id, case.number, server.address[1], **case.extra))
        assert (ack.status, ack.message) == (AckStatus.QUEUED, "Originate successfully queued")
        if case.driver is not None:
            conn = await server.wait_connected(3.0)
            assert conn.call_id == call_id
            await case.driver(conn)
        events = await recorder.settled(call_id)
    finally:
        await server.close()
    assert events == case.expect(call_id)
    assert server.connected is (case.driver is not None)
    assert pbx.originates_received[str(call_id)] == 1


async def test_wrong_login_raises_a_clear_error_without_the_secret(
    pbx: SimulatedPbx, recorder: Recorder, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    bad = AmiClient(
        host="127.0.0.1",
        port=pbx.ami_port,
        username=USER,
        secret="wrong-pw-123",
        connect_timeout=2.0,
    )
    with pytest.raises(AmiAuthenticationError, match="Authentication failed") as info:
        await bad.connect()
    assert "wrong-pw-123" not in str(info.value)
    assert "wrong-pw-123" not in caplog.text
    assert not bad.connected
    await bad.close()


async def test_originate_without_a_connection_raises_and_sends_nothing(
    pbx: SimulatedPbx, recorder: Recorder
) -> None:
    ami = make_client(pbx, recorder)
    call_id = uuid.uuid4()
    with pytest.raises(AmiNotConnectedError):
        await ami.originate(request(call_id, "+14155550101"))
    assert pbx.originates_received[str(call_id)] == 0
    await ami.close()


async def test_originate_refused_by_the_pbx_is_reported_refused(
    client: AmiClient, recorder: Recorder
) -> None:
    call_id = uuid.uuid4()
    ack = await client.originate(request(call_id, "+14155550101", dial_template="BAD{number}"))
    assert (ack.status, ack.message) == (AckStatus.REFUSED, "Invalid channel")
    assert client.tracked_calls == 0
    await asyncio.sleep(0.1)
    assert recorder.of(call_id) == []


async def test_ami_restart_mid_call_reconnects_without_hung_futures(
    pbx: SimulatedPbx, client: AmiClient, recorder: Recorder
) -> None:
    call_id = uuid.uuid4()
    ack = await client.originate(request(call_id, "+14155550102", ring_timeout=1.0))
    assert ack.status is AckStatus.QUEUED
    await asyncio.sleep(0.2)
    await pbx.restart_ami()
    await recorder.until(lambda: OriginateUnknown(call_id) in recorder.events)
    await client.wait_connected(3.0)
    assert client.reconnects == 1
    assert client.pending_actions == 0
    # The call went on in the PBX; its events after the reconnect still settle it.
    events = await recorder.settled(call_id)
    assert events == [OriginateUnknown(call_id), CallNotAnswered(call_id, R.NO_ANSWER, 3, 19)]
    later = uuid.uuid4()
    assert (await client.originate(request(later, "+14155550101"))).status is AckStatus.QUEUED
    assert await recorder.settled(later) == [CallNotAnswered(later, R.BUSY, 5, 17)]
    assert pbx.originates_received[str(call_id)] == 1


async def test_connection_dropped_right_after_an_originate_never_sends_it_twice(
    pbx: SimulatedPbx, client: AmiClient, recorder: Recorder
) -> None:
    call_id = uuid.uuid4()
    pbx.drop_connection_on_next_originate()
    ack = await client.originate(request(call_id, "+14155550120"))
    assert ack.status is AckStatus.UNKNOWN
    assert recorder.of(call_id) == [OriginateUnknown(call_id)]
    await client.wait_connected(3.0)
    events = await recorder.settled(call_id)
    assert events == [OriginateUnknown(call_id), CallNotAnswered(call_id, R.BUSY, 5, 17)]
    await asyncio.sleep(0.3)  # well past the FullyBooted that would make panoramisk re-send
    assert pbx.originates_received[str(call_id)] == 1
    assert len(pbx.calls) == 1


async def test_half_open_connection_is_detected_by_the_ping_and_replaced(
    pbx: SimulatedPbx, recorder: Recorder
) -> None:
    ami = make_client(pbx, recorder, ping_interval=0.2, ping_timeout=0.3, action_timeout=5.0)
    await ami.connect()
    try:
        call_id = uuid.uuid4()
        await ami.originate(request(call_id, "+14155550102", ring_timeout=5.0))
        await asyncio.sleep(0.1)  # Newchannel names the call's channel
        pbx.freeze_ami()
        with pytest.raises(AmiConnectionLostError):  # in flight: fails, never hangs
            await asyncio.wait_for(ami.play_dtmf(call_id, "5"), 3.0)
        await ami.wait_connected(3.0)
        assert ami.reconnects == 1
        assert OriginateUnknown(call_id) in recorder.of(call_id)
        later = uuid.uuid4()
        await ami.originate(request(later, "+14155550101"))
        assert await recorder.settled(later) == [CallNotAnswered(later, R.BUSY, 5, 17)]
    finally:
        await ami.close()


async def pump_silence(
    conn: AudioSocketConnection, stop: asyncio.Event, prefix: bytes = b""
) -> None:
    """Send 20 ms frames (``prefix`` first, then silence) until told to stop."""
    conn.set_audio_kind(Kind.SLIN_8K)
    loop = asyncio.get_running_loop()
    data, deadline = prefix, loop.time()
    while not stop.is_set() and not conn.closed:
        chunk, data = data[:320], data[320:]
        conn.send_audio(chunk.ljust(320, b"\0"))
        deadline += 0.02
        await asyncio.sleep(max(0.0, deadline - loop.time()))


async def test_ivr_detects_the_dtmf_tones_we_send_in_our_audio(
    pbx: SimulatedPbx, client: AmiClient, recorder: Recorder
) -> None:
    call_id = uuid.uuid4()
    server = await AudioSocketServer.start(call_id, bind_host="127.0.0.1")
    stop = asyncio.Event()
    try:
        await client.originate(request(call_id, "+14155550106", server.address[1]))
        conn = await server.wait_connected(3.0)
        tones = np.concatenate((np.zeros(4000, np.int16), dtmf.generate("1", rate=8000)))
        sender = asyncio.create_task(pump_silence(conn, stop, tones.astype("<i2").tobytes()))
        await asyncio.wait_for(wait_for_eof(conn), 6.0)  # the IVR says thanks and hangs up
        stop.set()
        await sender
    finally:
        await server.close()
    record = await pbx.wait_call_done(str(call_id), 3.0)
    assert record.dtmf_heard == ["1"]
    assert [line.text for line in record.said] == ["Press 1.", "Thanks."]
    assert record.ended_by == "callee"
    assert (await recorder.settled(call_id))[-1] == CallHungUp(call_id, 16)


async def test_silent_callee_is_hung_up_after_two_seconds_without_frames(
    pbx: SimulatedPbx, client: AmiClient, recorder: Recorder
) -> None:
    call_id = uuid.uuid4()
    server = await AudioSocketServer.start(call_id, bind_host="127.0.0.1")
    loop = asyncio.get_running_loop()
    try:
        await client.originate(request(call_id, "+14155550107", server.address[1]))
        conn = await server.wait_connected(3.0)
        connected = loop.time()
        assert await asyncio.wait_for(conn.recv(), 4.0) is None  # no frame came, then EOF
        waited = loop.time() - connected
    finally:
        await server.close()
    assert 1.9 <= waited <= 2.6
    record = await pbx.wait_call_done(str(call_id), 3.0)
    assert record.ended_by == "silence"
    assert record.frames == []
    assert await recorder.settled(call_id) == [CallAnswered(call_id), CallHungUp(call_id, 0)]


async def test_callee_key_presses_arrive_as_dtmf_frames(
    pbx: SimulatedPbx, client: AmiClient, recorder: Recorder
) -> None:
    call_id = uuid.uuid4()
    server = await AudioSocketServer.start(call_id, bind_host="127.0.0.1")
    try:
        await client.originate(request(call_id, "+14155550109", server.address[1]))
        conn = await server.wait_connected(3.0)
        digits: list[bytes] = []
        while len(digits) < 4:
            frame = await asyncio.wait_for(conn.recv(), 3.0)
            assert frame is not None
            if frame.kind is Kind.DTMF:
                digits.append(frame.payload)
        await conn.hangup()
    finally:
        await server.close()
    assert digits == [b"1", b"2", b"3", b"#"]
    assert (await pbx.wait_call_done(str(call_id), 3.0)).pressed == ["1", "2", "3", "#"]


async def test_ami_play_dtmf_and_hangup_reach_the_live_call(
    pbx: SimulatedPbx, client: AmiClient, recorder: Recorder
) -> None:
    call_id = uuid.uuid4()
    server = await AudioSocketServer.start(call_id, bind_host="127.0.0.1")
    stop = asyncio.Event()
    try:
        await client.originate(request(call_id, "+14155550100", server.address[1]))
        conn = await server.wait_connected(3.0)
        sender = asyncio.create_task(pump_silence(conn, stop))
        await client.play_dtmf(call_id, "5")
        await client.hangup(call_id, cause=16)
        await asyncio.wait_for(wait_for_eof(conn), 3.0)
        stop.set()
        await sender
    finally:
        await server.close()
    record = await pbx.wait_call_done(str(call_id), 3.0)
    assert record.dtmf_via_ami == ["5"]
    assert record.ended_by == "ami"
    assert await recorder.settled(call_id) == [CallAnswered(call_id), CallHungUp(call_id, 16)]


async def test_close_stops_every_task_and_reports_calls_in_flight_unknown(
    pbx: SimulatedPbx, recorder: Recorder
) -> None:
    ami = make_client(pbx, recorder)
    await ami.connect()
    call_id = uuid.uuid4()
    await ami.originate(request(call_id, "+14155550102", ring_timeout=5.0))
    await ami.close()
    assert not ami.connected
    assert recorder.of(call_id) == [OriginateUnknown(call_id)]
    assert [t for t in asyncio.all_tasks() if t.get_name().startswith("ami-client-")] == []
