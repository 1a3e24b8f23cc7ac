"""Schemathesis against the API's own OpenAPI schema, on SQLite behind a real uvicorn server:
valid and invalid requests generated from the schema never get a 5xx.

The server runs in a thread with its own event loop (schemathesis calls it synchronously
over HTTP); the database is opened and closed in that loop. The SSE endpoint is left out:
it streams until the client leaves.
"""

from __future__ import annotations

import asyncio
import socket
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import schemathesis
import uvicorn
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import APIOperation, Case, GenerationMode
from schemathesis.checks import not_a_server_error

from db.engine import open_database
from db.migrate import upgrade
from db.states import TaskStatus
from tests.integration import _rows
from tests.integration._api import RecordingNudger, build, make_tenant

pytestmark = pytest.mark.integration

EXAMPLES_PER_OPERATION = 40


@dataclass
class Served:
    """The URL of a running API and a valid key for it."""

    url: str
    key: str
    task_id: str
    question_id: str


def _run_server(
    url: str, sock: socket.socket, ready: threading.Event, box: dict[str, object]
) -> None:
    async def main() -> None:
        db = open_database(url)
        try:
            tenant = await make_tenant(db, "fuzz")
            # A task with a pending question, so answers and cancels meet real rows too.
            task_id = await _rows.insert_task(db, tenant.id, TaskStatus.IN_PROGRESS)
            box["question_id"] = str(await _rows.insert_question(db, task_id))
            box["task_id"] = str(task_id)
            box["key"] = tenant.key
            config = uvicorn.Config(
                build(db, RecordingNudger()), log_level="warning", lifespan="off"
            )
            server = uvicorn.Server(config)
            box["server"] = server
            serving = asyncio.create_task(server.serve(sockets=[sock]))
            while not server.started and not serving.done():  # noqa: ASYNC110 -- uvicorn has no event
                await asyncio.sleep(0.01)
            ready.set()
            await serving
        finally:
            ready.set()
            await db.close()

    asyncio.run(main())


@pytest.fixture(scope="module")
def served() -> Iterator[Served]:
    """The API on a fresh SQLite file, served by uvicorn from a thread."""
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite+aiosqlite:///{Path(tmp) / 'fuzz.db'}"
        asyncio.run(upgrade(url))
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        ready = threading.Event()
        box: dict[str, object] = {}
        thread = threading.Thread(target=_run_server, args=(url, sock, ready, box), daemon=True)
        thread.start()
        assert ready.wait(30), "the API server did not start"
        server = box["server"]
        assert isinstance(server, uvicorn.Server)
        try:
            yield Served(
                url=f"http://127.0.0.1:{port}",
                key=str(box["key"]),
                task_id=str(box["task_id"]),
                question_id=str(box["question_id"]),
            )
        finally:
            server.should_exit = True
            thread.join(30)
            sock.close()


@pytest.fixture(scope="module")
def api_schema(served: Served) -> schemathesis.BaseSchema:
    """The API's OpenAPI schema as served, without the endless event stream."""
    schema = schemathesis.openapi.from_url(f"{served.url}/api/openapi.json")
    return schema.exclude(path="/api/events")


def _operations() -> list[tuple[GenerationMode, str, str]]:
    """(mode, method, path) of every operation, from an app that never touches its database.

    Negative cases need something to break: operations without parameters get positive only.
    """
    app = build(open_database("sqlite+aiosqlite:///:memory:"), RecordingNudger())
    cases = []
    for path, operations in app.openapi()["paths"].items():
        for method, spec in operations.items():
            if path == "/api/events":
                continue
            cases.append((GenerationMode.POSITIVE, method.upper(), path))
            if spec.get("parameters") or spec.get("requestBody"):
                cases.append((GenerationMode.NEGATIVE, method.upper(), path))
    return cases


def _valid_number(case: Case[Any]) -> Case[Any]:
    """A dialable number (and the number's own zone), so creation gets past the phone check."""
    if isinstance(case.body, dict):
        case.body["to"] = "+1 415 555 0100"
        case.body.pop("timezone", None)
    return case


def _strategy(
    operation: APIOperation[Any, Any, Any, Any], mode: GenerationMode, served: Served
) -> st.SearchStrategy[Case[Any]]:
    """The schema's cases, plus (positive) ones that reach real rows instead of 404s."""
    strategy = operation.as_strategy(generation_mode=mode)
    if mode is not GenerationMode.POSITIVE:
        return strategy
    if operation.method.upper() == "POST" and operation.path == "/api/tasks":
        return st.one_of(strategy, strategy.map(_valid_number))
    real = {"task_id": served.task_id, "question_id": served.question_id}
    names = [n for n in real if "{" + n + "}" in operation.path]
    if names:
        known = {n: real[n] for n in names}
        return st.one_of(strategy, operation.as_strategy(path_parameters=known))
    return strategy


@pytest.mark.parametrize(("mode", "method", "path"), _operations())
def test_no_generated_request_gets_a_server_error(
    served: Served,
    api_schema: schemathesis.BaseSchema,
    mode: GenerationMode,
    method: str,
    path: str,
) -> None:
    operation = api_schema[path][method]
    headers = {"Authorization": f"Bearer {served.key}"}

    @given(case=_strategy(operation, mode, served))
    @settings(
        max_examples=EXAMPLES_PER_OPERATION,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    def call(case: Case[Any]) -> None:
        response = case.call_and_validate(
            base_url=served.url, headers=headers, checks=[not_a_server_error], timeout=10
        )
        statuses[response.status_code] = statuses.get(response.status_code, 0) + 1

    statuses: dict[int, int] = {}
    call()
    print(mode.value, method, path, dict(sorted(statuses.items())))  # shown with -s
