"""The REST API's task endpoints on SQLite and real PostgreSQL, through real HTTP semantics:
create, list, read, cancel; every error status; tenant isolation; auth; nudges."""

from __future__ import annotations

import datetime as dt
import json
import logging
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from fastapi.responses import PlainTextResponse
from pydantic import BaseModel

from db.repo import accounts, dnc, tasks
from db.shapes import utcnow
from db.states import HitlStatus, TaskStatus
from serve_app import api_models
from serve_app.api_models import TaskSummaryOut
from tests.integration import _api, _rows
from tests.integration._api import NEW_TASK, World, assert_error, create_task, world

__all__ = ["world"]  # the fixture, imported so pytest finds it here

pytestmark = pytest.mark.integration


# -- create ---------------------------------------------------------------------------------


async def test_create_returns_201_with_the_task_as_get_shows_it_and_wakes_the_supervisor(
    world: World,
) -> None:
    at = (utcnow() + dt.timedelta(hours=2)).astimezone(dt.timezone(dt.timedelta(hours=-7)))
    response = await world.client.post(
        "/api/tasks",
        json={
            **NEW_TASK,
            "title": "Order 4417",
            "callee_name": "Shop",
            "context": "Order 4417, paid",
            "language": "en-US",
            "timezone": "America/Los_Angeles",
            "window": {"start": "00:00", "end": "24:00", "days": [0, 1, 2, 3, 4, 5, 6]},
            "at": at.isoformat(),
            "max_attempts": 2,
            "voicemail_message": "Please call back",
        },
        headers=world.a.auth,
    )
    assert response.status_code == 201, response.text
    task = response.json()
    assert task["status"] == "PENDING" and task["phone"] == "+14155550100"
    assert task["title"] == "Order 4417" and task["max_attempts"] == 2
    assert task["window"] == {"start": "00:00", "end": "24:00", "days": [0, 1, 2, 3, 4, 5, 6]}
    assert task["next_action_time"].endswith("Z")
    assert dt.datetime.fromisoformat(task["next_action_time"]) == at
    assert [e["kind"] for e in task["events"]] == ["TASK_CREATED"]
    assert task["calls"] == [] and task["questions"] == []
    assert world.nudger.nudges == [("wake", None)]
    again = await world.client.get(f"/api/tasks/{task['id']}", headers=world.a.auth)
    assert again.status_code == 200 and again.json() == task


async def test_create_takes_the_tenants_window_and_now_by_default(world: World) -> None:
    before = utcnow()
    task = await create_task(world, world.a)
    assert task["window"] == {"start": "00:00", "end": "24:00", "days": [0, 1, 2, 3, 4, 5, 6]}
    due = dt.datetime.fromisoformat(task["next_action_time"])
    assert before - dt.timedelta(seconds=1) <= due <= utcnow()
    assert task["created_at"].endswith("Z")


async def test_a_nudge_that_fails_does_not_fail_the_request(world: World) -> None:
    world.nudger.fail = True
    task = await create_task(world, world.a)
    assert task["status"] == "PENDING"
    assert world.nudger.nudges == [("wake", None)]


async def _counts_unchanged(world: World, request: Any) -> httpx.Response:
    before = await _rows.counts(world.db)
    response: httpx.Response = await request
    assert await _rows.counts(world.db) == before, "a refused request wrote rows"
    assert world.nudger.nudges == []
    return response


REFUSED: list[tuple[str, dict[str, Any], int, str]] = [
    ("unparseable number", {"to": "+1 415 555 01"}, 400, "invalid_input"),
    ("not a number", {"to": "call my mum"}, 400, "invalid_input"),
    ("emergency", {"to": "+1 911"}, 403, "emergency"),
    ("short code", {"to": "+1 611"}, 403, "short_code"),
    ("premium rate", {"to": "+1 900 555 0100"}, 403, "premium_rate"),
    ("country not allowed", {"to": "+44 20 7946 0000"}, 403, "country_not_allowed"),
    ("unknown zone", {"timezone": "Mars/Olympus"}, 400, "invalid_input"),
    (
        "window never opens",
        {"window": {"start": "18:00", "end": "09:00", "days": [0]}},
        400,
        "invalid_input",
    ),
    ("time in the past", {"at": "2020-01-01T10:00:00+00:00"}, 400, "invalid_input"),
    ("time years ahead", {"at": "2099-01-01T10:00:00+00:00"}, 400, "invalid_input"),
    ("time out of range", {"at": "0001-01-01T00:00:00+05:00"}, 400, "invalid_input"),
    ("more attempts than allowed", {"max_attempts": 999}, 400, "invalid_input"),
    ("blank objective", {"objective": "   "}, 400, "invalid_input"),
    ("naive time", {"at": "2030-01-01T10:00:00"}, 422, "validation_error"),
    ("unknown field", {"objectve": "typo"}, 422, "validation_error"),
    ("wrong type", {"max_attempts": "3"}, 422, "validation_error"),
    ("bool as count", {"max_attempts": True}, 422, "validation_error"),
    ("number as text", {"to": 14155550100}, 422, "validation_error"),
    ("list as text", {"objective": ["a"]}, 422, "validation_error"),
    (
        "bad window hour",
        {"window": {"start": "25:00", "end": "26:00", "days": [0]}},
        422,
        "validation_error",
    ),
    (
        "bad weekday",
        {"window": {"start": "09:00", "end": "17:00", "days": [7]}},
        422,
        "validation_error",
    ),
    ("objective too long", {"objective": "x" * 5000}, 422, "validation_error"),
    ("bad language", {"language": "english please"}, 422, "validation_error"),
]


async def test_bad_task_input_gets_a_clear_error_and_writes_nothing(world: World) -> None:
    for name, body, status, code in REFUSED:
        request = world.client.post("/api/tasks", json={**NEW_TASK, **body}, headers=world.a.auth)
        response = await _counts_unchanged(world, request)
        assert response.status_code == status, (name, response.text)
        error = assert_error(response, status, code)
        if status == 422:
            assert error["fields"], (name, error)


async def test_a_number_on_the_dnc_list_is_403(world: World) -> None:
    await dnc.add_dnc(world.db, world.a.id, NEW_TASK["to"], reason="asked us to stop")
    request = world.client.post("/api/tasks", json=NEW_TASK, headers=world.a.auth)
    error = assert_error(await _counts_unchanged(world, request), 403, "do_not_call")
    assert "do-not-call" in error["message"]
    # Tenant B's list is its own: the same number is fine for B.
    await create_task(world, world.b)


RAW_BODIES = [
    ("invalid JSON", b"{not json", "application/json", 422),
    ("not UTF-8", b'{"to": "\xff\xfe", "objective": "x"}', "application/json", 400),
    ("empty body", b"", "application/json", 422),
    ("JSON array", b"[1, 2]", "application/json", 422),
    ("JSON null", b"null", "application/json", 422),
    ("text body", b"to=+14155550100", "text/plain", 422),
    ("deep nesting", b"[" * 100_000 + b"]" * 100_000, "application/json", 400),
]


async def test_malformed_bodies_are_4xx_never_500(world: World) -> None:
    for name, body, content_type, status in RAW_BODIES:
        headers = {**world.a.auth, "content-type": content_type}
        request = world.client.post("/api/tasks", content=body, headers=headers)
        response = await _counts_unchanged(world, request)
        assert response.status_code == status, (name, response.text)
        assert_error(response, status)


async def test_an_oversize_body_is_413_declared_or_streamed(world: World) -> None:
    big = json.dumps({**NEW_TASK, "context": "x" * 300_000}).encode()
    request = world.client.post(
        "/api/tasks", content=big, headers={**world.a.auth, "content-type": "application/json"}
    )
    assert_error(await _counts_unchanged(world, request), 413, "too_large")

    async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: counted as it arrives
        for i in range(0, len(big), 16_384):
            yield big[i : i + 16_384]

    request = world.client.post(
        "/api/tasks", content=chunks(), headers={**world.a.auth, "content-type": "application/json"}
    )
    assert_error(await _counts_unchanged(world, request), 413, "too_large")


# -- list -----------------------------------------------------------------------------------


async def test_list_pages_newest_first_with_total_and_filters_by_status(world: World) -> None:
    ids = [(await create_task(world, world.a, title=f"t{i}"))["id"] for i in range(5)]
    cancelled = ids[1]
    assert (
        await world.client.post(f"/api/tasks/{cancelled}/cancel", headers=world.a.auth)
    ).is_success
    page = (await world.client.get("/api/tasks?limit=2", headers=world.a.auth)).json()
    assert page["total"] == 5 and [t["id"] for t in page["items"]] == ids[::-1][:2]
    rest = (await world.client.get("/api/tasks?limit=50&offset=2", headers=world.a.auth)).json()
    assert [t["id"] for t in rest["items"]] == ids[::-1][2:]
    only = (await world.client.get("/api/tasks?status=CANCELLED", headers=world.a.auth)).json()
    assert only["total"] == 1 and [t["id"] for t in only["items"]] == [cancelled]
    item = only["items"][0]
    assert item["status"] == "CANCELLED" and item["title"] == "t1"
    assert set(item) == set(TaskSummaryOut.model_fields)


BAD_QUERIES = [
    "limit=0",
    "limit=-1",
    "limit=501",
    "limit=abc",
    "offset=-1",
    f"offset={10**12}",
    f"limit={10**40}",
    "status=pending",
    "status=NOPE",
    "limit=1.5",
]


async def test_bad_list_queries_are_422(world: World) -> None:
    for query in BAD_QUERIES:
        response = await world.client.get(f"/api/tasks?{query}", headers=world.a.auth)
        assert response.status_code == 422, (query, response.text)
        error = assert_error(response, 422, "validation_error")
        assert error["fields"][0]["field"].startswith("query."), query


async def test_odd_query_strings_do_not_break_the_list(world: World) -> None:
    await create_task(world, world.a)
    for query in ["limit=5&limit=6", "unknown=1", "status=%FF", "%00=%00"]:
        response = await world.client.get(f"/api/tasks?{query}", headers=world.a.auth)
        assert response.status_code in (200, 422), (query, response.text)


# -- read -----------------------------------------------------------------------------------


async def test_get_shows_calls_with_transcript_figures_and_the_questions(world: World) -> None:
    task_id = await _rows.insert_task(world.db, world.a.id, TaskStatus.IN_PROGRESS)
    call_id = await _api.insert_ended_call(
        world.db, task_id, figures=_api.FIGURES, recording_path="/var/rec/x.wav"
    )
    question_id = await _rows.insert_question(world.db, task_id, call_id=call_id)
    response = await world.client.get(f"/api/tasks/{task_id}", headers=world.a.auth)
    assert response.status_code == 200
    task = response.json()
    (call,) = task["calls"]
    assert call["id"] == str(call_id) and call["telephony_result"] == "answered"
    assert call["end_reason"] == "completed" and call["outcome"] == "SUCCESS"
    assert [t["speaker"] for t in call["transcript"]] == ["agent", "callee"]
    assert call["tool_calls"][0]["name"] == "end_call"
    assert call["figures"]["setup_ms"] == 1200.0 and call["has_recording"] is True
    assert "recording_path" not in call  # the server's file path stays private
    assert all(call[k].endswith("Z") for k in ("created_at", "answered_at", "ended_at"))
    (question,) = task["questions"]
    assert question["id"] == str(question_id) and question["status"] == "PENDING"
    assert question["deadline"].endswith("Z")


async def test_unknown_and_malformed_task_ids_are_404(world: World) -> None:
    for path in (f"/api/tasks/{uuid.uuid4()}", "/api/tasks/not-a-uuid", "/api/tasks/%FF"):
        assert_error(await world.client.get(path, headers=world.a.auth), 404, "not_found")
        cancel = await world.client.post(f"{path}/cancel", headers=world.a.auth)
        assert_error(cancel, 404, "not_found")


async def test_unknown_routes_are_404_and_wrong_methods_405_even_with_a_ui_mounted(
    world: World,
) -> None:
    async def ui(scope: Any, receive: Any, send: Any) -> None:
        await PlainTextResponse("the UI")(scope, receive, send)

    world.app.mount("/", ui)  # as the ingress mounts Gradio
    assert_error(await world.client.get("/api/nothing", headers=world.a.auth), 404, "not_found")
    response = await world.client.delete("/api/tasks", headers=world.a.auth)
    assert assert_error(response, 405, "method_not_allowed")
    assert response.headers["allow"] == "GET, POST"
    assert_error(await world.client.put("/api/tasks/x/cancel", headers=world.a.auth), 405)
    assert (await world.client.get("/elsewhere")).text == "the UI"
    assert (await world.client.get("/api/tasks", headers=world.a.auth)).status_code == 200


# -- cancel ---------------------------------------------------------------------------------


async def test_cancel_a_waiting_task_at_once_nudges_it_and_a_second_cancel_is_409(
    world: World,
) -> None:
    task = await create_task(world, world.a)
    world.nudger.nudges.clear()
    response = await world.client.post(f"/api/tasks/{task['id']}/cancel", headers=world.a.auth)
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "CANCELLED" and body["finished_at"] is not None
    assert body["events"][-1]["kind"] == "CANCELLED"
    assert body["events"][-1]["data"] == {"by": "api:tenant-a-crm"}
    assert world.nudger.nudges == [("task", uuid.UUID(task["id"]))]
    again = await world.client.post(f"/api/tasks/{task['id']}/cancel", headers=world.a.auth)
    assert "already cancelled" in assert_error(again, 409, "conflict")["message"]


async def test_cancel_an_active_task_flags_it_for_its_actor(world: World) -> None:
    task_id = await _rows.insert_task(world.db, world.a.id, TaskStatus.IN_PROGRESS)
    response = await world.client.post(f"/api/tasks/{task_id}/cancel", headers=world.a.auth)
    body = response.json()
    assert body["status"] == "IN_PROGRESS" and body["cancel_requested"] is True
    assert body["events"][-1]["kind"] == "CANCEL_REQUESTED"
    assert world.nudger.nudges == [("task", task_id)]


# -- auth -----------------------------------------------------------------------------------

ENDPOINTS = [
    ("POST", "/api/tasks", NEW_TASK),
    ("GET", "/api/tasks", None),
    ("GET", f"/api/tasks/{uuid.UUID(int=1)}", None),
    ("POST", f"/api/tasks/{uuid.UUID(int=1)}/cancel", None),
    ("GET", "/api/questions", None),
    ("POST", f"/api/questions/{uuid.UUID(int=1)}/answer", {"answer": "yes"}),
    ("GET", "/api/events", None),
]


BAD_AUTHORIZATIONS = [
    None,
    "",
    "Bearer",
    "Bearer ",
    "Basic dXNlcjpwYXNz",
    "Token abc",
    "Bearer od_nope",
    "Bearer od_0123456789ab_secretsecret",
    "Bearer " + "x" * 5000,
]
"""Missing, empty, no key, blank key, another scheme, garbled, unknown, huge."""


async def test_every_api_endpoint_needs_a_valid_bearer_key(world: World) -> None:
    for authorization in BAD_AUTHORIZATIONS:
        headers = {} if authorization is None else {"Authorization": authorization}
        for method, path, body in ENDPOINTS:
            response = await world.client.request(method, path, json=body, headers=headers)
            assert response.status_code == 401, (authorization, method, path)
            assert_error(response, 401, "unauthorized")
            assert response.headers["www-authenticate"].startswith("Bearer"), (method, path)
    assert world.nudger.nudges == []


async def test_a_revoked_key_is_refused_and_non_ascii_headers_are_401(world: World) -> None:
    keys = await accounts.list_api_keys(world.db, world.a.id)
    await accounts.revoke_api_key(world.db, world.a.id, keys[0].id)
    response = await world.client.get("/api/tasks", headers=world.a.auth)
    assert 'error="invalid_token"' in response.headers["www-authenticate"]
    assert_error(response, 401, "unauthorized")
    raw = httpx.Headers([(b"Authorization", b"Bearer od_\xff\xfe")])
    assert_error(await world.client.get("/api/tasks", headers=raw), 401, "unauthorized")


async def test_authentication_comes_before_body_validation(world: World) -> None:
    for body in (b"{broken", b'{"x": "\xff"}'):
        response = await world.client.post(
            "/api/tasks", content=body, headers={"content-type": "application/json"}
        )
        assert_error(response, 401, "unauthorized")


# -- tenant isolation -----------------------------------------------------------------------


async def test_another_tenants_task_is_404_for_read_and_cancel_and_never_listed(
    world: World,
) -> None:
    theirs = await create_task(world, world.b, title="B's secret")
    mine = await create_task(world, world.a, title="mine")
    before = await _rows.snapshot(world.db, world.b.id)
    for method, path in (("GET", ""), ("POST", "/cancel")):
        response = await world.client.request(
            method, f"/api/tasks/{theirs['id']}{path}", headers=world.a.auth
        )
        error = assert_error(response, 404, "not_found")
        assert "B's secret" not in error["message"]
    listed = (await world.client.get("/api/tasks?limit=500", headers=world.a.auth)).json()
    assert [t["id"] for t in listed["items"]] == [mine["id"]] and listed["total"] == 1
    assert (await world.client.get("/api/tasks?status=PENDING", headers=world.a.auth)).json()[
        "total"
    ] == 1
    assert await _rows.snapshot(world.db, world.b.id) == before


# -- failures of our own --------------------------------------------------------------------


async def test_an_unexpected_error_is_a_logged_500_with_a_generic_message(
    world: World, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    async def broken(*_: object, **__: object) -> None:
        raise RuntimeError("secret internals")

    monkeypatch.setattr(tasks, "list_tasks", broken)
    async with _api.client_for(world.app, raise_app_exceptions=False) as client:
        with caplog.at_level(logging.ERROR, logger="serve_app.api_errors"):
            response = await client.get("/api/tasks", headers=world.a.auth)
    error = assert_error(response, 500, "internal_error")
    assert "secret" not in response.text and "RuntimeError" not in error["message"]
    assert any("RuntimeError" in r.getMessage() for r in caplog.records)
    assert world.a.key not in caplog.text


async def test_the_openapi_schema_has_examples_and_the_bearer_scheme(world: World) -> None:
    response = await world.client.get("/api/openapi.json")
    assert response.status_code == 200
    schema = response.json()
    assert schema["info"]["title"] == "OpenDeep API"
    assert schema["components"]["securitySchemes"]["HTTPBearer"]["scheme"] == "bearer"
    components = schema["components"]["schemas"]
    for name in (
        "TaskCreate",
        "TaskOut",
        "TaskListOut",
        "QuestionListOut",
        "AnswerIn",
        "AnswerOut",
        "HealthOut",
        "ErrorOut",
        "CallOut",
        "EventOut",
    ):
        assert components[name].get("examples"), name
    assert "HTTPValidationError" not in components  # 422s use our envelope
    docs = await world.client.get("/api/docs")
    assert docs.status_code == 200 and "swagger" in docs.text.lower()


@pytest.mark.parametrize(
    "model",
    [
        m
        for m in vars(api_models).values()
        if isinstance(m, type) and issubclass(m, BaseModel) and m.__module__ == api_models.__name__
    ],
    ids=lambda m: m.__name__,
)
def test_every_example_in_the_schema_is_valid_for_its_model(model: type[BaseModel]) -> None:
    extra = model.model_config.get("json_schema_extra")
    examples = extra.get("examples", []) if isinstance(extra, dict) else []
    assert isinstance(examples, list)
    if model.__name__ not in ("ErrorBody", "_Out"):
        assert examples, f"{model.__name__} has no example"
    for example in examples:
        model.model_validate(example)


async def test_question_and_task_statuses_in_the_schema_match_the_enums(world: World) -> None:
    components = (await world.client.get("/api/openapi.json")).json()["components"]["schemas"]
    assert set(components["TaskStatus"]["enum"]) == {s.value for s in TaskStatus}
    assert set(components["HitlStatus"]["enum"]) == {s.value for s in HitlStatus}
