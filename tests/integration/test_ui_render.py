"""What the UI renders, checked without a browser: badges, tables, conversations, figures,
questions, answer outcomes; plus the small pure helpers of the tabs."""

from __future__ import annotations

import datetime as dt
import inspect
import tempfile
import uuid
import zoneinfo
from pathlib import Path
from typing import Any

import pytest

from db.repo.hitl import AnswerResult
from db.repo.views import CallView, EventView, QuestionView, TaskSummary
from db.shapes import CallFigures, Percentiles, Speaker, ToolCallRecord, TranscriptTurn
from db.states import CallStatus, EventKind, HitlStatus, TaskStatus
from gradio_ui import render
from gradio_ui.app import simulated_parts
from gradio_ui.chat import pieces
from gradio_ui.dashboard import Mark, parse_id, servable_recording
from gradio_ui.login import Login
from gradio_ui.questions import question_fate
from tests.integration import _rows

pytestmark = pytest.mark.unit

T0 = dt.datetime(2026, 3, 2, 14, 0, tzinfo=dt.UTC)
PARIS = zoneinfo.ZoneInfo("Europe/Paris")


def _summary(**values: Any) -> TaskSummary:
    base: dict[str, Any] = {
        "id": uuid.uuid4(),
        "title": "Call the dentist",
        "phone": "+14155550100",
        "callee_name": "Dr <Smith>",
        "status": TaskStatus.RETRY_SCHEDULED,
        "outcome": None,
        "next_action_time": T0,
        "total_calls": 1,
        "current_attempt_count": 1,
        "max_attempts": 3,
        "cancel_requested": False,
        "created_at": T0,
        "updated_at": T0,
    }
    return TaskSummary(**(base | values))


def _call(**values: Any) -> CallView:
    base: dict[str, Any] = {
        "id": uuid.uuid4(),
        "attempt_number": 1,
        "status": CallStatus.ENDED,
        "telephony_result": None,
        "end_reason": None,
        "outcome": None,
        "hangup_cause": None,
        "amd_verdict": None,
        "created_at": T0,
        "originated_at": T0,
        "answered_at": T0,
        "ended_at": T0 + dt.timedelta(seconds=30),
        "transcript": (),
        "tool_calls": (),
        "analysis": None,
        "usage": None,
        "figures": None,
        "recording_path": None,
    }
    return CallView(**(base | values))


def _question(status: HitlStatus = HitlStatus.PENDING, **values: Any) -> QuestionView:
    base: dict[str, Any] = {
        "id": uuid.uuid4(),
        "task_id": uuid.uuid4(),
        "task_title": "Plumber",
        "call_id": None,
        "question": "Which <day>?",
        "recipient_message": "One moment",
        "status": status,
        "asked_at": T0,
        "timeout_seconds": 10.0,
        "deadline": T0 + dt.timedelta(seconds=10),
        "answered_at": None,
        "answer": None,
        "answered_by": None,
    }
    return QuestionView(**(base | values))


def test_a_status_badge_names_the_status_for_people_and_tests() -> None:
    badge = render.status_badge(TaskStatus.PENDING_USER_INFO)
    assert 'data-status="PENDING_USER_INFO"' in badge and "Needs your info" in badge
    assert "od-badge-pending_user_info" in badge
    assert all(s in render.STATUS_LABELS for s in TaskStatus)


def test_the_task_table_escapes_what_people_typed_and_shows_the_users_clock() -> None:
    row = _summary(title="<script>alert(1)</script>", cancel_requested=True)
    table = render.task_table([row], PARIS)
    assert "<script>" not in table and "&lt;script&gt;" in table
    assert "Dr &lt;Smith&gt; · +1 415 555 0100" in table
    assert "2026-03-02 15:00" in table  # 14:00 UTC on the Paris wall clock
    assert "1 of 3" in table and "cancel requested" in table
    assert "No tasks yet" in render.task_table([], PARIS)


def test_a_conversation_puts_tool_calls_where_they_happened_and_marks_barge_in() -> None:
    turns = (
        TranscriptTurn(speaker=Speaker.AGENT, text="Hello, I'm an AI", start_ms=0, end_ms=900),
        TranscriptTurn(
            speaker=Speaker.CALLEE,
            text="Hi <there>",
            start_ms=1500,
            end_ms=2000,
            interrupted=True,
        ),
        TranscriptTurn(speaker=Speaker.AGENT, text="Monday works", start_ms=9000, end_ms=9500),
    )
    tool = ToolCallRecord(
        name="ask_user", arguments={"q": "day?"}, result="Monday", at=T0 + dt.timedelta(seconds=5)
    )
    html = render.conversation(turns, (tool,), answered_at=T0)
    order = [html.index(s) for s in ("Hello", "Hi &lt;there&gt;", "ask_user", "Monday works")]
    assert order == sorted(order)
    assert html.count('class="od-turn od-agent"') == 2 and "od-turn od-callee" in html
    assert "(interrupted)" in html and "0:09" in html
    unanswered = render.conversation(turns[:1], (tool,), answered_at=None)
    assert unanswered.index("Hello") < unanswered.index("ask_user")  # no clock: tools last


def test_a_call_shows_its_result_and_its_figures() -> None:
    figures = CallFigures(
        setup_ms=812.4,
        barge_in_ms=Percentiles(p50=40, p99=80, max=90, count=3),
        voice_to_voice_ms=Percentiles(p50=640, p99=900, max=950, count=4),
    )
    html = render.call_html(_call(figures=figures, hangup_cause=16), PARIS)
    assert "Call #1" in html and "812 ms" in html and "Hangup cause" in html
    assert "Barge-in reaction" in html and "p50 640.0 / p99 900.0" in html
    assert "Pacing interval error" not in html  # no samples, no line
    assert render.figures_html(None) == "" and render.figures_html(CallFigures()) == ""
    assert "No calls yet" in render.calls_html((), PARIS)


def test_events_are_listed_in_order_with_their_kind() -> None:
    events = [
        EventView(i, uuid.uuid4(), None, T0 + dt.timedelta(seconds=i), kind, f"m{i}", {})
        for i, kind in enumerate((EventKind.TASK_CREATED, EventKind.DIAL_STARTED), start=1)
    ]
    html = render.events_html(events, PARIS)
    assert html.index("TASK_CREATED") < html.index("DIAL_STARTED")
    assert 'data-event-id="2"' in html and "15:00:02" in html


def test_an_open_question_counts_down_to_its_deadline() -> None:
    q = _question()
    html = render.open_questions_html([q], T0 + dt.timedelta(seconds=3.5), PARIS)
    assert 'data-deadline="2026-03-02T14:00:10.000Z"' in html and "7 s left" in html
    assert "Which &lt;day&gt;?" in html
    late = render.question_card(_question(HitlStatus.TIMED_OUT), T0, PARIS)
    assert "data-deadline" not in late and "callback" in late
    label, value = render.question_choice(q)
    assert value == str(q.id) and "Plumber" in label


def test_an_answers_outcome_says_whether_the_call_heard_it() -> None:
    in_time = AnswerResult(_question(HitlStatus.ANSWERED), TaskStatus.IN_PROGRESS, None)
    assert "Sent to the live call" in render.answer_outcome(in_time, PARIS)
    late = AnswerResult(_question(HitlStatus.ANSWERED_LATE), TaskStatus.RETRY_SCHEDULED, T0)
    said = render.answer_outcome(late, PARIS)
    assert "will call back with your answer" in said and "2026-03-02 15:00" in said


def test_a_closed_question_says_what_happened_next() -> None:
    late = _question(HitlStatus.ANSWERED_LATE)
    assert "callback scheduled" in question_fate(late, (TaskStatus.RETRY_SCHEDULED, T0), PARIS)
    assert "completed" in question_fate(late, (TaskStatus.COMPLETED, None), PARIS)
    assert question_fate(_question(HitlStatus.ANSWERED), None, PARIS) == "Sent to the live call"
    html = render.answered_html([late], {late.id: "told"}, PARIS)
    assert "told" in html and 'data-status="ANSWERED_LATE"' in html


def test_the_users_zone_falls_back_to_utc() -> None:
    assert render.user_zone("Europe/Paris").key == "Europe/Paris"
    for bad in (None, "", "Mars/Olympus", "../etc/passwd"):
        assert render.user_zone(bad).key == "UTC"
    assert render.when(None, PARIS) == "—"


def test_a_reply_streams_as_growing_prefixes_ending_with_all_of_it() -> None:
    text = "one two three four five six seven"
    parts = pieces(text, words=3)
    assert parts == ["one two three", "one two three four five six", text]
    assert pieces("short") == ["short"]


def test_the_header_says_which_parts_are_simulated() -> None:
    sim = simulated_parts(_rows.settings())
    assert "simulated" in sim and "PBX: **simulated**" in sim
    real = simulated_parts(_rows.settings(pbx="asterisk", voice="openai", analysis="gemini"))
    assert real.startswith("All parts are real")


def test_a_tick_re_renders_only_what_its_inputs_changed() -> None:
    mark = Mark(last_event=5, live=(("c", "ANSWERED", 3),), status="ALL", selected="", zone="UTC")
    moved = Mark(5, (("c", "ANSWERED", 4),), "ALL", "", "UTC")
    assert mark.table_key() == moved.table_key()
    assert mark.live_key() != moved.live_key() and mark.detail_key() != moved.detail_key()
    assert parse_id(" not a uuid ") is None and parse_id(None) is None
    some = uuid.uuid4()
    assert parse_id(f" {some} ") == some


def test_only_recordings_inside_the_recordings_directory_are_served(tmp_path: Path) -> None:
    inside = tmp_path / "rec" / "a.wav"
    inside.parent.mkdir()
    inside.write_bytes(b"RIFF")
    outside = tmp_path / "b.wav"
    outside.write_bytes(b"RIFF")
    assert servable_recording(_call(recording_path=str(inside)), tmp_path / "rec") == str(inside)
    assert servable_recording(_call(recording_path=str(outside)), tmp_path / "rec") is None
    missing = _call(recording_path=str(tmp_path / "rec" / "gone.wav"))
    assert servable_recording(missing, tmp_path / "rec") is None
    assert servable_recording(_call(), tmp_path / "rec") is None


def test_gradio_awaits_the_login_check_instead_of_running_it_on_the_loop() -> None:
    # gradio/routes.py awaits `auth` only when inspect.iscoroutinefunction(auth) holds;
    # otherwise it calls it inline on the event loop (scrypt would stall every request).
    login = Login(db=None)  # type: ignore[arg-type]
    assert inspect.iscoroutinefunction(login.check)


def test_a_recording_kept_elsewhere_is_copied_where_gradio_may_serve_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "cwd").mkdir()
    monkeypatch.chdir(tmp_path / "cwd")
    monkeypatch.setattr(tempfile, "gettempdir", lambda: str(tmp_path / "tmp"))
    recording = tmp_path / "var" / "rec" / "c.wav"
    recording.parent.mkdir(parents=True)
    recording.write_bytes(b"RIFF-audio")
    served = servable_recording(_call(recording_path=str(recording)), recording.parent)
    assert served == str(tmp_path / "tmp" / "opendeep-recordings" / "c.wav")
    assert Path(served).read_bytes() == b"RIFF-audio"
