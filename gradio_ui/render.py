"""HTML and Markdown the UI shows: status badges, task tables, calls as conversations, events.

Pure functions from read models (:mod:`db.repo.views`) to strings, so they are unit-tested
without a browser. Everything that came from a person or a callee is escaped here: the HTML
components insert these strings as they are.
"""

from __future__ import annotations

import datetime as dt
import html
import json
import uuid
import zoneinfo
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Final

from db.repo._shared import pretty_phone
from db.repo.board import LiveCallView
from db.repo.hitl import AnswerResult
from db.repo.views import CallView, EventView, QuestionView, TaskSummary, TaskView
from db.shapes import CallFigures, Percentiles, Speaker, ToolCallRecord, TranscriptTurn
from db.states import HitlStatus, TaskStatus

UTC: Final = zoneinfo.ZoneInfo("UTC")
TOOL_ARGS_CHARS: Final = 300
TOOL_RESULT_CHARS: Final = 300

STATUS_LABELS: Final[dict[TaskStatus, str]] = {
    TaskStatus.PENDING: "Pending",
    TaskStatus.IN_PROGRESS: "In progress",
    TaskStatus.ANALYZING: "Analyzing",
    TaskStatus.RETRY_SCHEDULED: "Retry scheduled",
    TaskStatus.PENDING_USER_INFO: "Needs your info",
    TaskStatus.COMPLETED: "Completed",
    TaskStatus.FAILED: "Failed",
    TaskStatus.CANCELLED: "Cancelled",
}

QUESTION_FATES: Final[dict[HitlStatus, str]] = {
    HitlStatus.PENDING: "Waiting for your answer",
    HitlStatus.ANSWERED: "Sent to the live call",
    HitlStatus.ANSWERED_LATE: "Answered after the call stopped waiting: OpenDeep calls back",
    HitlStatus.TIMED_OUT: "The call stopped waiting: answer now and OpenDeep calls back",
    HitlStatus.CANCELLED: "Closed: the task was cancelled",
    HitlStatus.EXPIRED: "Expired: the task ended without an answer",
}


def esc(text: object) -> str:
    """``text`` safe to put inside HTML (elements and quoted attributes)."""
    return html.escape(str(text), quote=True)


def user_zone(key: str | None) -> zoneinfo.ZoneInfo:
    """The browser's IANA zone, or UTC when it sent none or one we do not know."""
    if key and key.strip():
        try:
            return zoneinfo.ZoneInfo(key.strip())
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            return UTC
    return UTC


def when(at: dt.datetime | None, tz: zoneinfo.ZoneInfo, *, seconds: bool = False) -> str:
    """``at`` on the user's wall clock (``2026-11-25 15:00``), or an em dash for none."""
    if at is None:
        return "—"
    return at.astimezone(tz).strftime("%Y-%m-%d %H:%M:%S" if seconds else "%Y-%m-%d %H:%M")


def iso(at: dt.datetime) -> str:
    """``at`` as ISO 8601 in UTC, what the page's countdown script reads."""
    stamp = at.astimezone(dt.UTC).isoformat(timespec="milliseconds")
    return stamp.replace("+00:00", "Z")


def status_badge(status: TaskStatus) -> str:
    """A coloured badge for a task status; ``data-status`` carries the enum value."""
    value = TaskStatus(status).value
    label = STATUS_LABELS[TaskStatus(status)]
    return (
        f'<span class="od-badge od-badge-{value.lower()}" data-status="{value}">{esc(label)}</span>'
    )


def question_badge(status: HitlStatus) -> str:
    """A small badge for a question's status."""
    value = HitlStatus(status).value
    return (
        f'<span class="od-badge od-q-{value.lower()}" data-status="{value}">'
        f"{esc(value.replace('_', ' ').lower())}</span>"
    )


def callee(name: str | None, phone: str) -> str:
    """``Dr Smith · +1 415 555 0100`` (escaped)."""
    number = esc(pretty_phone(phone))
    return f"{esc(name)} · {number}" if name else number


def attempts(current: int, maximum: int) -> str:
    """``1 of 3``."""
    return f"{current} of {maximum}"


def short_id(value: object) -> str:
    """The first 8 hex digits of an id, as the CLI shows them."""
    return str(value)[:8]


# -- task list ------------------------------------------------------------------------------


def task_table(rows: Sequence[TaskSummary], tz: zoneinfo.ZoneInfo) -> str:
    """The task list as an HTML table, one row per task (already newest first)."""
    if not rows:
        return '<p class="od-empty">No tasks yet. Define one in the <b>New task</b> tab.</p>'
    head = "".join(
        f"<th>{h}</th>"
        for h in ("Task", "Callee", "Status", "Attempts", "Next action", "Outcome", "Updated")
    )
    body = "".join(_task_row(row, tz) for row in rows)
    return f'<table class="od-table"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def _task_row(row: TaskSummary, tz: zoneinfo.ZoneInfo) -> str:
    badge = status_badge(row.status)
    if row.cancel_requested and row.status not in (TaskStatus.CANCELLED,):
        badge += ' <span class="od-note">cancel requested</span>'
    cells = (
        f'<td><span class="od-title">{esc(row.title)}</span>'
        f'<br><code class="od-id">{short_id(row.id)}</code></td>',
        f"<td>{callee(row.callee_name, row.phone)}</td>",
        f"<td>{badge}</td>",
        f"<td>{attempts(row.current_attempt_count, row.max_attempts)}</td>",
        f"<td>{when(row.next_action_time, tz)}</td>",
        f"<td>{esc(row.outcome.value) if row.outcome else '—'}</td>",
        f"<td>{when(row.updated_at, tz)}</td>",
    )
    return f'<tr data-task-id="{row.id}">{"".join(cells)}</tr>'


def task_choice(title: str, task_id: uuid.UUID) -> tuple[str, str]:
    """A task selector entry: (label shown, value = the full id)."""
    return f"{title} · {short_id(task_id)}", str(task_id)


# -- one task ---------------------------------------------------------------------------------


def task_header(task: TaskView, tz: zoneinfo.ZoneInfo) -> str:
    """Everything about the task itself, above its calls and events."""
    rows = [
        ("Callee", callee(task.callee_name, task.phone)),
        ("Status", status_badge(task.status)),
        (
            "Attempts",
            f"{attempts(task.current_attempt_count, task.max_attempts)}"
            f" ({task.total_calls} call{'s' if task.total_calls != 1 else ''} in all)",
        ),
        ("Next action", when(task.next_action_time, tz)),
        ("Outcome", esc(task.outcome.value) if task.outcome else "—"),
        ("Result", esc(task.result_summary) if task.result_summary else "—"),
        ("Objective", esc(task.objective)),
        ("Context", esc(task.context) if task.context else "—"),
        ("Language", esc(task.language)),
        ("Created", when(task.created_at, tz)),
        ("Updated", when(task.updated_at, tz)),
    ]
    if task.cancel_requested_at is not None:
        rows.append(("Cancel requested", when(task.cancel_requested_at, tz)))
    for info in task.collected_info:
        rows.append(("You told it", f"{esc(info.question)} → <b>{esc(info.answer)}</b>"))
    body = "".join(f"<tr><th>{k}</th><td>{v}</td></tr>" for k, v in rows)
    return (
        f'<div class="od-task" data-task-id="{task.id}"><h3>{esc(task.title)} '
        f'<code class="od-id">{short_id(task.id)}</code></h3>'
        f'<table class="od-kv">{body}</table></div>'
    )


def calls_html(calls: Sequence[CallView], tz: zoneinfo.ZoneInfo) -> str:
    """Every call of a task, newest first, each with its transcript as a conversation."""
    if not calls:
        return '<p class="od-empty">No calls yet.</p>'
    return "".join(call_html(call, tz) for call in reversed(calls))


def call_html(call: CallView, tz: zoneinfo.ZoneInfo) -> str:
    """One call: its times, result and figures, then the conversation."""
    facts = [
        ("Status", esc(call.status.value)),
        ("Telephony", esc(call.telephony_result.value) if call.telephony_result else "—"),
        ("End reason", esc(call.end_reason.value) if call.end_reason else "—"),
        ("Outcome", esc(call.outcome.value) if call.outcome else "—"),
        ("Dialled", when(call.originated_at or call.created_at, tz, seconds=True)),
        ("Answered", when(call.answered_at, tz, seconds=True)),
        ("Ended", when(call.ended_at, tz, seconds=True)),
    ]
    if call.hangup_cause is not None:
        facts.append(("Hangup cause", str(call.hangup_cause)))
    if call.amd_verdict is not None:
        facts.append(("Answering machine", esc(call.amd_verdict.value)))
    if call.usage is not None:
        facts.append(("Tokens", f"{call.usage.total:,}"))
    summary = " · ".join(f"<span><b>{k}</b> {v}</span>" for k, v in facts)
    live = " od-live" if call.ended_at is None else ""
    return (
        f'<section class="od-call{live}" data-call-id="{call.id}">'
        f'<h4>Call #{call.attempt_number}</h4><p class="od-facts">{summary}</p>'
        f"{figures_html(call.figures)}"
        f"{conversation(call.transcript, call.tool_calls, call.answered_at)}</section>"
    )


@dataclass(frozen=True, slots=True)
class _Line:
    """One line of a conversation, placed in time (ms since answer; tools may lack it)."""

    at_ms: float
    order: int
    html: str


def conversation(
    turns: Sequence[TranscriptTurn],
    tool_calls: Sequence[ToolCallRecord],
    answered_at: dt.datetime | None,
) -> str:
    """Callee and agent bubbles in order, the agent's tool calls inline where they happened."""
    if not turns and not tool_calls:
        return '<p class="od-empty">No conversation.</p>'
    lines = [_Line(t.start_ms, i, _bubble(t)) for i, t in enumerate(turns)]
    for i, tool in enumerate(tool_calls):
        # Turns are timed from the answer; a tool without an answer time goes last.
        offset = (tool.at - answered_at).total_seconds() * 1000 if answered_at else float("inf")
        lines.append(_Line(offset, len(turns) + i, _tool_line(tool)))
    lines.sort(key=lambda line: (line.at_ms, line.order))
    return f'<div class="od-convo">{"".join(line.html for line in lines)}</div>'


def _clock(ms: int) -> str:
    seconds = ms // 1000
    return f"{seconds // 60}:{seconds % 60:02d}"


def _bubble(turn: TranscriptTurn) -> str:
    who = {Speaker.AGENT: "Agent", Speaker.CALLEE: "Callee", Speaker.SYSTEM: "System"}
    cut = ' <span class="od-note">(interrupted)</span>' if turn.interrupted else ""
    return (
        f'<div class="od-turn od-{turn.speaker.value}">'
        f'<div class="od-who">{who[turn.speaker]} · {_clock(turn.start_ms)}</div>'
        f'<div class="od-bubble">{esc(turn.text)}{cut}</div></div>'
    )


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _tool_line(tool: ToolCallRecord) -> str:
    args = _clip(json.dumps(tool.arguments, ensure_ascii=False, default=str), TOOL_ARGS_CHARS)
    result = _clip(tool.result, TOOL_RESULT_CHARS)
    return (
        f'<div class="od-tool">🔧 <code>{esc(tool.name)}</code>(<code>{esc(args)}</code>)'
        f" → {esc(result)}</div>"
    )


def _dist(p: Percentiles) -> str | None:
    if p.count == 0:
        return None
    return f"p50 {p.p50:.1f} / p99 {p.p99:.1f} / max {p.max:.1f} ms (n={p.count})"


def _ms(value: float | None) -> str | None:
    return None if value is None else f"{value:,.0f} ms"


def figures_html(figures: CallFigures | None) -> str:
    """The call's own measurements: setup, pacing, barge-in, voice-to-voice and the rest."""
    if figures is None:
        return ""
    items: list[tuple[str, str | None]] = [
        ("Setup (due → first agent audio)", _ms(figures.setup_ms)),
        ("Originate", _ms(figures.originate_ms)),
        ("Connect (Originate → AudioSocket)", _ms(figures.connect_ms)),
        ("Pacing interval error", _dist(figures.pacing_interval_error_ms)),
        ("Sender lateness", _dist(figures.sender_lateness_ms)),
        ("Underruns", str(figures.underruns) if figures.underruns else None),
        ("Inbound forwarding", _dist(figures.inbound_forward_ms)),
        ("Barge-in reaction", _dist(figures.barge_in_ms)),
        ("Voice to voice", _dist(figures.voice_to_voice_ms)),
        ("Duration", None if figures.duration_s is None else f"{figures.duration_s:.1f} s"),
        ("CPU", None if figures.cpu_seconds is None else f"{figures.cpu_seconds:.2f} s"),
    ]
    shown = "".join(f"<tr><th>{k}</th><td>{v}</td></tr>" for k, v in items if v is not None)
    if not shown:
        return ""
    return (
        '<details class="od-figures"><summary>Call figures</summary>'
        f"<table>{shown}</table></details>"
    )


def events_html(events: Sequence[EventView], tz: zoneinfo.ZoneInfo) -> str:
    """The task's audit trail, oldest first."""
    if not events:
        return '<p class="od-empty">No events.</p>'
    rows = "".join(
        f'<tr data-event-id="{e.id}"><td>{when(e.at, tz, seconds=True)}</td>'
        f"<td><code>{esc(e.kind.value)}</code></td><td>{esc(e.message)}</td></tr>"
        for e in events
    )
    return (
        '<table class="od-table od-events"><thead><tr><th>Time</th><th>Kind</th>'
        f"<th>Message</th></tr></thead><tbody>{rows}</tbody></table>"
    )


# -- live calls ---------------------------------------------------------------------------------


LiveCall = LiveCallView
"""A call in progress with its task's title and number, for the live panel."""


def live_calls_html(live: Sequence[LiveCall], tz: zoneinfo.ZoneInfo) -> str:
    """Calls in progress, each with its transcript so far."""
    if not live:
        return '<p class="od-empty">No calls in progress.</p>'
    parts = []
    for item in live:
        call = item.call
        state = (
            "ringing"
            if call.answered_at is None
            else f"answered {when(call.answered_at, tz, seconds=True)}"
        )
        parts.append(
            f'<section class="od-call od-live" data-call-id="{call.id}" '
            f'data-task-id="{item.task_id}"><h4>{esc(item.task_title)} · '
            f"{esc(pretty_phone(item.phone))} — {esc(state)}</h4>"
            f"{conversation(call.transcript, call.tool_calls, call.answered_at)}</section>"
        )
    return "".join(parts)


# -- questions ------------------------------------------------------------------------------------


def countdown(deadline: dt.datetime, now: dt.datetime) -> str:
    """A span the page's script counts down to ``deadline``; the text is right when sent."""
    left = max(0, int((deadline - now).total_seconds() + 0.999))
    return f'<span class="od-countdown" data-deadline="{iso(deadline)}">{left} s left</span>'


def question_card(q: QuestionView, now: dt.datetime, tz: zoneinfo.ZoneInfo) -> str:
    """One question still answerable: its task, the question, and the time left."""
    timer = (
        countdown(q.deadline, now)
        if q.status is HitlStatus.PENDING
        else '<span class="od-note">the call stopped waiting; a late answer earns a callback</span>'
    )
    return (
        f'<div class="od-question" data-question-id="{q.id}" data-status="{q.status.value}">'
        f'<div class="od-q-task">{esc(q.task_title)} <code class="od-id">{short_id(q.id)}</code>'
        f" {question_badge(q.status)}</div>"
        f'<div class="od-q-text">{esc(q.question)}</div>'
        f'<div class="od-q-meta">asked {when(q.asked_at, tz, seconds=True)} · {timer}</div></div>'
    )


def open_questions_html(
    questions: Sequence[QuestionView], now: dt.datetime, tz: zoneinfo.ZoneInfo
) -> str:
    """The questions waiting for the user (PENDING first, then late-answerable ones)."""
    if not questions:
        return '<p class="od-empty">No open questions. They appear here the moment a call asks.</p>'
    return "".join(question_card(q, now, tz) for q in questions)


def question_choice(q: QuestionView) -> tuple[str, str]:
    """A question selector entry: (label, value = the full id)."""
    return f"{_clip(q.question, 60)} — {q.task_title} · {short_id(q.id)}", str(q.id)


def answered_html(
    questions: Iterable[QuestionView],
    fates: Mapping[uuid.UUID, str],
    tz: zoneinfo.ZoneInfo,
) -> str:
    """Recently closed questions: the answer and what happened next."""
    rows = [
        f'<tr data-question-id="{q.id}"><td>{when(q.answered_at or q.asked_at, tz)}</td>'
        f"<td>{esc(q.task_title)}</td><td>{esc(q.question)}</td>"
        f"<td>{esc(q.answer) if q.answer else '—'}</td>"
        f"<td>{question_badge(q.status)} {esc(fates.get(q.id, QUESTION_FATES[q.status]))}</td></tr>"
        for q in questions
    ]
    if not rows:
        return '<p class="od-empty">No answered questions yet.</p>'
    return (
        '<table class="od-table"><thead><tr><th>When</th><th>Task</th><th>Question</th>'
        f"<th>Answer</th><th>What happened</th></tr></thead><tbody>{''.join(rows)}</tbody></table>"
    )


def answer_outcome(result: AnswerResult, tz: zoneinfo.ZoneInfo) -> str:
    """What an answer did, in plain words (Markdown)."""
    if not result.late:
        return "✅ **Sent to the live call.** The AI uses your answer right away."
    message = "⏱ **The call had ended — OpenDeep will call back with your answer**"
    if result.task_status is TaskStatus.RETRY_SCHEDULED and result.next_action_time is not None:
        message += f" at {when(result.next_action_time, tz)} ({tz.key})"
    return message + "."
