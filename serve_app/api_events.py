"""``GET /api/events``: the tenant's task events as Server-Sent Events, polled from the DB.

Each event is sent as ``id: <event id>`` / ``event: task_event`` / ``data: <JSON>``; a client
resumes with ``Last-Event-ID`` (browsers send it on reconnect) or ``?after=<id>``. Without
either, the stream starts at the newest event: only what happens from now on is sent.

Ordering: events go out in id order. On PostgreSQL ids are taken at flush, not commit, so an
id can become visible after a higher one; :class:`GapWatch` holds back whatever follows a
missing id until it appears or is clearly a rolled-back insert (a few seconds, and never for
events older than a minute), so a reader never skips an event that commits late. SQLite has
one writer at a time and never shows such gaps.

The stream is one async generator with no long-lived task of its own: when the client goes
away the server cancels it (or the disconnect check ends it); a poll under way finishes its
query first (milliseconds), so no connection is torn down mid-query and nothing stays behind.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import logging
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Final

from sqlalchemy.exc import SQLAlchemyError

from db.engine import Database
from db.repo.feed import EventMark, FeedEvent, event_marks_after, events_after
from db.shapes import utcnow

log = logging.getLogger(__name__)

MAX_EVENT_ID: Final = 2**63 - 1
"""The largest id a BIGINT (and SQLite's INTEGER) column holds."""
EVENT_NAME: Final = "task_event"
KEEPALIVE: Final = ": keepalive\n\n"


@dataclass(frozen=True, slots=True)
class StreamTiming:
    """How the event stream polls; tests shorten the intervals."""

    poll_seconds: float = 0.25
    keepalive_seconds: float = 15.0
    gap_grace_seconds: float = 3.0
    """How long a missing id may hold back the events after it (an insert still committing)."""
    gap_recent_seconds: float = 60.0
    """Gaps before events older than this are rollbacks, never held."""
    error_backoff_seconds: float = 1.0
    page: int = 500
    retry_ms: int = 3_000
    """Reconnection delay suggested to clients (the SSE ``retry:`` field)."""


class StartError(ValueError):
    """``Last-Event-ID`` is not an event id."""


def start_after(last_event_id: str | None, after: int | None) -> int | None:
    """Where to resume: ``Last-Event-ID`` wins over ``?after`` (it is newer); ``None`` = now."""
    if last_event_id is not None and last_event_id.strip():
        text = last_event_id.strip()
        if not text.isascii() or not text.isdigit() or int(text) > MAX_EVENT_ID:
            raise StartError("Last-Event-ID must be the id of an event (a whole number)")
        return int(text)
    return after


@dataclass(slots=True)
class GapWatch:
    """Finds how far the stream may advance without passing an id that may still commit."""

    grace_seconds: float
    recent_seconds: float
    _first_seen: dict[int, float] = field(default_factory=dict)

    def horizon(
        self, cursor: int, marks: Sequence[EventMark], *, now: dt.datetime, clock: float
    ) -> int:
        """The highest id in ``marks`` up to which no id is missing or worth waiting for."""
        expected = cursor + 1
        reached = cursor
        for mark in marks:
            if mark.id > expected and self._holds(expected, mark, now, clock):
                break
            reached = mark.id
            expected = mark.id + 1
        self._first_seen = {k: v for k, v in self._first_seen.items() if k > reached}
        return reached

    def _holds(self, missing: int, mark: EventMark, now: dt.datetime, clock: float) -> bool:
        if (now - mark.at).total_seconds() > self.recent_seconds:
            return False  # written long ago: the missing id was rolled back
        first = self._first_seen.setdefault(missing, clock)
        return clock - first < self.grace_seconds


def format_event(event: FeedEvent) -> str:
    """One SSE message: id, event name, and the event as one line of JSON."""
    payload = {
        "id": event.id,
        "task_id": str(event.task_id),
        "task_title": event.task_title,
        "call_id": str(event.call_id) if event.call_id else None,
        "at": event.at.astimezone(dt.UTC).isoformat().replace("+00:00", "Z"),
        "kind": event.kind.value,
        "message": event.message,
        "data": event.data,
    }
    # json.dumps escapes newlines inside strings, so the data field stays on one line.
    data = json.dumps(payload, ensure_ascii=False, separators=(",", ":"), default=str)
    return f"id: {event.id}\nevent: {EVENT_NAME}\ndata: {data}\n\n"


@dataclass(slots=True)
class _Reader:
    db: Database
    tenant_id: uuid.UUID
    timing: StreamTiming
    cursor: int
    gaps: GapWatch

    async def next_batch(self) -> tuple[list[FeedEvent], bool]:
        """The tenant's events up to the safe horizon; True when more are waiting."""
        page = self.timing.page
        marks = await event_marks_after(self.db, self.cursor, page)
        loop = asyncio.get_running_loop()
        reached = self.gaps.horizon(self.cursor, marks, now=utcnow(), clock=loop.time())
        if reached == self.cursor:
            return [], False
        events: list[FeedEvent] = []
        if any(m.tenant_id == self.tenant_id for m in marks if m.id <= reached):
            events = await events_after(self.db, self.tenant_id, self.cursor, page, up_to=reached)
        self.cursor = reached
        return events, len(marks) == page and reached == marks[-1].id


def _discard(task: asyncio.Task[tuple[list[FeedEvent], bool]]) -> None:
    if not task.cancelled() and (exc := task.exception()) is not None:
        log.debug("event stream: a poll finished after its client left: %r", exc)


async def _poll(reader: _Reader) -> tuple[list[FeedEvent], bool]:
    """One poll, run to completion even when the stream is cancelled meanwhile.

    A query cancelled midway makes SQLAlchemy throw its connection away (and with aiosqlite
    leaves a close task hanging); a poll takes milliseconds, so letting it finish is cheap.
    """
    task = asyncio.ensure_future(reader.next_batch())
    try:
        return await asyncio.shield(task)
    except asyncio.CancelledError:
        task.add_done_callback(_discard)
        raise


async def event_stream(
    db: Database,
    tenant_id: uuid.UUID,
    after: int,
    timing: StreamTiming,
    is_disconnected: Callable[[], Awaitable[bool]],
) -> AsyncIterator[str]:
    """SSE text for the tenant's events after id ``after``, until the client disconnects."""
    gaps = GapWatch(timing.gap_grace_seconds, timing.gap_recent_seconds)
    reader = _Reader(db, tenant_id, timing, after, gaps)
    loop = asyncio.get_running_loop()
    yield f"retry: {timing.retry_ms}\n\n"
    last_sent = loop.time()
    while not await is_disconnected():
        try:
            events, more = await _poll(reader)
        except (SQLAlchemyError, OSError, TimeoutError) as exc:
            # The client keeps its place (Last-Event-ID); keep the stream open and retry.
            log.warning("event stream: reading events failed (%s); retrying", type(exc).__name__)
            events, more = [], False
            await asyncio.sleep(timing.error_backoff_seconds)
        for event in events:
            yield format_event(event)
        now = loop.time()
        if events:
            last_sent = now
        elif now - last_sent >= timing.keepalive_seconds:
            yield KEEPALIVE
            last_sent = now
        if not more:
            await asyncio.sleep(timing.poll_seconds)
