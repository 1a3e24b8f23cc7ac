"""The Dashboard tab: the tenant's tasks, one task's full history, and the calls in progress.

A 1-second ``gr.Timer`` asks two cheap, indexed questions — the tenant's newest event id and
the (id, status, last applied message) of its live calls — and re-renders only the parts
whose answer changed since the last tick of this page, so a tenant with 1,000 tasks costs
two small queries a second while nothing happens. Every task change writes an event
(DESIGN.md §3) and every transcript line bumps its call's ``last_seq``, so nothing is missed.
The list shows the newest 100 tasks (with the total and a status filter).
"""

from __future__ import annotations

import logging
import os
import tempfile
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final
from zoneinfo import ZoneInfo

import gradio as gr

from db.repo import tasks
from db.repo._core import NotFoundError, RepoError
from db.repo.board import LiveMark, change_marks, live_calls
from db.repo.views import CallView, TaskDetail
from db.states import TERMINAL_TASK_STATUSES, TaskStatus
from gradio_ui import render
from gradio_ui.login import Account, Login
from serve_app.services import Services

log = logging.getLogger(__name__)

LIST_LIMIT: Final = 100
REFRESH_SECONDS: Final = 1.0
ALL: Final = "ALL"
STATUS_CHOICES: Final = [("All statuses", ALL)] + [
    (render.STATUS_LABELS[s], s.value) for s in TaskStatus
]


# -- what a tick compares ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Mark:
    """What one page last rendered from; equal marks mean nothing needs re-sending."""

    last_event: int
    live: LiveMark
    status: str
    selected: str
    zone: str

    def table_key(self) -> tuple[Any, ...]:
        """The task list depends on these."""
        return (self.last_event, self.status, self.zone)

    def live_key(self) -> tuple[Any, ...]:
        """The live panel depends on these."""
        return (self.live, self.zone)

    def detail_key(self) -> tuple[Any, ...]:
        """The selected task's history depends on these."""
        return (self.last_event, self.live, self.selected, self.zone)


def parse_id(text: str | None) -> uuid.UUID | None:
    """A full UUID typed or selected by the user, else ``None`` (never an error)."""
    if not text or not text.strip():
        return None
    try:
        return uuid.UUID(text.strip())
    except ValueError:
        return None


def _status_filter(value: str | None) -> TaskStatus | None:
    if not value or value == ALL:
        return None
    try:
        return TaskStatus(value)
    except ValueError:
        return None


def servable_recording(call: CallView, recordings_dir: Path) -> str | None:
    """The call's recording as a path Gradio may copy into its cache, or ``None``.

    Only files inside the configured recordings directory are served (a row must not make
    the UI hand out any file). Gradio copies returned files only from the working or temp
    directory, so a recording kept elsewhere is copied to the temp directory first; nothing
    is added to ``allowed_paths``, which would expose every tenant's recordings by URL.
    """
    if not call.recording_path:
        return None
    path = Path(call.recording_path).resolve()
    if not path.is_file() or not path.is_relative_to(recordings_dir.resolve()):
        return None
    roots = (Path(os.getcwd()).resolve(), Path(tempfile.gettempdir()).resolve())
    if any(path.is_relative_to(root) for root in roots):
        return str(path)
    copy = Path(tempfile.gettempdir()) / "opendeep-recordings" / path.name
    if not copy.is_file() or copy.stat().st_size != path.stat().st_size:
        copy.parent.mkdir(parents=True, exist_ok=True)
        copy.write_bytes(path.read_bytes())  # a finished recording never changes
    return str(copy)


# -- the tab ------------------------------------------------------------------------------------


@dataclass(slots=True)
class DashboardView:
    """The dashboard's components; :meth:`outputs` are its handlers' outputs."""

    status: gr.Dropdown
    summary: gr.Markdown
    table: gr.HTML
    selector: gr.Dropdown
    header: gr.HTML
    cancel: gr.Button
    cancel_result: gr.Markdown
    calls: gr.HTML
    recording: gr.Audio
    events: gr.HTML
    live: gr.HTML
    mark: gr.State

    def outputs(self) -> list[Any]:
        """Everything :meth:`Dashboard.refresh` returns, in its order."""
        return [
            self.summary,
            self.table,
            self.selector,
            self.header,
            self.cancel,
            self.calls,
            self.recording,
            self.events,
            self.live,
            self.mark,
        ]


def _layout() -> DashboardView:
    """The tab's components, top to bottom: live calls, the task list, the selected task."""
    gr.Markdown("### Calls in progress")
    live = gr.HTML('<p class="od-empty">Loading…</p>', elem_id="od-live-calls")
    gr.Markdown("### Tasks")
    with gr.Row():
        status = gr.Dropdown(
            STATUS_CHOICES, value=ALL, label="Status", elem_id="od-status-filter", scale=1
        )
        summary = gr.Markdown("Loading…", elem_id="od-task-count")
    table = gr.HTML('<p class="od-empty">Loading…</p>', elem_id="od-task-table")
    with gr.Row():
        selector = gr.Dropdown(
            [],
            value=None,
            label="Task (pick one, or paste its id)",
            allow_custom_value=True,  # ids are checked against the tenant, not the choices
            elem_id="od-task-select",
            scale=4,
        )
        cancel = gr.Button("Cancel task", variant="stop", visible=False, elem_id="od-cancel-button")
    cancel_result = gr.Markdown("", elem_id="od-cancel-result")
    header = gr.HTML("", elem_id="od-task-detail")
    recording = gr.Audio(
        None,
        label="Recording",
        type="filepath",
        interactive=False,
        visible=False,
        elem_id="od-recording",
    )
    gr.Markdown("#### Calls")
    calls = gr.HTML("", elem_id="od-transcript")
    gr.Markdown("#### Events")
    events = gr.HTML("", elem_id="od-events")
    return DashboardView(
        status,
        summary,
        table,
        selector,
        header,
        cancel,
        cancel_result,
        calls,
        recording,
        events,
        live,
        gr.State(None),
    )


class Dashboard:
    """Handlers of the Dashboard tab; every one is scoped to the request's tenant."""

    def __init__(self, services: Services, login: Login) -> None:
        self._services = services
        self._login = login

    def build(self, zone: gr.Textbox, tab: gr.Tab) -> DashboardView:
        """Lay the tab out inside ``tab`` (the current ``gr.Tab``) and wire its events."""
        view = _layout()
        inputs = [view.status, view.selector, zone, view.mark]
        quiet: dict[str, Any] = {"show_progress": "hidden", "api_visibility": "private"}
        timer = gr.Timer(REFRESH_SECONDS)
        timer.tick(self.refresh, inputs, view.outputs(), api_name="dashboard_refresh")
        # Gradio mounts a tab's parts only when it is opened: fill them at once, not a tick later.
        tab.select(self.refresh, inputs, view.outputs(), **quiet)
        view.status.change(self.refresh, inputs, view.outputs(), **quiet)
        view.selector.change(self.refresh, inputs, view.outputs(), **quiet)
        view.cancel.click(
            self.cancel, [view.selector], [view.cancel_result], api_name="dashboard_cancel"
        ).then(self.refresh, inputs, view.outputs(), **quiet)
        return view

    async def refresh(
        self,
        status: str | None,
        selected: str | None,
        zone: str | None,
        mark: Mark | None,
        request: gr.Request,
    ) -> tuple[Any, ...]:
        """One tick (or a filter/selection change): re-render what changed since ``mark``."""
        account = await self._login.account(request)
        if account is None:
            return _logged_out()
        db = self._services.db
        last_event, live_now = await change_marks(db, account.tenant_id)
        new = Mark(
            last_event=last_event,
            live=live_now,
            status=status or ALL,
            selected=selected or "",
            zone=zone or "",
        )
        if new == mark:
            return (gr.skip(),) * 10
        tz = render.user_zone(zone)
        table = (gr.skip(),) * 3
        if mark is None or new.table_key() != mark.table_key():
            table = await self._table(account, new, tz)
        live: Any = gr.skip()
        if mark is None or new.live_key() != mark.live_key():
            live = render.live_calls_html(await live_calls(db, account.tenant_id), tz)
        detail = (gr.skip(),) * 5
        if mark is None or new.detail_key() != mark.detail_key():
            detail = await self._detail(account, parse_id(selected), tz)
        return (*table, *detail, live, new)

    async def _table(self, account: Account, mark: Mark, tz: ZoneInfo) -> tuple[Any, ...]:
        """(summary, table, selector choices) for the newest tasks of the filter."""
        db = self._services.db
        wanted = _status_filter(mark.status)
        rows = await tasks.list_tasks(db, account.tenant_id, status=wanted, limit=LIST_LIMIT)
        total = await tasks.count_tasks(db, account.tenant_id, status=wanted)
        which = f"{render.STATUS_LABELS[wanted].lower()} " if wanted else ""
        summary = f"**{total:,}** {which}task{'s' if total != 1 else ''}"
        if total > len(rows):
            summary += f" — showing the newest {len(rows)}"
        choices = [render.task_choice(r.title, r.id) for r in rows]
        if mark.selected and mark.selected not in {value for _, value in choices}:
            choices.append((mark.selected, mark.selected))  # keep a pasted or older selection
        # Choices only: setting the value too could undo a pick made while this tick ran.
        return summary, render.task_table(rows, tz), gr.Dropdown(choices=choices)

    async def _detail(
        self, account: Account, task_id: uuid.UUID | None, tz: ZoneInfo
    ) -> tuple[Any, ...]:
        """(header, cancel button, calls, recording, events) of the selected task."""
        detail: TaskDetail | None = None
        if task_id is not None:
            try:
                detail = await tasks.get_task(self._services.db, account.tenant_id, task_id)
            except NotFoundError:
                detail = None
        if detail is None:
            hint = (
                "Select a task above to see its calls and events."
                if task_id is None
                else ("No such task in your account.")
            )
            return (
                f'<p class="od-empty">{hint}</p>',
                gr.Button(visible=False),
                "",
                gr.Audio(value=None, visible=False),
                "",
            )
        can_cancel = detail.task.status not in TERMINAL_TASK_STATUSES
        return (
            render.task_header(detail.task, tz),
            gr.Button(visible=can_cancel),
            render.calls_html(detail.calls, tz),
            self._recording(detail),
            render.events_html(detail.events, tz),
        )

    def _recording(self, detail: TaskDetail) -> Any:
        """The newest call's recording that exists, in the player; hidden when none."""
        for call in reversed(detail.calls):
            path = servable_recording(call, self._services.settings.recordings_dir)
            if path is not None:
                return gr.Audio(
                    value=path, visible=True, label=f"Recording of call #{call.attempt_number}"
                )
        return gr.Audio(value=None, visible=False)

    async def cancel(self, selected: str | None, request: gr.Request) -> str:
        """Cancel the selected task (its actor is nudged to end a live call politely)."""
        account = await self._login.account(request)
        if account is None:
            return "Please log in."
        task_id = parse_id(selected)
        if task_id is None:
            return "Select a task first."
        try:
            view = await tasks.request_cancel(
                self._services.db, account.tenant_id, task_id, by=account.actor
            )
        except NotFoundError:
            return "No such task in your account."
        except (RepoError, ValueError) as exc:
            return f"Could not cancel: {exc}"
        self._services.nudger.nudge_task(task_id)
        if view.status is TaskStatus.CANCELLED:
            return f"Task **{render.esc(view.title)}** cancelled."
        title = render.esc(view.title)
        return f"Cancel requested: the call in progress on **{title}** will end politely."


def _logged_out() -> tuple[Any, ...]:
    """What every output shows to a request without a logged-in user: nothing of anyone's."""
    return (
        "Please log in.",
        "",
        gr.Dropdown(choices=[], value=None),
        "",
        gr.Button(visible=False),
        "",
        gr.Audio(value=None, visible=False),
        "",
        "",
        None,
    )
