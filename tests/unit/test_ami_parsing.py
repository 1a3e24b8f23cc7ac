"""The AMI event router classifies real Asterisk 22 captures right, whatever the event order."""

from __future__ import annotations

import random
import uuid
from pathlib import Path

import pytest

from asterisk.ami_results import (
    AmdResult,
    AmdStatus,
    CallAnswered,
    CallEvent,
    CallHungUp,
    CallNotAnswered,
    OriginateRequest,
    OriginateResult,
    OriginateUnknown,
)
from asterisk.ami_router import CallRouter, classify, most_specific_cause
from asterisk.sim.capture import CapturedMessage, parse_capture, rebind_channel_id

pytestmark = pytest.mark.unit

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "ami"
CALL_ID = uuid.UUID("0b9f2c1e-8d1a-4c53-9a57-3f2b6b0f6c11")
R = OriginateResult

EXPECTED: dict[str, list[CallEvent]] = {
    "busy": [CallNotAnswered(CALL_ID, R.BUSY, 5, 17)],
    "noanswer": [CallNotAnswered(CALL_ID, R.NO_ANSWER, 3, 19)],
    "congestion": [CallNotAnswered(CALL_ID, R.CONGESTION, 8, 34)],
    "reject": [CallNotAnswered(CALL_ID, R.REJECTED, 0, 21)],
    "nosuchcontext": [CallNotAnswered(CALL_ID, R.FAILED, 0, 0)],
    "answer": [CallAnswered(CALL_ID), CallHungUp(CALL_ID, 0)],
    "answer-ctx": [CallAnswered(CALL_ID), CallHungUp(CALL_ID, 16)],
    "noserver": [CallAnswered(CALL_ID), CallHungUp(CALL_ID, 0)],
    "short": [CallAnswered(CALL_ID), CallHungUp(CALL_ID, 16)],
    "silent": [CallAnswered(CALL_ID), CallHungUp(CALL_ID, 0)],
    "dtmf": [CallAnswered(CALL_ID), CallHungUp(CALL_ID, 0)],
    "echo": [CallAnswered(CALL_ID), CallHungUp(CALL_ID, 0)],
    "sip": [CallAnswered(CALL_ID), CallHungUp(CALL_ID, 0)],
    "amd-userevent": [
        CallAnswered(CALL_ID),
        AmdResult(CALL_ID, AmdStatus.MACHINE, "MAXWORDS-3-2"),
        CallHungUp(CALL_ID, 16),
    ],
}


def load(name: str) -> tuple[str, list[CapturedMessage]]:
    """The capture's Originate ActionID and its events, rebound to CALL_ID."""
    messages = rebind_channel_id(
        parse_capture((FIXTURES / f"{name}.ami.txt").read_text()), str(CALL_ID)
    )
    action_id = messages[0].get("ActionID")
    assert messages[0].name == "Response:Success"
    return action_id, [m for m in messages if m.get("Event")]


def replay(action_id: str, events: list[CapturedMessage], times: list[float]) -> list[CallEvent]:
    router = CallRouter(settle_grace=1.0, orphan_wait=3.0)
    router.track(CALL_ID, action_id, now=0.0)
    out: list[CallEvent] = []
    for event, t in zip(events, times, strict=True):
        out += router.feed(event.as_dict(), t)
        out += router.poll(t)
    out += router.poll(times[-1] + 10.0)
    return out


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_capture_in_wire_order_gives_the_right_result_and_cause(name: str) -> None:
    action_id, events = load(name)
    assert replay(action_id, events, [e.t for e in events]) == EXPECTED[name]


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_capture_in_any_order_gives_the_same_result_and_cause(name: str) -> None:
    action_id, events = load(name)
    rng = random.Random(name)
    for _ in range(40):
        shuffled = events[:]
        rng.shuffle(shuffled)
        got = replay(action_id, shuffled, [i * 0.001 for i in range(len(shuffled))])
        assert sorted(got, key=repr) == sorted(EXPECTED[name], key=repr), [e.name for e in shuffled]
        if isinstance(got[-1], CallHungUp):
            assert got.index(CallAnswered(CALL_ID)) < got.index(got[-1])


def test_busy_waits_for_the_callee_leg_before_settling() -> None:
    action_id, events = load("busy")
    router = CallRouter()
    router.track(CALL_ID, action_id, now=0.0)
    late_leg = next(e for e in events if e.name == "Hangup" and e.get("Cause") == "17")
    early = [e for e in events if e is not late_leg]
    settled = [r for e in early for r in router.feed(e.as_dict(), 0.0)]
    assert settled == []  # ;1 said 0 and OriginateResponse came: the ;2 leg is still owed
    assert router.feed(late_leg.as_dict(), 0.01) == [CallNotAnswered(CALL_ID, R.BUSY, 5, 17)]


def test_a_missing_leg_settles_after_the_grace_with_what_was_seen() -> None:
    action_id, events = load("congestion")
    router = CallRouter(settle_grace=0.5)
    router.track(CALL_ID, action_id, now=0.0)
    for event in events:
        if not (event.name == "Hangup" and event.get("Cause") == "34"):
            assert router.feed(event.as_dict(), 0.0) == []
    assert router.poll(0.4) == []
    assert router.poll(0.5) == [CallNotAnswered(CALL_ID, R.CONGESTION, 8, 0)]


def test_lost_originate_response_is_unknown_then_settled_from_leg_causes() -> None:
    action_id, events = load("busy")
    router = CallRouter(orphan_wait=2.0)
    router.track(CALL_ID, action_id, now=0.0)
    assert router.connection_lost() == [OriginateUnknown(CALL_ID)]
    assert router.connection_lost() == []  # reported once
    for event in events:
        if event.name != "OriginateResponse":
            assert router.feed(event.as_dict(), 1.0) == []
    assert router.poll(2.9) == []
    assert router.poll(3.0) == [CallNotAnswered(CALL_ID, R.BUSY, None, 17)]


def test_hangup_of_an_up_leg_after_an_outage_means_it_was_answered() -> None:
    action_id, events = load("short")
    router = CallRouter()
    router.track(CALL_ID, action_id, now=0.0)
    router.connection_lost()
    hangups = [e for e in events if e.name == "Hangup"]
    got = [r for e in hangups for r in router.feed(e.as_dict(), 5.0)]
    assert got == [CallAnswered(CALL_ID), CallHungUp(CALL_ID, 16)]


def test_events_of_other_calls_are_ignored() -> None:
    _, events = load("busy")
    router = CallRouter()
    router.track(uuid.uuid4(), "other-action", now=0.0)
    assert [r for e in events for r in router.feed(e.as_dict(), 0.0)] == []
    assert router.poll(100.0) == []


def test_silent_originate_is_reported_unknown_at_its_deadline() -> None:
    router = CallRouter()
    router.track(CALL_ID, "a1", now=0.0, expect_by=40.0)
    assert router.next_deadline() == 40.0
    assert router.poll(39.9) == []
    assert router.poll(40.0) == [OriginateUnknown(CALL_ID)]
    assert router.poll(41.0) == []


def test_channel_of_names_the_originated_leg() -> None:
    action_id, events = load("answer")
    router = CallRouter()
    router.track(CALL_ID, action_id, now=0.0)
    router.feed(events[1].as_dict(), 0.0)  # Newchannel ;2 first
    router.feed(events[0].as_dict(), 0.0)
    assert router.channel_of(CALL_ID) == "Local/s@callee-answer-00000000;1"


def test_unknown_amd_status_is_passed_on_as_notsure() -> None:
    router = CallRouter()
    router.track(CALL_ID, "a1", now=0.0)
    event = {
        "Event": "UserEvent",
        "UserEvent": "OpenDeepAMD",
        "CallId": str(CALL_ID),
        "Status": "PERHAPS",
        "Cause": "X",
    }
    assert router.feed(event, 0.0) == [AmdResult(CALL_ID, AmdStatus.NOTSURE, "X")]


@pytest.mark.parametrize(
    ("reason", "causes", "expected"),
    [
        (3, [19, 19], (R.NO_ANSWER, 19)),
        (5, [0, 17], (R.BUSY, 17)),
        (8, [0, 34], (R.CONGESTION, 34)),
        (0, [21, 21], (R.REJECTED, 21)),
        (0, [0, 0], (R.FAILED, 0)),
        (0, [16, 0], (R.FAILED, 16)),
        (1, [17], (R.BUSY, 17)),
        (1, [19], (R.NO_ANSWER, 19)),
        (1, [21], (R.REJECTED, 21)),
        (1, [34], (R.CONGESTION, 34)),
        (1, [16], (R.FAILED, 16)),
        (None, [0, 17], (R.BUSY, 17)),
        (7, [0], (R.FAILED, 0)),
    ],
)
def test_reason_and_leg_causes_map_to_a_result(
    reason: int | None, causes: list[int], expected: tuple[OriginateResult, int]
) -> None:
    assert classify(reason, causes) == expected


def test_most_specific_cause_prefers_telling_causes_over_16_over_0() -> None:
    assert most_specific_cause([0, 17]) == 17
    assert most_specific_cause([16, 0]) == 16
    assert most_specific_cause([17, 16]) == 17
    assert most_specific_cause([0, 0]) == 0
    assert most_specific_cause([]) == 0


def test_app_form_originate_streams_8k_from_the_application() -> None:
    req = OriginateRequest(
        call_id=CALL_ID,
        number="+14155550100",
        audiosocket_host="10.0.0.5",
        audiosocket_port=40123,
        ring_timeout=30,
        caller_id='"OD" <1000>',
    )
    fields = req.action_fields("act-1")
    assert fields == {
        "Action": "Originate",
        "ActionID": "act-1",
        "Channel": "PJSIP/+14155550100@trunk",
        "ChannelId": str(CALL_ID),
        "Timeout": "30000",
        "Async": "true",
        "Application": "AudioSocket",
        "Data": f"{CALL_ID},10.0.0.5:40123",
        "CallerID": '"OD" <1000>',
    }


def test_context_form_originate_passes_audiosocket_variables() -> None:
    req = OriginateRequest(
        call_id=CALL_ID,
        number="+14155550100",
        audiosocket_host="::1",
        audiosocket_port=40123,
        ring_timeout=2.5,
        form="context",
        context="opendeep-outbound-amd",
        variables={"TASK": "7"},
    )
    fields = req.action_fields("act-2")
    assert fields["Async"] == "true"
    assert (fields["Context"], fields["Exten"], fields["Priority"]) == (
        "opendeep-outbound-amd",
        "s",
        "1",
    )
    assert fields["Timeout"] == "2500"
    assert fields["Variable"] == [
        "AUDIOSOCKET_ADDR=[::1]:40123",
        f"AUDIOSOCKET_UUID={CALL_ID}",
        "TASK=7",
    ]
    assert "Application" not in fields


@pytest.mark.parametrize(
    "bad",
    [
        {"number": "4155550100"},
        {"number": "+1 415 555 0100"},
        {"caller_id": "x\r\nAction: Hangup"},
        {"variables": {"A": "1\nB"}},
        {"dial_template": "PJSIP/trunk"},
        {"ring_timeout": 0},
    ],
)
def test_originate_request_refuses_bad_or_injected_values(bad: dict[str, object]) -> None:
    args: dict[str, object] = {
        "call_id": CALL_ID,
        "number": "+14155550100",
        "audiosocket_host": "127.0.0.1",
        "audiosocket_port": 9000,
        "ring_timeout": 30.0,
        **bad,
    }
    with pytest.raises(ValueError):
        OriginateRequest(**args)  # type: ignore[arg-type]
