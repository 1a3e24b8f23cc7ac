"""A CallActor's dial phase against the simulated PBX: every way a call can fail to connect."""

from __future__ import annotations

import pytest

from tests.e2e.conftest import E2E

pytestmark = pytest.mark.e2e


@pytest.mark.parametrize(
    ("number", "result", "reason", "cause"),
    [
        ("+14155550101", "busy", 5, 17),
        ("+14155550102", "no_answer", 3, 19),
        ("+14155550103", "congestion", 8, 34),
        ("+14155550104", "rejected", 0, 21),
    ],
)
async def test_unanswered_call_reports_result_reason_and_cause(
    e2e: E2E, number: str, result: str, reason: int, cause: int
) -> None:
    run = await e2e.place_call(number, settings=e2e.settings(ring_timeout=1.5))
    ended = await run.ended(within=20)
    assert ended["telephony_result"] == result
    assert ended["end_reason"] == "not_answered"
    assert ended["originate_reason"] == reason
    assert ended["hangup_cause"] == cause
    assert await run.kinds() == ["originated", "ended"]
    assert ended["figures"]["originate_ms"] is not None


async def test_answered_but_never_connected_ends_not_connected(e2e: E2E) -> None:
    run = await e2e.place_call("+14155550110")
    ended = await run.ended(within=20)
    assert ended["telephony_result"] == "answered"
    assert ended["end_reason"] == "not_connected"
    assert await run.kinds() == ["originated", "ended"]


async def test_cancel_while_ringing_hangs_up_and_ends_cancelled(e2e: E2E) -> None:
    run = await e2e.place_call("+14155550102", settings=e2e.settings(ring_timeout=10.0))
    await run.wait_for("originated", within=10)
    await run.call.cancel.remote()
    ended = await run.ended(within=10)
    assert ended["end_reason"] == "cancelled"
    record = await e2e.world.pbx.wait_call_done(str(run.spec.call_id), 5)
    assert record.outcome != "answered"


async def test_originate_of_unknown_fate_is_settled_by_the_audiosocket_connection(
    e2e: E2E,
) -> None:
    # The AMI link drops right after the Originate: no reply, never re-sent; the callee's
    # AudioSocket connection then proves the call was answered.
    await e2e.start_gateway(e2e.settings())
    e2e.world.pbx.drop_connection_on_next_originate()
    run = await e2e.place_call("+14155550202")
    ended = await run.ended(within=30)
    assert ended["telephony_result"] == "answered"
    assert ended["end_reason"] == "callee_hung_up"
    assert e2e.world.pbx.originates_received[str(run.spec.call_id)] == 1
    assert "answered" in await run.kinds()
