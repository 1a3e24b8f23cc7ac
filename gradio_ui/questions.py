"""The Questions tab: the AI's open questions to the user, answered while the call waits.

A 0.5-second ``gr.Timer`` reads the tenant's open questions (one indexed query on
``tenant_id, status``) and its newest event id; only when either changed does the page get
new HTML, so a question shows up within about half a second of being asked. Each open
question carries its deadline; a small script in the page counts it down between ticks.
A question the call stopped waiting for (TIMED_OUT) stays answerable: the answer makes
OpenDeep call back (DESIGN.md §2 "HITL arbitration").
"""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass
from typing import Any, Final
from zoneinfo import ZoneInfo

import gradio as gr

from db.repo import hitl
from db.repo._core import NotFoundError, RepoError
from db.repo.board import task_states
from db.repo.feed import latest_event_id
from db.repo.views import QuestionView
from db.shapes import utcnow
from db.states import TERMINAL_TASK_STATUSES, HitlStatus, TaskStatus
from gradio_ui import render
from gradio_ui.dashboard import parse_id
from gradio_ui.login import Login
from serve_app.services import Services

REFRESH_SECONDS: Final = 0.5
ANSWERED_SHOWN: Final = 20
CLOSED: Final = frozenset(
    {HitlStatus.ANSWERED, HitlStatus.ANSWERED_LATE, HitlStatus.CANCELLED, HitlStatus.EXPIRED}
)

COUNTDOWN_JS: Final = """
const tick = () => {
  for (const el of element.querySelectorAll('[data-deadline]')) {
    const left = Math.max(0, Math.ceil((Date.parse(el.dataset.deadline) - Date.now()) / 1000));
    el.textContent = left > 0 ? `${left} s left` : 'time is up';
    el.classList.toggle('od-urgent', left <= 5);
  }
};
tick();
setInterval(tick, 250);
"""
"""Counts every ``data-deadline`` span of the question list down, between server ticks."""

QuestionsMark = tuple[tuple[str, ...], int, str]
"""(open question ids, the tenant's newest event id, the user's zone) a page rendered from."""


def question_fate(
    q: QuestionView, task: tuple[TaskStatus, dt.datetime | None] | None, tz: ZoneInfo
) -> str:
    """What happened after a question closed, in words (uses the task's state now)."""
    fate = render.QUESTION_FATES[q.status]
    if q.status is not HitlStatus.ANSWERED_LATE or task is None:
        return fate
    status, due = task
    if status is TaskStatus.RETRY_SCHEDULED and due is not None:
        return f"Answered late: callback scheduled for {render.when(due, tz)}"
    if status in TERMINAL_TASK_STATUSES:
        return f"Answered late: the task is now {render.STATUS_LABELS[status].lower()}"
    if status in (TaskStatus.IN_PROGRESS, TaskStatus.ANALYZING):
        return "Answered late: OpenDeep is calling back with your answer"
    return fate


@dataclass(slots=True)
class QuestionsView:
    """The tab's components that handlers update."""

    open_list: gr.HTML
    selector: gr.Dropdown
    answered: gr.HTML
    alert: gr.Markdown
    mark: gr.State

    def outputs(self) -> list[Any]:
        """What :meth:`Questions.refresh` returns, in its order."""
        return [self.open_list, self.selector, self.answered, self.alert, self.mark]


class Questions:
    """Handlers of the Questions tab; every one is scoped to the request's tenant."""

    def __init__(self, services: Services, login: Login) -> None:
        self._services = services
        self._login = login

    def build(self, zone: gr.Textbox, alert: gr.Markdown, timer: gr.Timer) -> QuestionsView:
        """Lay the tab out inside the current ``gr.Tab``; ``alert`` is the header's notice.

        ``timer`` must live outside the tabs: Gradio 6 mounts a tab's components (timers
        included) only once the tab is opened, and questions must be noticed from any tab.
        """
        open_list = gr.HTML(
            '<p class="od-empty">Loading…</p>', elem_id="od-question-list", js_on_load=COUNTDOWN_JS
        )
        selector = gr.Dropdown(
            [],
            value=None,
            label="Question",
            allow_custom_value=True,
            elem_id="od-question-select",
        )
        answer = gr.Textbox(
            label="Your answer",
            placeholder="Type the answer the AI should use",
            lines=2,
            elem_id="od-answer-box",
        )
        send = gr.Button("Send answer", variant="primary", elem_id="od-answer-button")
        result = gr.Markdown("", elem_id="od-answer-result")
        gr.Markdown("### Answered questions")
        answered = gr.HTML("", elem_id="od-answered-list")
        mark = gr.State(None)
        view = QuestionsView(open_list, selector, answered, alert, mark)
        inputs = [selector, zone, mark]
        timer.tick(self.refresh, inputs, view.outputs(), api_name="questions_refresh")
        answered_event = gr.on(
            [send.click, answer.submit],
            self.answer,
            [selector, answer, zone],
            [result, answer],
            api_name="questions_answer",
        )
        answered_event.then(
            self.refresh, inputs, view.outputs(), show_progress="hidden", api_visibility="private"
        )
        return view

    async def refresh(
        self,
        selected: str | None,
        zone: str | None,
        mark: QuestionsMark | None,
        request: gr.Request,
    ) -> tuple[Any, ...]:
        """One tick: re-render the open and answered questions when anything changed."""
        account = await self._login.account(request)
        if account is None:
            return ("Please log in.", gr.Dropdown(choices=[], value=None), "", "", None)
        db = self._services.db
        pending = await hitl.list_open_questions(db, account.tenant_id)
        new: QuestionsMark = (
            tuple(str(q.id) for q in pending),
            await latest_event_id(db, account.tenant_id),
            zone or "",
        )
        if new == mark:
            return (gr.skip(),) * 5
        tz = render.user_zone(zone)
        late, closed, fates = await self._history(account.tenant_id, tz)
        answerable = [*pending, *late]
        choices = [render.question_choice(q) for q in answerable]
        selector = gr.Dropdown(choices=choices)  # keeps the user's pick when still answerable
        if selected not in {value for _, value in choices}:
            selector = gr.Dropdown(choices=choices, value=choices[0][1] if choices else None)
        alert = (
            f"🔔 **{len(pending)} question{'s' if len(pending) != 1 else ''} waiting** "
            "for you in the Questions tab"
            if pending
            else ""
        )
        return (
            render.open_questions_html(answerable, utcnow(), tz),
            selector,
            render.answered_html(closed, fates, tz),
            alert,
            new,
        )

    async def _history(
        self, tenant_id: uuid.UUID, tz: ZoneInfo
    ) -> tuple[list[QuestionView], list[QuestionView], dict[uuid.UUID, str]]:
        """(questions still answerable late, recently closed ones, what became of those)."""
        db = self._services.db
        every = await hitl.list_questions(db, tenant_id)
        timed_out = [q for q in every if q.status is HitlStatus.TIMED_OUT]
        closed = [q for q in every if q.status in CLOSED][:ANSWERED_SHOWN]
        states = await task_states(db, tenant_id, {q.task_id for q in [*timed_out, *closed]})
        # A finished task calls nobody back: its timed-out questions are no longer offered.
        late = [
            q
            for q in timed_out
            if q.task_id in states and states[q.task_id][0] not in TERMINAL_TASK_STATUSES
        ]
        fates = {q.id: question_fate(q, states.get(q.task_id), tz) for q in closed}
        return late, closed, fates

    async def answer(
        self, selected: str | None, text: str | None, zone: str | None, request: gr.Request
    ) -> tuple[str, Any]:
        """Answer the selected question; (what happened, the answer box's new value)."""
        account = await self._login.account(request)
        if account is None:
            return "Please log in.", gr.skip()
        request_id = parse_id(selected)
        if request_id is None:
            return "Select a question first.", gr.skip()
        if not text or not text.strip():
            return "Type an answer first.", gr.skip()
        try:
            result = await hitl.answer_question(
                self._services.db, account.tenant_id, request_id, text, answered_by=account.actor
            )
        except NotFoundError:
            return "No such question in your account.", gr.skip()
        except (RepoError, ValueError) as exc:
            return f"Not sent: {exc}", gr.skip()
        self._services.nudger.nudge_task(result.question.task_id)
        return render.answer_outcome(result, render.user_zone(zone)), ""
