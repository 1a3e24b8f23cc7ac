"""The Gradio UI served by the real ingress (uvicorn on a free port), driven like a browser
would: Gradio's own client, logged in per user, through Gradio's queue and event streams.

Pins: login is required; a user sees and changes only their tenant's tasks and questions;
the chat writes a task only after confirmation and streams its replies; the dashboard and
the questions handlers read and write the right rows and nudge the right actors.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import itertools
import re
import socket
import uuid
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gradio as gr
import httpx
import pytest
import sqlalchemy as sa
import uvicorn
from gradio_client import Client

from db.engine import Database
from db.models import Call, Task, User
from db.repo import accounts, tasks
from db.shapes import utcnow
from db.states import HitlStatus, TaskStatus
from gradio_ui.intake_types import Draft, Intake, IntakeTurn
from gradio_ui.login import Login
from serve_app.ingress import build_ingress
from serve_app.services import Services
from tests.integration import _rows

pytestmark = [
    pytest.mark.integration,
    # Gradio's queue statistics use pandas options pandas 3 deprecates; not ours to fix.
    pytest.mark.filterwarnings("ignore:.*no_silent_downcasting:DeprecationWarning"),
    pytest.mark.filterwarnings("ignore:The copy keyword is deprecated"),
]

PASSWORD = "correct horse battery staple"
PHONE = re.compile(r"\+\d[\d ]{7,}\d")
ZONE = "Europe/Paris"


class RecordingNudger:
    """Records the nudges the front sends."""

    def __init__(self) -> None:
        self.woken = 0
        self.nudged: list[uuid.UUID] = []

    def wake_supervisor(self) -> None:
        """Count a supervisor wake-up."""
        self.woken += 1

    def nudge_task(self, task_id: uuid.UUID) -> None:
        """Record a task nudge."""
        self.nudged.append(task_id)


class ScriptedIntake:
    """A tiny intake: a message with a number and words completes the draft; "yes" confirms."""

    async def respond(
        self,
        draft: Draft,
        history: Sequence[tuple[str, str]],
        message: str,
        *,
        now: dt.datetime,
        user_zone: str,
    ) -> IntakeTurn:
        """Fill the draft from ``message``; reply with text long enough to stream in parts."""
        del history, now, user_zone
        if message.strip().lower() == "yes":
            return IntakeTurn("Great, creating the task now.", draft, True, not draft.missing())
        found = PHONE.search(message)
        phone = found.group(0) if found else draft.phone
        objective = PHONE.sub("", message).strip() or draft.objective
        new = dataclasses.replace(draft, phone=phone, objective=objective, timing_set=True)
        ready = not new.missing()
        reply = (
            "Here is what I understood from your message so far, please read it carefully "
            "and tell me whether I should create this task for you now."
            if ready
            else "Who should I call? Please give me a phone number and what to ask them."
        )
        return IntakeTurn(reply, new, ready, False)


@dataclass
class Running:
    """The server under test, its tenants (A: alice, B: bob) and its nudger."""

    url: str
    db: Database
    nudger: RecordingNudger
    a: accounts.TenantView
    b: accounts.TenantView
    alice: accounts.UserView
    var_dir: Path
    clients: list[Client] = field(default_factory=list)

    async def client(self, username: str, password: str = PASSWORD) -> Client:
        """A logged-in Gradio client (built in a thread: it is synchronous)."""
        client = await asyncio.to_thread(
            Client,
            self.url,
            auth=(username, password),
            verbose=False,
            analytics_enabled=False,
            download_files=False,
        )
        self.clients.append(client)
        return client


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _stop_event_streams(app: Any) -> None:
    """End Gradio's heartbeat streams, which otherwise hold uvicorn's graceful shutdown."""
    for route in app.routes:
        stop = getattr(getattr(route, "app", None), "stop_event", None)
        if stop is not None:
            stop.set()


@asynccontextmanager
async def _serving(
    db: Database, var_dir: Path, intake: Intake | None = None
) -> AsyncIterator[Running]:
    """The ingress on a free port; ``intake=None`` means the real one (rules here)."""
    nudger = RecordingNudger()
    settings = _rows.settings(var_dir=var_dir, recording=True, analysis="rules")
    app = build_ingress(Services(db, settings, nudger), intake=intake)
    port = _free_port()
    config = uvicorn.Config(
        app, host="127.0.0.1", port=port, log_level="warning", timeout_graceful_shutdown=5
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    try:
        while not server.started:
            if task.done():
                task.result()
            await asyncio.sleep(0.02)
        a = await _rows.tenant(db, "tenant-a")
        b = await _rows.tenant(db, "tenant-b")
        alice = await accounts.create_user(db, tenant_id=a.id, username="alice", password=PASSWORD)
        await accounts.create_user(db, tenant_id=b.id, username="bob", password=PASSWORD)
        running = Running(f"http://127.0.0.1:{port}/", db, nudger, a, b, alice, var_dir)
        try:
            yield running
        finally:
            _stop_event_streams(app)  # first, so each client's heartbeat thread ends at once
            await asyncio.gather(*(asyncio.to_thread(c.close) for c in running.clients))
    finally:
        _stop_event_streams(app)
        server.should_exit = True
        await asyncio.wait_for(task, 10)


@pytest.fixture
async def ui(database: Database, tmp_path: Path) -> AsyncIterator[Running]:
    """The UI on SQLite and on PostgreSQL in turn."""
    async with _serving(database, tmp_path, ScriptedIntake()) as running:
        yield running


@pytest.fixture
async def ui_sqlite(sqlite_db: Database, tmp_path: Path) -> AsyncIterator[Running]:
    """The UI on SQLite only."""
    async with _serving(sqlite_db, tmp_path, ScriptedIntake()) as running:
        yield running


async def _call(client: Client, api_name: str, *args: Any) -> Any:
    return await asyncio.to_thread(client.predict, *args, api_name=api_name)


def _outputs(client: Client, api_name: str, *args: Any) -> list[Any]:
    job = client.submit(*args, api_name=api_name)
    job.result(timeout=30)
    return list(job.outputs())


async def _stream(client: Client, api_name: str, *args: Any) -> list[Any]:
    return await asyncio.to_thread(_outputs, client, api_name, *args)


def _texts(chat: list[dict[str, Any]]) -> list[str]:
    """The chat's message texts (Gradio hands them back as lists of text parts)."""
    return ["".join(part["text"] for part in m["content"]) for m in chat]


async def _dashboard(client: Client, selected: str | None = None, status: str = "ALL") -> Any:
    return await _call(client, "/dashboard_refresh", status, selected, ZONE)


async def _task_count(db: Database, tenant_id: uuid.UUID) -> int:
    async with db.read() as session:
        count = await session.scalar(
            sa.select(sa.func.count()).select_from(Task).where(Task.tenant_id == tenant_id)
        )
        return int(count or 0)


# -- login ----------------------------------------------------------------------------------


async def test_without_login_the_ui_gives_no_data_and_the_api_routes_stay_first(
    ui_sqlite: Running,
) -> None:
    await _rows.insert_task(ui_sqlite.db, ui_sqlite.a.id, TaskStatus.PENDING, title="secret")
    async with httpx.AsyncClient(base_url=ui_sqlite.url) as http:
        assert (await http.get("config")).status_code == 401
        join = await http.post(
            "gradio_api/queue/join",
            json={"data": ["ALL", None, ZONE, None], "fn_index": 0, "session_hash": "x"},
        )
        assert join.status_code == 401
        page = await http.get("")
        assert page.status_code == 200 and "secret" not in page.text
        refused = await http.post("login", data={"username": "alice", "password": "wrong"})
        assert refused.status_code == 400
        assert (await http.get("healthz")).status_code == 200  # the API's, not Gradio's


async def test_login_is_case_insensitive_and_names_the_user(ui_sqlite: Running) -> None:
    client = await ui_sqlite.client("  ALICE ")
    first = await _dashboard(client)
    assert first[0].startswith("**0** tasks")
    with pytest.raises(Exception, match=r"(?i)credentials|login"):
        await ui_sqlite.client("alice", "not the password")


# -- tenancy ----------------------------------------------------------------------------------


async def test_a_user_never_sees_or_changes_another_tenants_tasks_or_questions(
    ui: Running,
) -> None:
    task_id = await _rows.insert_task(
        ui.db, ui.a.id, TaskStatus.IN_PROGRESS, title="Dentist for alice"
    )
    call_id = await _rows.insert_call(ui.db, task_id)
    request_id = await _rows.insert_question(
        ui.db, task_id, call_id=call_id, question="Which day suits alice?"
    )
    before = await _rows.snapshot(ui.db, ui.a.id)
    bob = await ui.client("bob")

    listed = await _dashboard(bob, selected=str(task_id))
    page = " ".join(str(part) for part in listed)
    assert "Dentist for alice" not in page and "Hello" not in page
    assert "No such task in your account." in listed[3]
    questions = await _call(bob, "/questions_refresh", str(request_id), ZONE)
    assert "Which day suits alice?" not in " ".join(str(part) for part in questions)
    answered = await _call(bob, "/questions_answer", str(request_id), "Monday", ZONE)
    assert answered[0] == "No such question in your account."
    cancelled = await _call(bob, "/dashboard_cancel", str(task_id))
    assert cancelled == "No such task in your account."
    assert await _rows.snapshot(ui.db, ui.a.id) == before
    assert ui.nudger.nudged == [] and ui.nudger.woken == 0

    alice = await ui.client("alice")
    mine = await _dashboard(alice, selected=str(task_id))
    assert "Dentist for alice" in mine[1] and "Hello" in mine[4]


# -- chat -------------------------------------------------------------------------------------


async def test_the_chat_streams_its_reply_and_creates_the_task_only_when_confirmed(
    ui: Running,
) -> None:
    client = await ui.client("alice")
    outputs = await _stream(client, "/chat_send", "+1 415 555 0100 ask about the order", ZONE)
    replies = [_texts(out[0])[-1] for out in outputs if isinstance(out[0], list)]
    growing = [r for r in dict.fromkeys(replies) if r.startswith("Here is")]
    assert len(growing) >= 3, replies  # the reply arrived in several pieces, each longer
    assert all(a in b for a, b in itertools.pairwise(growing))
    assert outputs[-1][2]["visible"] is True  # the summary card
    assert await _task_count(ui.db, ui.a.id) == 0 and ui.nudger.woken == 0

    done = await _stream(client, "/chat_send", "yes", ZONE)
    final = _texts(done[-1][0])[-1]
    assert "Task created" in final
    async with ui.db.read() as session:
        task = (await session.scalars(sa.select(Task))).one()
    assert task.tenant_id == ui.a.id and task.created_by == ui.alice.id
    assert task.phone == "+14155550100" and str(task.id) in final
    assert ui.nudger.woken == 1
    assert await _task_count(ui.db, ui.b.id) == 0


async def test_a_refused_task_is_explained_and_the_draft_kept_for_a_fix(
    ui_sqlite: Running,
) -> None:
    client = await ui_sqlite.client("alice")
    # Tenant A may call US and FR numbers only: a UK number is refused at creation.
    await _stream(client, "/chat_send", "+44 20 7946 0958 book a table", ZONE)
    refused = await _stream(client, "/chat_confirm", ZONE)
    assert "could not create the task" in _texts(refused[-1][0])[-1]
    assert refused[-1][2]["visible"] is True  # the card stays for a correction
    assert await _task_count(ui_sqlite.db, ui_sqlite.a.id) == 0

    await _stream(client, "/chat_send", "+33 1 42 68 53 00", ZONE)
    created = await _stream(client, "/chat_confirm", ZONE)
    assert "Task created" in _texts(created[-1][0])[-1]
    async with ui_sqlite.db.read() as session:
        task = (await session.scalars(sa.select(Task))).one()
    assert task.phone == "+33142685300" and task.objective == "book a table"
    again = await _stream(client, "/chat_confirm", ZONE)
    assert "nothing to confirm" in _texts(again[-1][0])[-1]
    assert await _task_count(ui_sqlite.db, ui_sqlite.a.id) == 1


async def test_the_real_intake_turns_one_message_and_a_yes_into_a_task(
    sqlite_db: Database, tmp_path: Path
) -> None:
    async with _serving(sqlite_db, tmp_path) as running:
        client = await running.client("alice")
        said = "Call Dr Smith at +1 415 555 0100 tomorrow at 3pm to ask about my order"
        card = await _stream(client, "/chat_send", said, ZONE)
        assert "Dr Smith" in _texts(card[-1][0])[-1]  # the rules intake shows its card
        assert await _task_count(running.db, running.a.id) == 0
        done = await _stream(client, "/chat_send", "yes", ZONE)
        assert "Task created" in _texts(done[-1][0])[-1]
        async with running.db.read() as session:
            task = (await session.scalars(sa.select(Task))).one()
        assert task.callee_name == "Dr Smith" and task.phone == "+14155550100"
        assert task.next_action_time is not None and task.next_action_time > utcnow()
        assert running.nudger.woken == 1


# -- dashboard --------------------------------------------------------------------------------

SUMMARY, TABLE, SELECTOR, HEADER, CALLS, RECORDING, EVENTS, LIVE = range(8)
SKIPPED = {"__type__": "update"}


def _skipped(value: Any) -> bool:
    return isinstance(value, dict) and (value == SKIPPED or value.get("props") == SKIPPED)


async def _call_in_progress(running: Running) -> tuple[uuid.UUID, uuid.UUID]:
    """An IN_PROGRESS task whose live call has a transcript, a tool call, figures, a recording."""
    task_id = await _rows.insert_task(
        running.db, running.a.id, TaskStatus.IN_PROGRESS, title="Call the plumber"
    )
    call_id = await _rows.insert_call(running.db, task_id)
    recording = running.var_dir / "recordings" / f"{call_id}.wav"
    recording.parent.mkdir(parents=True)
    recording.write_bytes(b"RIFF\x24\x00\x00\x00WAVEfmt ")
    async with running.db.write() as session:
        call = await session.get(Call, call_id)
        assert call is not None
        call.tool_calls = [
            {
                "name": "ask_user",
                "arguments": {"question": "Which day?"},
                "result": "Monday",
                "at": (call.created_at + dt.timedelta(seconds=1)).isoformat(),
            }
        ]
        call.answered_at = call.created_at
        call.figures = {
            "setup_ms": 812.0,
            "voice_to_voice_ms": {"p50": 640, "p99": 900, "max": 950, "count": 4},
        }
        call.recording_path = str(recording)
    return task_id, call_id


async def test_the_dashboard_lists_the_tenants_tasks_and_shows_one_tasks_history(
    ui: Running,
) -> None:
    settings = _rows.settings()
    for n in range(3):
        await tasks.create_task(
            ui.db, ui.a.id, objective=f"Errand {n}", phone="+14155550100", settings=settings
        )
    task_id, _ = await _call_in_progress(ui)
    await _rows.insert_task(ui.db, ui.b.id, TaskStatus.PENDING, title="Bob's own task")
    client = await ui.client("alice")

    first = await _dashboard(client)
    assert first[SUMMARY].startswith("**4** tasks")
    titles = re.findall(r'class="od-title">([^<]+)<', first[TABLE])
    assert titles == ["Call the plumber", "Errand 2", "Errand 1", "Errand 0"]  # newest first
    assert first[SELECTOR]["choices"][0][1] == str(task_id)
    assert "Hello" in first[LIVE]  # the live call's transcript so far
    assert all(_skipped(part) for part in await _dashboard(client))  # nothing changed

    pending = await _dashboard(client, status="PENDING")
    assert pending[SUMMARY].startswith("**3** pending tasks")
    assert _skipped(pending[LIVE])

    chosen = await _dashboard(client, selected=str(task_id), status="PENDING")
    assert "Call the plumber" in chosen[HEADER] and 'data-status="IN_PROGRESS"' in chosen[HEADER]
    assert 'class="od-turn od-agent"' in chosen[CALLS] and "ask_user" in chosen[CALLS]
    assert "Voice to voice" in chosen[CALLS] and "812 ms" in chosen[CALLS]
    assert chosen[RECORDING]["visible"] is True and chosen[RECORDING]["value"]
    assert _skipped(chosen[TABLE])  # only the detail changed

    said = await _call(client, "/dashboard_cancel", str(task_id))
    assert said.startswith("Cancel requested")
    assert ui.nudger.nudged == [task_id]
    after = await _dashboard(client, selected=str(task_id), status="PENDING")
    assert "CANCEL_REQUESTED" in after[EVENTS]


async def test_cancelling_from_the_dashboard_cancels_a_waiting_task_once(
    ui_sqlite: Running,
) -> None:
    view = await tasks.create_task(
        ui_sqlite.db,
        ui_sqlite.a.id,
        objective="Book a table",
        phone="+14155550100",
        settings=_rows.settings(),
    )
    client = await ui_sqlite.client("alice")
    assert "cancelled" in await _call(client, "/dashboard_cancel", str(view.id))
    assert (await _rows.task_row(ui_sqlite.db, view.id)).status is TaskStatus.CANCELLED
    assert ui_sqlite.nudger.nudged == [view.id]
    again = await _call(client, "/dashboard_cancel", str(view.id))
    assert again.startswith("Could not cancel") and "cancelled" in again
    assert await _call(client, "/dashboard_cancel", "not-an-id") == "Select a task first."
    listed = await _dashboard(client)
    assert 'data-status="CANCELLED"' in listed[TABLE]


# -- questions --------------------------------------------------------------------------------

OPEN, CHOICE, ANSWERED, ALERT = range(4)


async def test_a_question_shows_up_and_its_answer_goes_to_the_live_call(ui: Running) -> None:
    client = await ui.client("alice")
    empty = await _call(client, "/questions_refresh", None, ZONE)
    assert "No open questions" in empty[OPEN] and empty[ALERT] == ""
    task_id = await _rows.insert_task(ui.db, ui.a.id, TaskStatus.IN_PROGRESS, title="Plumber")
    call_id = await _rows.insert_call(ui.db, task_id)
    request_id = await _rows.insert_question(
        ui.db, task_id, call_id=call_id, question="Which day suits you?"
    )

    shown = await _call(client, "/questions_refresh", None, ZONE)
    assert "Which day suits you?" in shown[OPEN] and "data-deadline=" in shown[OPEN]
    assert shown[CHOICE]["value"] == str(request_id)
    assert "1 question waiting" in shown[ALERT]
    assert all(_skipped(part) for part in await _call(client, "/questions_refresh", None, ZONE))

    blank = await _call(client, "/questions_answer", str(request_id), "  ", ZONE)
    assert blank[0] == "Type an answer first."
    said = await _call(client, "/questions_answer", str(request_id), "Monday at 9", ZONE)
    assert "Sent to the live call" in said[0] and said[1] == ""
    row = await _rows.question_row(ui.db, request_id)
    assert row.status is HitlStatus.ANSWERED and row.answer == "Monday at 9"
    assert row.answered_by == "ui:alice"
    assert ui.nudger.nudged == [task_id]
    after = await _call(client, "/questions_refresh", str(request_id), ZONE)
    assert "No open questions" in after[OPEN] and "Monday at 9" in after[ANSWERED]
    assert "Sent to the live call" in after[ANSWERED]
    twice = await _call(client, "/questions_answer", str(request_id), "Tuesday", ZONE)
    assert twice[0].startswith("Not sent") and "already answered" in twice[0]


async def test_a_late_answer_schedules_the_callback_and_says_so(ui_sqlite: Running) -> None:
    task_id = await _rows.insert_task(
        ui_sqlite.db,
        ui_sqlite.a.id,
        TaskStatus.PENDING_USER_INFO,
        title="Garage",
        next_action_time=None,
    )
    request_id = await _rows.insert_question(
        ui_sqlite.db, task_id, HitlStatus.TIMED_OUT, question="Which car?"
    )
    client = await ui_sqlite.client("alice")
    shown = await _call(client, "/questions_refresh", None, ZONE)
    assert "Which car?" in shown[OPEN] and "callback" in shown[OPEN]
    assert shown[ALERT] == ""  # nothing is waiting on a live call

    said = await _call(client, "/questions_answer", str(request_id), "The blue one", ZONE)
    assert "will call back with your answer" in said[0]
    assert (await _rows.task_row(ui_sqlite.db, task_id)).status is TaskStatus.RETRY_SCHEDULED
    after = await _call(client, "/questions_refresh", None, ZONE)
    assert "callback scheduled" in after[ANSWERED] and "The blue one" in after[ANSWERED]


# -- login resolution ---------------------------------------------------------------------------


async def test_a_requests_username_maps_to_its_tenant_briefly_cached(database: Database) -> None:
    tenant = await _rows.tenant(database, "tenant-c")
    await accounts.create_user(database, tenant_id=tenant.id, username="carol", password=PASSWORD)
    now = [0.0]
    login = Login(database, cache_seconds=30, clock=lambda: now[0])
    assert await login.check("Carol", PASSWORD) and not await login.check("carol", "nope")
    account = await login.account(gr.Request(username=" CAROL "))
    assert account is not None and account.tenant_id == tenant.id
    assert account.tenant_name == "tenant-c" and account.actor == "ui:carol"
    for nobody in (None, gr.Request(), gr.Request(username="ghost"), gr.Request(username="a b")):
        assert await login.account(nobody) is None

    async with database.write() as session:  # the user goes away (renamed here)
        await session.execute(sa.update(User).values(username="caroline"))
    assert await login.account(gr.Request(username="carol")) == account  # still cached
    now[0] = 31.0
    assert await login.account(gr.Request(username="carol")) is None


async def test_repeated_wrong_passwords_lock_that_username_out_for_a_while(
    sqlite_db: Database,
) -> None:
    tenant = await _rows.tenant(sqlite_db, "tenant-d")
    await accounts.create_user(sqlite_db, tenant_id=tenant.id, username="dave", password=PASSWORD)
    await accounts.create_user(sqlite_db, tenant_id=tenant.id, username="erin", password=PASSWORD)
    now = [0.0]
    login = Login(sqlite_db, clock=lambda: now[0])
    for _ in range(5):
        assert not await login.check("dave", "guess")
    assert not await login.check("Dave ", PASSWORD)  # locked: even the right password waits
    assert await login.check("erin", PASSWORD)  # other usernames are not affected
    now[0] = 301.0
    assert await login.check("dave", PASSWORD)  # the window passed
    assert not await login.check("dave", "guess")  # and success cleared the count
    assert await login.check("dave", PASSWORD)
