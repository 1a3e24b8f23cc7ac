"""CallReporter: numbered messages reach the owner in order, through restarts, none lost."""

from __future__ import annotations

import asyncio
import datetime as dt
import uuid
from typing import Any

import pytest
from ray.exceptions import RayActorError

from actors.call_report import CallReporter, OwnerUnavailableError
from db.messages import CallMessageKind, Originated

pytestmark = pytest.mark.unit

AT = dt.datetime(2026, 1, 5, 9, 0, tzinfo=dt.UTC)


class _Method:
    def __init__(self, owner: FakeOwner, name: str) -> None:
        self._owner, self._name = owner, name

    def remote(self, *args: Any) -> Any:
        return self._owner.call(self._name, *args)


class FakeOwner:
    """An owner that can be down (not found), dying mid-call, or slow."""

    def __init__(self) -> None:
        self.applied: list[int] = []
        self.received: list[int] = []
        self.fail_next = 0
        self.answer = "ANSWERED"

    def __getattr__(self, name: str) -> _Method:
        return _Method(self, name)

    async def call(self, name: str, *args: Any) -> Any:
        await asyncio.sleep(0)
        if self.fail_next:
            self.fail_next -= 1
            raise RayActorError()
        if name == "report":
            seq = args[0]["seq"]
            self.received.append(seq)
            if not self.applied or seq > self.applied[-1]:
                self.applied.append(seq)
            return None
        return self.answer


def _reporter(lookup: dict[str, Any]) -> CallReporter:
    async def resolve(name: str, namespace: str) -> Any:
        if name not in lookup:
            raise ValueError(f"no actor {name}")
        return lookup[name]

    return CallReporter(
        uuid.uuid4(), "task:x", "ns", resolve=resolve, backoff_min=0.001, backoff_max=0.005
    )


async def test_messages_are_numbered_from_one_and_delivered_in_order() -> None:
    owner = FakeOwner()
    reporter = _reporter({"task:x": owner})
    for _ in range(20):
        reporter.report(CallMessageKind.ORIGINATED, Originated(at=AT))
    assert await reporter.wait_delivered(20, 2.0)
    assert owner.applied == list(range(1, 21))
    await reporter.close()


async def test_missing_then_failing_owner_loses_nothing_and_the_call_goes_on() -> None:
    lookup: dict[str, Any] = {}
    reporter = _reporter(lookup)
    for _ in range(5):
        reporter.report(CallMessageKind.ORIGINATED, Originated(at=AT))  # never blocks
    await asyncio.sleep(0.05)
    assert reporter.delivered_seq == 0 and reporter.undelivered == 5
    owner = FakeOwner()
    owner.fail_next = 3  # restarting: calls fail, the handle is looked up again
    lookup["task:x"] = owner
    for _ in range(5):
        reporter.report(CallMessageKind.ORIGINATED, Originated(at=AT))
    assert await reporter.wait_delivered(10, 2.0)
    assert owner.applied == list(range(1, 11))
    assert reporter.retries > 3
    await reporter.close()


async def test_ask_returns_the_owner_answer_or_gives_up_in_time() -> None:
    owner = FakeOwner()
    reporter = _reporter({"task:x": owner})
    owner.fail_next = 2
    assert await reporter.ask("resolve_hitl_timeout", "r1", timeout=1.0) == "ANSWERED"
    empty = _reporter({})
    with pytest.raises(OwnerUnavailableError):
        await empty.ask("resolve_hitl_timeout", "r1", timeout=0.05)
