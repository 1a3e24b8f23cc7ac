"""`opendeep task …` and `opendeep answer`, run as real processes against a real SQLite file.

Rows the command line cannot make by itself (a live task, a call with a transcript, a question
the AI asked) are written straight into the same database file by the test.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import re
import subprocess
import sys
import uuid
import zoneinfo
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import pytest

from db.engine import Database, open_database
from db.migrate import upgrade
from db.models import Call, HitlRequest, Task
from db.repo import accounts
from db.repo._core import InvalidInputError, NotFoundError
from db.shapes import utcnow
from db.states import CallStatus, EndReason, HitlStatus, TaskStatus, TelephonyResult
from opendeep.settings import Settings
from serve_app.cli_tasks import resolve_id
from tests.integration import _system_rows as rows
from tests.integration._cli import cli_env, database_url, run

pytestmark = pytest.mark.integration

_T = TypeVar("_T")
NUMBER = "+1 415 555 0100"


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    return cli_env(tmp_path)


def in_db(env: dict[str, str], work: Callable[[Database], Awaitable[_T]]) -> _T:
    """Run ``work`` against the command line's database file, migrated first."""

    async def go() -> _T:
        url = database_url(env)
        await upgrade(url)
        db = open_database(url)
        try:
            return await work(db)
        finally:
            await db.close()

    return asyncio.run(go())


@pytest.fixture
def default_tenant(env: dict[str, str]) -> uuid.UUID:
    """The first-run tenant, made as `opendeep up` makes it (simulated PBX: always open)."""
    settings = Settings(_env_file=None, var_dir=Path(env["OPENDEEP_VAR_DIR"]))  # type: ignore[call-arg]

    async def boot(db: Database) -> uuid.UUID:
        return (await accounts.bootstrap_first_run(db, settings)).tenant.id

    return in_db(env, boot)


def ok(env: dict[str, str], *args: str) -> str:
    result = run(env, *args)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def refused(env: dict[str, str], *args: str) -> str:
    """Run a command that must fail with one clear line; return that line."""
    result = run(env, *args)
    assert result.returncode == 2, result.stdout + result.stderr
    assert result.stderr.startswith("opendeep: error:"), result.stderr
    assert "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    return result.stderr.strip()


def listed(env: dict[str, str], *args: str) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = json.loads(ok(env, "task", "list", "--json", *args))
    return found


def add(env: dict[str, str], *args: str) -> dict[str, Any]:
    view: dict[str, Any] = json.loads(
        ok(
            env,
            "task",
            "add",
            "--to",
            NUMBER,
            "--objective",
            "Move the appointment",
            "--json",
            *args,
        )
    )
    return view


def _when(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text)


# -- add, list, show, cancel ------------------------------------------------------------------


def test_add_list_show_cancel_a_waiting_task(
    env: dict[str, str], default_tenant: uuid.UUID
) -> None:
    out = ok(
        env,
        "task", "add", "--to", NUMBER, "--objective", "Move the dentist appointment",
        "--context", "Patient: Ada Lovelace", "--name", "Dr Smith",
    )  # fmt: skip
    match = re.search(r"Task ([0-9a-f-]{36}) created for tenant default", out)
    assert match, out
    task_id = match.group(1)
    assert "Dr Smith, +1 415 555 0100" in out
    assert "America/Los_Angeles (callee's time)" in out and " UTC" in out

    table = ok(env, "task", "list")
    assert table.splitlines()[0].split()[:3] == ["ID", "STATUS", "ATTEMPTS"]
    assert f"{task_id[:8]}  PENDING  0/3" in table
    assert "+1 415 555 0100" in table and "Move the dentist appointment" in table

    shown = ok(env, "task", "show", task_id[:8])
    assert f"Task {task_id}  PENDING" in shown
    assert "Context:    Patient: Ada Lovelace" in shown
    assert "Calls (0)" in shown and "Questions (0)" in shown
    assert re.search(r"Events \(1, UTC\)\n  \S+ \S+  TASK_CREATED  Task created: call", shown)

    assert ok(env, "task", "cancel", task_id).strip() == f"Task {task_id} cancelled."
    (row,) = listed(env)
    assert row["status"] == "CANCELLED" and row["next_action_time"] is None
    assert "already cancelled" in refused(env, "task", "cancel", task_id)
    kinds = [e["kind"] for e in json.loads(ok(env, "task", "show", task_id, "--json"))["events"]]
    assert kinds == ["TASK_CREATED", "CANCELLED"]


def test_at_in_ten_minutes_is_due_ten_minutes_ahead(
    env: dict[str, str], default_tenant: uuid.UUID
) -> None:
    before = utcnow()
    view = add(env, "--at", "in 10 minutes")
    due = _when(view["next_action_time"]) - before
    assert dt.timedelta(minutes=9, seconds=50) <= due <= dt.timedelta(minutes=10, seconds=30)


def test_at_phrase_is_read_in_the_given_zone_and_iso_offsets_are_kept(
    env: dict[str, str], default_tenant: uuid.UUID
) -> None:
    paris = zoneinfo.ZoneInfo("Europe/Paris")
    today_before = dt.datetime.now(paris).date()
    view = add(env, "--at", "tomorrow at 3pm", "--timezone", "Europe/Paris")
    today_after = dt.datetime.now(paris).date()  # the command may run across midnight there
    local = _when(view["next_action_time"]).astimezone(paris)
    assert (local.hour, local.minute) == (15, 0)
    assert local.date() - dt.timedelta(days=1) in {today_before, today_after}

    at = (utcnow() + dt.timedelta(days=2)).replace(microsecond=0)
    iso = at.astimezone(dt.timezone(dt.timedelta(hours=-5))).isoformat()
    assert _when(add(env, "--at", iso)["next_action_time"]) == at

    text = ok(env, "task", "add", "--to", NUMBER, "--objective", "x", "--at", "now")
    assert "'now' read in this machine's zone" in text


def test_a_fresh_install_is_told_to_run_up_first(env: dict[str, str]) -> None:
    assert "run `opendeep up` once" in refused(env, "task", "list")


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (("--to", "+1 415 555 01"), "number"),
        (("--to", "+1 911"), "emergency"),
        (("--to", "+1 900 555 0100"), "premium"),
        (("--timezone", "Mars/Olympus_Mons"), "unknown time zone"),
        (("--at", "when pigs fly"), "cannot read --at"),
        (("--at", "2020-01-01T09:00+00:00"), "in the past"),
        (("--at", "yesterday"), "in the past"),
        (("--objective", "   "), "objective may not be empty"),
        (("--max-attempts", "0"), "max attempts"),
        (("--tenant", "nobody"), "no tenant named 'nobody'"),
    ],
)
def test_bad_input_is_one_line_exit_2_and_writes_nothing(
    env: dict[str, str], default_tenant: uuid.UUID, args: tuple[str, ...], says: str
) -> None:
    add(env)
    defaults = {"--to": NUMBER, "--objective": "Move the appointment"}
    given = dict(zip(args[::2], args[1::2], strict=True))
    line = refused(env, "task", "add", *(x for kv in {**defaults, **given}.items() for x in kv))
    assert says in line
    assert len(listed(env)) == 1


def test_list_filters_by_status_and_limits(env: dict[str, str], default_tenant: uuid.UUID) -> None:
    first, second, third = (add(env)["id"] for _ in range(3))
    ok(env, "task", "cancel", second)
    assert [r["id"] for r in listed(env, "--status", "pending")] == [third, first]
    assert [r["id"] for r in listed(env, "--limit", "1")] == [third]
    assert "limit must be between" in refused(env, "task", "list", "--limit", "0")
    assert "No tasks." in ok(env, "task", "list", "--status", "COMPLETED")


# -- live tasks: show with calls, cancel politely -----------------------------------------------


async def _live_task_with_call(db: Database, tenant_id: uuid.UUID) -> tuple[uuid.UUID, uuid.UUID]:
    task_id = await rows.add_task(db, tenant_id, status=TaskStatus.IN_PROGRESS, total_calls=1)
    call_id = uuid.uuid4()
    async with db.write() as session:
        session.add(
            Call(
                id=call_id,
                task_id=task_id,
                tenant_id=tenant_id,
                destination="+14155550100",
                attempt_number=1,
                status=CallStatus.ENDED,
                telephony_result=TelephonyResult.ANSWERED,
                end_reason=EndReason.COMPLETED,
                hangup_cause=16,
                created_at=rows.NOW,
                answered_at=rows.NOW + dt.timedelta(seconds=4),
                ended_at=rows.NOW + dt.timedelta(seconds=70),
                transcript=[
                    {
                        "speaker": "agent",
                        "text": "Hello, I am an AI assistant.",
                        "start_ms": 0,
                        "end_ms": 900,
                    },
                    {
                        "speaker": "callee",
                        "text": "Hi, what is it about?",
                        "start_ms": 61_000,
                        "end_ms": 62_000,
                    },
                ],
                tool_calls=[
                    {
                        "name": "send_dtmf",
                        "arguments": {"digits": "5"},
                        "result": "sent",
                        "at": rows.NOW.isoformat(),
                    },
                ],
            )
        )
        session.add(
            HitlRequest(
                id=uuid.uuid4(),
                task_id=task_id,
                tenant_id=tenant_id,
                call_id=call_id,
                question="What is the order number?",
                recipient_message="One moment please",
                timeout_seconds=10.0,
                status=HitlStatus.PENDING,
                asked_at=rows.NOW + dt.timedelta(seconds=30),
            )
        )
    return task_id, call_id


def test_show_prints_calls_as_a_conversation_with_tools_and_questions(
    env: dict[str, str], default_tenant: uuid.UUID
) -> None:
    task_id, call_id = in_db(env, lambda db: _live_task_with_call(db, default_tenant))
    shown = ok(env, "task", "show", str(task_id))
    assert f"Call 1  {call_id}  ENDED" in shown
    assert "result answered, cause 16, end reason completed" in shown
    assert "answered 2026-03-04 12:00:04, ended 2026-03-04 12:01:10 (UTC)" in shown
    assert "00:00  Agent: Hello, I am an AI assistant." in shown
    assert "01:01  Callee: Hi, what is it about?" in shown
    assert 'tool send_dtmf({"digits": "5"}) → sent' in shown
    assert "PENDING  asked 2026-03-04 12:00:30 UTC\n    Q: What is the order number?" in shown
    assert "answer with: opendeep answer " in shown

    detail = json.loads(ok(env, "task", "show", str(task_id), "--json"))
    assert [t["speaker"] for t in detail["calls"][0]["transcript"]] == ["agent", "callee"]
    assert detail["questions"][0]["status"] == "PENDING"


def test_cancel_of_a_live_task_asks_the_call_to_end_politely(
    env: dict[str, str], default_tenant: uuid.UUID
) -> None:
    task_id, _ = in_db(env, lambda db: _live_task_with_call(db, default_tenant))
    out = ok(env, "task", "cancel", str(task_id), "--by", "alice")
    assert "cancel requested; the live call will be ended politely" in out
    (row,) = listed(env)
    assert row["status"] == "IN_PROGRESS" and row["cancel_requested"] is True
    assert "IN_PROGRESS (cancelling)" in ok(env, "task", "list")
    events = json.loads(ok(env, "task", "show", str(task_id), "--json"))["events"]
    assert events[-1]["kind"] == "CANCEL_REQUESTED" and events[-1]["data"] == {"by": "alice"}


# -- answers ----------------------------------------------------------------------------------


async def _question(
    db: Database, tenant_id: uuid.UUID, task_status: TaskStatus, status: HitlStatus
) -> uuid.UUID:
    task_id = await rows.add_task(db, tenant_id, status=task_status, timezone="America/New_York")
    request_id = uuid.uuid4()
    async with db.write() as session:
        session.add(
            HitlRequest(
                id=request_id,
                task_id=task_id,
                tenant_id=tenant_id,
                question="What is the order number?",
                recipient_message="One moment please",
                timeout_seconds=10.0,
                status=status,
                asked_at=utcnow(),
            )
        )
    return request_id


def _question_in(
    env: dict[str, str], tenant_id: uuid.UUID, task_status: TaskStatus, status: HitlStatus
) -> uuid.UUID:
    return in_db(env, lambda db: _question(db, tenant_id, task_status, status))


def _stored(env: dict[str, str], request_id: uuid.UUID) -> tuple[HitlRequest, Task]:
    async def read(db: Database) -> tuple[HitlRequest, Task]:
        question = await rows.question_row(db, request_id)
        return question, await rows.task_row(db, question.task_id)

    return in_db(env, read)


def test_answer_in_time_reaches_the_live_call_and_only_once(
    env: dict[str, str], default_tenant: uuid.UUID
) -> None:
    request_id = _question_in(env, default_tenant, TaskStatus.IN_PROGRESS, HitlStatus.PENDING)
    out = ok(env, "answer", str(request_id)[:8], "A-1234", "--by", "alice")
    assert out.startswith("Answered in time: the live call will use it.")
    question, _ = _stored(env, request_id)
    assert (question.status, question.answer, question.answered_by) == (
        HitlStatus.ANSWERED,
        "A-1234",
        "alice",
    )
    assert "already answered" in refused(env, "answer", str(request_id), "A-9999")
    assert _stored(env, request_id)[0].answer == "A-1234"


def test_late_answer_to_a_waiting_task_schedules_the_callback(
    env: dict[str, str], default_tenant: uuid.UUID
) -> None:
    request_id = _question_in(
        env, default_tenant, TaskStatus.PENDING_USER_INFO, HitlStatus.TIMED_OUT
    )
    before = utcnow()
    out = ok(env, "answer", str(request_id), "A-1234")
    assert out.startswith("Answered late (the call had stopped waiting for")
    assert "a callback is scheduled at" in out and "America/New_York (callee's time)" in out
    question, task = _stored(env, request_id)
    assert question.status is HitlStatus.ANSWERED_LATE
    assert task.status is TaskStatus.RETRY_SCHEDULED
    assert task.next_action_time is not None and task.next_action_time >= before
    assert [i["answer"] for i in task.collected_info] == ["A-1234"]


def test_late_answer_during_a_call_leaves_the_callback_to_the_task_actor(
    env: dict[str, str], default_tenant: uuid.UUID
) -> None:
    request_id = _question_in(env, default_tenant, TaskStatus.ANALYZING, HitlStatus.TIMED_OUT)
    out = ok(env, "answer", str(request_id), "A-1234", "--json")
    assert json.loads(out)["late"] is True
    question, task = _stored(env, request_id)
    assert question.status is HitlStatus.ANSWERED_LATE and task.status is TaskStatus.ANALYZING


@pytest.mark.parametrize(
    "case",
    [
        (TaskStatus.IN_PROGRESS, HitlStatus.PENDING, "   ", "answer may not be empty"),
        (TaskStatus.FAILED, HitlStatus.EXPIRED, "A-1", "expired"),
        (TaskStatus.CANCELLED, HitlStatus.TIMED_OUT, "A-1", "expired"),
    ],
)
def test_answer_refusals_change_nothing(
    env: dict[str, str],
    default_tenant: uuid.UUID,
    case: tuple[TaskStatus, HitlStatus, str, str],
) -> None:
    task_status, status, answer, says = case
    request_id = _question_in(env, default_tenant, task_status, status)
    version = _stored(env, request_id)[0].version
    assert says in refused(env, "answer", str(request_id), answer)
    question, _ = _stored(env, request_id)
    assert (question.status, question.version, question.answer) == (status, version, None)


def test_answer_to_an_unknown_or_malformed_id_is_refused(
    env: dict[str, str], default_tenant: uuid.UUID
) -> None:
    assert "no question" in refused(env, "answer", str(uuid.uuid4()), "A-1")
    assert "no question" in refused(env, "answer", "0123abcd", "A-1")
    assert "at least 8 hex digits" in refused(env, "answer", "0123", "A-1")
    assert "at least 8 hex digits" in refused(env, "task", "show", "not-an-id")


# -- tenants and id prefixes -------------------------------------------------------------------


def test_another_tenants_task_and_question_look_missing(
    env: dict[str, str], default_tenant: uuid.UUID
) -> None:
    ok(env, "tenant", "add", "acme")
    task_id = add(env)["id"]
    request_id = _question_in(env, default_tenant, TaskStatus.IN_PROGRESS, HitlStatus.PENDING)
    before = in_db(env, lambda db: rows.events(db, uuid.UUID(task_id)))

    assert listed(env, "--tenant", "acme") == []
    for ref in (task_id, task_id[:8]):
        assert f"no task {ref}" in refused(env, "task", "show", ref, "--tenant", "acme")
        assert f"no task {ref}" in refused(env, "task", "cancel", ref, "--tenant", "acme")
    for ref in (str(request_id), str(request_id)[:8]):
        assert "no question" in refused(env, "answer", ref, "A-1", "--tenant", "acme")

    assert sorted(r["status"] for r in listed(env)) == ["IN_PROGRESS", "PENDING"]
    assert len(in_db(env, lambda db: rows.events(db, uuid.UUID(task_id)))) == len(before)
    assert _stored(env, request_id)[0].status is HitlStatus.PENDING
    acme_task = add(env, "--tenant", "acme")["id"]
    assert [r["id"] for r in listed(env, "--tenant", "acme")] == [acme_task]
    assert f"no task {acme_task}" in refused(env, "task", "cancel", acme_task)


def test_an_ambiguous_prefix_asks_for_more_digits(
    env: dict[str, str], default_tenant: uuid.UUID
) -> None:
    twins = [uuid.UUID("abcdef01-0000-4000-8000-000000000001"), uuid.UUID(int=0xABCDEF01 << 96)]

    async def insert(db: Database) -> None:
        for task_id in twins:
            await rows.add_task(db, default_tenant, id=task_id)

    in_db(env, insert)
    assert "ambiguous" in refused(env, "task", "show", "abcdef01")
    assert "ambiguous" in refused(env, "task", "cancel", "ABCDEF01-")
    assert f"Task {twins[0]}" in ok(env, "task", "show", "abcdef01-0000-4")
    assert [r["status"] for r in listed(env)] == ["PENDING", "PENDING"]


async def test_prefixes_resolve_within_the_tenant_on_both_databases(database: Database) -> None:
    mine, theirs = await rows.add_tenant(database), await rows.add_tenant(database)
    task_id = await rows.add_task(
        database, mine, id=uuid.UUID("0f1e2d3c-4b5a-4978-8877-665544332211")
    )
    await rows.add_task(database, theirs, id=uuid.UUID("0f1e2d3c-ffff-4000-8000-000000000000"))
    for ref in ("0f1e2d3c", "0F1E2D3C-4B", "0f1e2d3c4b5a4978887766554433221", str(task_id)):
        assert await resolve_id(database, Task, mine, ref) == task_id
    with pytest.raises(NotFoundError):
        await resolve_id(database, Task, mine, "0f1e2d3cf")
    with pytest.raises(NotFoundError):
        await resolve_id(database, HitlRequest, mine, "0f1e2d3c")
    with pytest.raises(InvalidInputError):
        await resolve_id(database, Task, mine, "0f1e2d3")


def test_cli_runs_without_ray(env: dict[str, str], default_tenant: uuid.UUID) -> None:
    code = "import sys, serve_app.cli; sys.exit(serve_app.cli.main(sys.argv[1:])); "
    result = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", code, "task", "list"],
        check=False,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert not re.search(r"\|\s+ray\b", result.stderr)
