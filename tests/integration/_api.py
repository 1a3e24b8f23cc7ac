"""Shared pieces of the REST API tests: two tenants with keys, a recording nudger, an HTTP
client through the ASGI app, a real uvicorn server for streams, and rows the front cannot
make (ended calls with figures, questions in any status)."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import socket
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
import uvicorn
from fastapi import FastAPI

from db.engine import Database
from db.models import HitlRequest, Task
from db.repo import accounts
from db.shapes import utcnow
from db.states import CallOutcome, CallStatus, EndReason, HitlStatus, TelephonyResult
from serve_app.api import build_api
from serve_app.api_events import StreamTiming
from serve_app.services import Services
from tests.integration import _rows

FAST_STREAM = StreamTiming(poll_seconds=0.05, keepalive_seconds=15.0, error_backoff_seconds=0.1)


@dataclass
class RecordingNudger:
    """Remembers every nudge, in order: ("wake", None) or ("task", task_id)."""

    nudges: list[tuple[str, uuid.UUID | None]] = field(default_factory=list)
    fail: bool = False

    def wake_supervisor(self) -> None:
        """Record a supervisor wake-up."""
        self.nudges.append(("wake", None))
        if self.fail:
            raise RuntimeError("no Ray here")

    def nudge_task(self, task_id: uuid.UUID) -> None:
        """Record a task nudge."""
        self.nudges.append(("task", task_id))
        if self.fail:
            raise RuntimeError("no Ray here")


@dataclass
class Tenant:
    """A tenant with an API key, as the tests use it."""

    id: uuid.UUID
    key: str
    key_name: str

    @property
    def auth(self) -> dict[str, str]:
        """The Authorization header of its key."""
        return {"Authorization": f"Bearer {self.key}"}


@dataclass
class World:
    """Two tenants, the app, a client through it, and the nudger it calls."""

    db: Database
    a: Tenant
    b: Tenant
    app: FastAPI
    client: httpx.AsyncClient
    nudger: RecordingNudger


async def make_tenant(db: Database, name: str) -> Tenant:
    """A tenant calling US and FR numbers at any hour, with one API key."""
    view = await _rows.tenant(db, name)
    key, key_view = await accounts.create_api_key(db, tenant_id=view.id, name=f"{name}-crm")
    return Tenant(id=view.id, key=key, key_name=key_view.name)


def build(db: Database, nudger: Any, timing: StreamTiming = FAST_STREAM) -> FastAPI:
    """The API app on ``db`` with test settings."""
    services = Services(db=db, settings=_rows.settings(), nudger=nudger)
    return build_api(services, stream_timing=timing)


def client_for(app: FastAPI, *, raise_app_exceptions: bool = True) -> httpx.AsyncClient:
    """An HTTP client that speaks to ``app`` in process (buffered responses)."""
    transport = httpx.ASGITransport(app, raise_app_exceptions=raise_app_exceptions)
    return httpx.AsyncClient(transport=transport, base_url="http://api.test")


@pytest.fixture
async def world(database: Database) -> AsyncIterator[World]:
    """Tenants ``a`` and ``b`` on the migrated ``database``, and a client of the API."""
    a = await make_tenant(database, "tenant-a")
    b = await make_tenant(database, "tenant-b")
    nudger = RecordingNudger()
    app = build(database, nudger)
    async with client_for(app) as client:
        yield World(db=database, a=a, b=b, app=app, client=client, nudger=nudger)


NEW_TASK: dict[str, Any] = {"to": "+1 415 555 0100", "objective": "Ask when the order ships"}


async def create_task(world: World, tenant: Tenant, **values: Any) -> dict[str, Any]:
    """POST /api/tasks for ``tenant``; asserts 201 and returns the task."""
    response = await world.client.post(
        "/api/tasks", json={**NEW_TASK, **values}, headers=tenant.auth
    )
    assert response.status_code == 201, response.text
    task: dict[str, Any] = response.json()
    return task


def assert_error(response: httpx.Response, status: int, code: str | None = None) -> dict[str, Any]:
    """The response is the error envelope with ``status`` (and ``code``); returns its body."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    error: dict[str, Any] = response.json()["error"]
    assert error["status"] == status
    assert isinstance(error["message"], str) and len(error["message"]) > 5
    if code is not None:
        assert error["code"] == code, error
    return error


# -- rows the front cannot make --------------------------------------------------------------

FIGURES: dict[str, Any] = {
    "setup_ms": 1200.0,
    "pacing_interval_error_ms": {"p50": 0.4, "p99": 2.0, "max": 3.0, "count": 500},
    "sender_lateness_ms": {"p50": 0.2, "p99": 1.5, "max": 2.0, "count": 500},
    "underruns": 1,
    "inbound_forward_ms": {"p50": 0.1, "p99": 0.9, "max": 1.0, "count": 400},
    "barge_in_ms": {"p50": 0, "p99": 0, "max": 0, "count": 0},
    "voice_to_voice_ms": {"p50": 700.0, "p99": 900.0, "max": 950.0, "count": 4},
    "cpu_seconds": 3.0,
    "duration_s": 60.0,
}


async def insert_ended_call(
    db: Database,
    task_id: uuid.UUID,
    *,
    outcome: CallOutcome | None = CallOutcome.SUCCESS,
    figures: dict[str, Any] | None = None,
    recording_path: str | None = None,
    attempt: int = 1,
) -> uuid.UUID:
    """An answered call of a task that has ended, with its transcript and figures."""
    now = utcnow()
    return await _rows.insert_call(
        db,
        task_id,
        attempt_number=attempt,
        status=CallStatus.ENDED,
        telephony_result=TelephonyResult.ANSWERED,
        end_reason=EndReason.COMPLETED,
        outcome=outcome,
        hangup_cause=16,
        created_at=now - dt.timedelta(seconds=70),
        originated_at=now - dt.timedelta(seconds=69),
        answered_at=now - dt.timedelta(seconds=65),
        ended_at=now,
        transcript=[
            {"speaker": "agent", "text": "Hello, I am an AI", "start_ms": 0, "end_ms": 900},
            {"speaker": "callee", "text": "Hi", "start_ms": 1000, "end_ms": 1300},
        ],
        tool_calls=[
            {
                "name": "end_call",
                "arguments": {"reason": "completed"},
                "result": "ok",
                "at": now.isoformat(),
            },
        ],
        figures=figures,
        recording_path=recording_path,
    )


async def answered_question(db: Database, task_id: uuid.UUID, wait_s: float) -> uuid.UUID:
    """A question of the task answered ``wait_s`` seconds after it was asked."""
    now = utcnow()
    async with db.write() as session:
        task = await session.get(Task, task_id)
        assert task is not None
        row = HitlRequest(
            id=uuid.uuid4(),
            task_id=task_id,
            tenant_id=task.tenant_id,
            question="Which day suits you?",
            recipient_message="One moment",
            timeout_seconds=60.0,
            status=HitlStatus.ANSWERED,
            asked_at=now - dt.timedelta(seconds=wait_s),
            answered_at=now,
            answer="Friday",
            answered_by="api:test",
        )
        session.add(row)
    return row.id


# -- a real server, for streams -------------------------------------------------------------


@contextlib.asynccontextmanager
async def serve(app: FastAPI) -> AsyncIterator[str]:
    """``app`` behind uvicorn on a free 127.0.0.1 port, in this event loop; yields its URL."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(app, log_level="warning", lifespan="off", timeout_graceful_shutdown=2)
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        async with asyncio.timeout(10):
            while not server.started:  # noqa: ASYNC110 -- uvicorn offers no event to wait on
                await asyncio.sleep(0.01)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task
        sock.close()


@dataclass
class SseEvent:
    """One Server-Sent Event as a client parses it."""

    id: str | None
    event: str | None
    data: str


async def read_events(
    response: httpx.Response, count: int, *, comments: list[str] | None = None
) -> list[SseEvent]:
    """Parse the first ``count`` events of a streaming response (comments collected aside)."""
    events: list[SseEvent] = []
    fields: dict[str, list[str]] = {}
    async for line in response.aiter_lines():
        if line == "":
            if "data" in fields:
                events.append(
                    SseEvent(
                        id=fields.get("id", [None])[-1],
                        event=fields.get("event", [None])[-1],
                        data="\n".join(fields["data"]),
                    )
                )
                if len(events) == count:
                    return events
            fields = {}
        elif line.startswith(":"):
            if comments is not None:
                comments.append(line)
        else:
            name, _, value = line.partition(":")
            fields.setdefault(name, []).append(value.removeprefix(" "))
    return events
