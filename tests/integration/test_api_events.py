"""``GET /api/events`` through a real uvicorn server on SQLite and real PostgreSQL: events in
order, tenant-scoped, resumable with Last-Event-ID, keepalives, and nothing left running when
the client goes away. Plus the gap rule that keeps late-committing ids from being skipped."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import uuid
from collections.abc import AsyncIterator

import httpx
import pytest

from db.engine import Database
from db.repo.feed import EventMark, events_after, latest_event_id
from db.shapes import utcnow
from serve_app.api_events import GapWatch, StreamTiming
from tests.integration._api import (
    NEW_TASK,
    RecordingNudger,
    SseEvent,
    Tenant,
    assert_error,
    build,
    make_tenant,
    read_events,
    serve,
)

pytestmark = pytest.mark.integration

READ_TIMEOUT = 15.0


class Live:
    """A running server with two tenants, and an HTTP client of it."""

    def __init__(self, db: Database, url: str, a: Tenant, b: Tenant) -> None:
        self.db, self.url, self.a, self.b = db, url, a, b
        self.client = httpx.AsyncClient(base_url=url, timeout=READ_TIMEOUT)

    async def create(self, tenant: Tenant, title: str) -> str:
        """A task of ``tenant`` created over HTTP; its id."""
        body = {**NEW_TASK, "title": title}
        response = await self.client.post("/api/tasks", json=body, headers=tenant.auth)
        assert response.status_code == 201, response.text
        task_id: str = response.json()["id"]
        return task_id

    async def cancel(self, tenant: Tenant, task_id: str) -> None:
        """Cancel a task over HTTP."""
        response = await self.client.post(f"/api/tasks/{task_id}/cancel", headers=tenant.auth)
        assert response.status_code == 200, response.text


@pytest.fixture
async def live(database: Database) -> AsyncIterator[Live]:
    """Tenants a and b, the API behind uvicorn, and a client."""
    a = await make_tenant(database, "tenant-a")
    b = await make_tenant(database, "tenant-b")
    async with serve(build(database, RecordingNudger())) as url:
        world = Live(database, url, a, b)
        try:
            yield world
        finally:
            await world.client.aclose()


async def _stream(
    live: Live,
    tenant: Tenant,
    count: int,
    *,
    query: str = "",
    headers: dict[str, str] | None = None,
    during: list[tuple[Tenant, str]] | None = None,
    comments: list[str] | None = None,
) -> list[SseEvent]:
    """Open the stream, create ``during`` tasks once it is open, read ``count`` events."""
    async with (
        asyncio.timeout(READ_TIMEOUT),
        live.client.stream(
            "GET", f"/api/events{query}", headers={**tenant.auth, **(headers or {})}
        ) as response,
    ):
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        assert response.headers["cache-control"] == "no-cache"
        for owner, title in during or []:
            await live.create(owner, title)
        return await read_events(response, count, comments=comments)


def _payloads(events: list[SseEvent]) -> list[dict[str, object]]:
    assert all(e.event == "task_event" for e in events)
    payloads = [json.loads(e.data) for e in events]
    assert [str(p["id"]) for p in payloads] == [e.id for e in events]
    return payloads


async def test_new_events_arrive_in_order_and_only_the_tenants_own(live: Live) -> None:
    before = await live.create(live.a, "before the stream")  # not sent: the stream starts now
    events = await _stream(
        live,
        live.a,
        3,
        during=[
            (live.b, "B one"),
            (live.a, "A one"),
            (live.b, "B two"),
            (live.a, "A two"),
            (live.a, "A three"),
        ],
    )
    payloads = _payloads(events)
    assert [p["task_title"] for p in payloads] == ["A one", "A two", "A three"]
    assert [p["kind"] for p in payloads] == ["TASK_CREATED"] * 3
    ids = [int(str(p["id"])) for p in payloads]
    assert ids == sorted(ids)
    first = payloads[0]
    assert set(first) == {"id", "task_id", "task_title", "call_id", "at", "kind", "message", "data"}
    assert str(first["at"]).endswith("Z") and first["call_id"] is None
    assert before not in {p["task_id"] for p in payloads}


async def test_after_zero_replays_everything_and_last_event_id_resumes(live: Live) -> None:
    first = await live.create(live.a, "one")
    await live.create(live.b, "theirs")
    await live.cancel(live.a, first)
    await live.create(live.a, "two")
    replay = _payloads(await _stream(live, live.a, 3, query="?after=0"))
    assert [p["kind"] for p in replay] == ["TASK_CREATED", "CANCELLED", "TASK_CREATED"]
    assert [p["task_title"] for p in replay] == ["one", "one", "two"]
    second_id = str(replay[1]["id"])
    resumed = _payloads(
        await _stream(live, live.a, 1, headers={"Last-Event-ID": second_id}, query="?after=0")
    )
    assert resumed == replay[2:]  # Last-Event-ID wins over ?after
    later = _payloads(await _stream(live, live.a, 1, query=f"?after={second_id}"))
    assert later == replay[2:]


async def test_a_quiet_stream_sends_keepalive_comments(database: Database) -> None:
    a = await make_tenant(database, "quiet")
    timing = StreamTiming(poll_seconds=0.02, keepalive_seconds=0.1)
    async with serve(build(database, RecordingNudger(), timing)) as url:
        comments: list[str] = []
        async with (
            httpx.AsyncClient(base_url=url, timeout=READ_TIMEOUT) as client,
            client.stream("GET", "/api/events", headers=a.auth) as response,
        ):
            async for line in response.aiter_lines():
                if line.startswith(":"):
                    comments.append(line)
                    if len(comments) == 2:
                        break
    assert comments == [": keepalive", ": keepalive"]


async def test_a_client_that_leaves_leaves_nothing_running(live: Live) -> None:
    await asyncio.sleep(0.1)  # let the server's own start-up tasks settle
    baseline = {t for t in asyncio.all_tasks() if not t.done()}
    for _ in range(3):
        async with live.client.stream("GET", "/api/events", headers=live.a.auth) as response:
            assert response.status_code == 200
            async for _line in response.aiter_lines():
                break
    async with asyncio.timeout(5):
        while extra := {t for t in asyncio.all_tasks() if not t.done()} - baseline:  # noqa: ASYNC110 -- polling the loop's own task set
            await asyncio.sleep(0.05)
    assert not extra


BAD_STARTS: list[tuple[str, dict[bytes, bytes], int]] = [
    ("?after=-1", {}, 422),
    ("?after=abc", {}, 422),
    (f"?after={2**64}", {}, 422),
    ("", {b"Last-Event-ID": b"abc"}, 400),
    ("", {b"Last-Event-ID": b"-5"}, 400),
    ("", {b"Last-Event-ID": str(2**64).encode()}, 400),
    ("", {b"Last-Event-ID": "١٢".encode()}, 400),  # digits, but not ASCII ones
]


async def test_a_bad_starting_point_is_refused(live: Live) -> None:
    for query, headers, status in BAD_STARTS:
        auth = {k.encode(): v.encode() for k, v in live.a.auth.items()}
        response = await live.client.get(f"/api/events{query}", headers={**auth, **headers})
        assert response.status_code == status, (query, headers, response.text)
        assert_error(response, status)


async def test_the_stream_needs_a_key(live: Live) -> None:
    response = await live.client.get("/api/events")
    assert_error(response, 401, "unauthorized")
    assert response.headers["www-authenticate"] == "Bearer"


# -- the feed and the gap rule ----------------------------------------------------------------


async def test_the_feed_is_tenant_scoped_in_id_order(database: Database) -> None:
    a = await make_tenant(database, "feed-a")
    b = await make_tenant(database, "feed-b")
    async with serve(build(database, RecordingNudger())) as url:
        live = Live(database, url, a, b)
        try:
            for i in range(3):
                await live.create(a, f"a{i}")
                await live.create(b, f"b{i}")
        finally:
            await live.client.aclose()
    mine = await events_after(database, a.id, 0, 100)
    assert [e.task_title for e in mine] == ["a0", "a1", "a2"]
    assert [e.id for e in mine] == sorted(e.id for e in mine)
    assert await events_after(database, a.id, mine[0].id, 100, up_to=mine[1].id) == mine[1:2]
    assert await latest_event_id(database, a.id) == mine[-1].id
    assert await latest_event_id(database) > mine[-1].id  # b's last event came after
    assert await latest_event_id(database, uuid.uuid4()) == 0


def _marks(*ids: int, age_s: float = 0.0) -> list[EventMark]:
    at = utcnow() - dt.timedelta(seconds=age_s)
    return [EventMark(id=i, at=at, tenant_id=uuid.UUID(int=0)) for i in ids]


def test_a_gap_before_a_fresh_event_holds_it_back_until_the_grace_ends() -> None:
    watch = GapWatch(grace_seconds=3.0, recent_seconds=60.0)
    now = utcnow()
    assert watch.horizon(0, _marks(1, 2, 4, 5), now=now, clock=100.0) == 2
    assert watch.horizon(2, _marks(4, 5), now=now, clock=102.0) == 2  # id 3 may still commit
    assert watch.horizon(2, _marks(3, 4, 5), now=now, clock=102.5) == 5  # it did
    assert watch.horizon(5, _marks(7), now=now, clock=110.0) == 5
    assert watch.horizon(5, _marks(7), now=now, clock=113.5) == 7  # id 6 was rolled back


def test_a_gap_before_an_old_event_is_a_rollback_and_never_holds() -> None:
    watch = GapWatch(grace_seconds=3.0, recent_seconds=60.0)
    assert watch.horizon(10, _marks(15, 16, age_s=120), now=utcnow(), clock=0.0) == 16
    assert watch.horizon(0, [], now=utcnow(), clock=0.0) == 0
