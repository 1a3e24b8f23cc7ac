"""The REST API's question endpoints on SQLite and real PostgreSQL: list, answer in time,
answer late (callback), refusals, and tenant isolation."""

from __future__ import annotations

import uuid

import pytest

from db.states import HitlStatus, TaskStatus
from tests.integration import _rows
from tests.integration._api import World, assert_error, world

__all__ = ["world"]  # the fixture, imported so pytest finds it here

pytestmark = pytest.mark.integration


async def _live_question(
    world: World, tenant_id: uuid.UUID, status: HitlStatus = HitlStatus.PENDING, **task: object
) -> tuple[uuid.UUID, uuid.UUID]:
    """(task id, question id): a question asked during a call of an IN_PROGRESS task."""
    task_status = task.pop("task_status", TaskStatus.IN_PROGRESS)
    assert isinstance(task_status, TaskStatus)
    task_id = await _rows.insert_task(world.db, tenant_id, task_status, **task)
    call_id = await _rows.insert_call(world.db, task_id)
    question_id = await _rows.insert_question(world.db, task_id, status, call_id=call_id)
    return task_id, question_id


async def test_open_questions_by_default_all_on_request(world: World) -> None:
    task_id, open_id = await _live_question(world, world.a.id, title="Order 4417")
    answered = await _rows.insert_question(world.db, task_id, HitlStatus.ANSWERED)
    response = await world.client.get("/api/questions", headers=world.a.auth)
    assert response.status_code == 200
    (item,) = response.json()["items"]
    assert item["id"] == str(open_id) and item["task_title"] == "Order 4417"
    assert item["status"] == "PENDING" and item["deadline"].endswith("Z")
    everything = await world.client.get("/api/questions?status=all", headers=world.a.auth)
    assert {q["id"] for q in everything.json()["items"]} == {str(open_id), str(answered)}


async def test_a_bad_question_filter_is_422(world: World) -> None:
    for status in ("OPEN", "closed", ""):
        response = await world.client.get(f"/api/questions?status={status}", headers=world.a.auth)
        assert_error(response, 422, "validation_error")
    # Repeated parameters: the last one counts.
    response = await world.client.get("/api/questions?status=all&status=open", headers=world.a.auth)
    assert response.status_code == 200


async def test_an_answer_in_time_reaches_the_call_and_nudges_its_task(world: World) -> None:
    task_id, question_id = await _live_question(world, world.a.id)
    response = await world.client.post(
        f"/api/questions/{question_id}/answer",
        json={"answer": "  The order number is 4417  "},
        headers=world.a.auth,
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["effect"] == "delivered" and body["late"] is False
    assert body["task_status"] == "IN_PROGRESS"
    question = body["question"]
    assert question["status"] == "ANSWERED" and question["answer"] == "The order number is 4417"
    assert question["answered_by"] == "api:tenant-a-crm"
    assert world.nudger.nudges == [("task", task_id)]
    row = await _rows.question_row(world.db, question_id)
    assert row.status is HitlStatus.ANSWERED


async def test_a_late_answer_schedules_the_callback_and_wakes_the_supervisor(
    world: World,
) -> None:
    task_id, question_id = await _live_question(
        world, world.a.id, HitlStatus.TIMED_OUT, task_status=TaskStatus.PENDING_USER_INFO
    )
    response = await world.client.post(
        f"/api/questions/{question_id}/answer", json={"answer": "4417"}, headers=world.a.auth
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["effect"] == "callback_scheduled" and body["late"] is True
    assert body["task_status"] == "RETRY_SCHEDULED" and body["next_action_time"].endswith("Z")
    assert "next call" in body["message"]
    assert body["question"]["status"] == "ANSWERED_LATE"
    assert world.nudger.nudges == [("task", task_id), ("wake", None)]
    assert (await _rows.task_row(world.db, task_id)).status is TaskStatus.RETRY_SCHEDULED


async def test_a_late_answer_while_the_call_is_still_on_is_kept_for_the_callback(
    world: World,
) -> None:
    task_id, question_id = await _live_question(world, world.a.id, HitlStatus.TIMED_OUT)
    response = await world.client.post(
        f"/api/questions/{question_id}/answer", json={"answer": "4417"}, headers=world.a.auth
    )
    body = response.json()
    assert body["effect"] == "callback_scheduled" and body["task_status"] == "IN_PROGRESS"
    assert world.nudger.nudges == [("task", task_id)]


CLOSED = [
    (HitlStatus.ANSWERED, "already answered"),
    (HitlStatus.ANSWERED_LATE, "already answered"),
    (HitlStatus.EXPIRED, "expired"),
    (HitlStatus.CANCELLED, "expired"),
]


async def test_answering_a_closed_question_is_409(world: World) -> None:
    for status, phrase in CLOSED:
        _, question_id = await _live_question(world, world.a.id, status)
        response = await world.client.post(
            f"/api/questions/{question_id}/answer", json={"answer": "4417"}, headers=world.a.auth
        )
        assert phrase in assert_error(response, 409, "conflict")["message"], status
    assert world.nudger.nudges == []


async def test_a_question_of_a_finished_task_is_409(world: World) -> None:
    _, question_id = await _live_question(
        world, world.a.id, HitlStatus.TIMED_OUT, task_status=TaskStatus.COMPLETED
    )
    response = await world.client.post(
        f"/api/questions/{question_id}/answer", json={"answer": "4417"}, headers=world.a.auth
    )
    assert "expired" in assert_error(response, 409, "conflict")["message"]


BAD_ANSWERS = [
    ("empty", {"answer": ""}, 422),
    ("missing", {}, 422),
    ("not text", {"answer": 4417}, 422),
    ("null", {"answer": None}, 422),
    ("too long", {"answer": "x" * 4001}, 422),
    ("unknown field", {"answer": "yes", "by": "me"}, 422),
    ("blank", {"answer": "   "}, 400),
]


async def test_a_bad_answer_is_refused_and_the_question_stays_open(world: World) -> None:
    _, question_id = await _live_question(world, world.a.id)
    for name, body, status in BAD_ANSWERS:
        response = await world.client.post(
            f"/api/questions/{question_id}/answer", json=body, headers=world.a.auth
        )
        assert response.status_code == status, (name, response.text)
        assert_error(response, status)
    assert (await _rows.question_row(world.db, question_id)).status is HitlStatus.PENDING
    assert world.nudger.nudges == []


async def test_unknown_and_malformed_question_ids_are_404(world: World) -> None:
    for qid in (str(uuid.uuid4()), "42", "not-a-uuid"):
        response = await world.client.post(
            f"/api/questions/{qid}/answer", json={"answer": "yes"}, headers=world.a.auth
        )
        assert_error(response, 404, "not_found")


async def test_another_tenants_questions_are_invisible_and_unanswerable(world: World) -> None:
    _, theirs = await _live_question(world, world.b.id, title="B's task")
    _, mine = await _live_question(world, world.a.id, title="A's task")
    before = await _rows.snapshot(world.db, world.b.id)
    response = await world.client.post(
        f"/api/questions/{theirs}/answer", json={"answer": "leak?"}, headers=world.a.auth
    )
    error = assert_error(response, 404, "not_found")
    assert "B's task" not in error["message"]
    for status in ("open", "all"):
        listed = await world.client.get(f"/api/questions?status={status}", headers=world.a.auth)
        assert [q["id"] for q in listed.json()["items"]] == [str(mine)]
    assert await _rows.snapshot(world.db, world.b.id) == before
    assert world.nudger.nudges == []
