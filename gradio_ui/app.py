"""The Gradio page: New task (chat), Dashboard, Questions — one ``gr.Blocks`` per process.

Built by :func:`build_ui` and mounted by :func:`serve_app.ingress.build_ingress` at ``/``
behind Gradio's login (:mod:`gradio_ui.login`). Handlers are thin: find the request's
tenant, call the repository, render (DESIGN.md §1, STYLE.md habit 11).

Stable element ids (the browser tests use them): see :data:`ELEMENT_IDS`. Gradio 6 mounts a
tab's components only once the tab is opened, and hidden components (the summary card, the
confirm row, the cancel button, the recording player) only while they are shown.
"""

from __future__ import annotations

from typing import Final

import gradio as gr

from gradio_ui import render
from gradio_ui.chat import Chat
from gradio_ui.dashboard import Dashboard
from gradio_ui.intake import make_intake
from gradio_ui.intake_types import Intake
from gradio_ui.login import Login
from gradio_ui.questions import REFRESH_SECONDS as QUESTIONS_REFRESH_SECONDS
from gradio_ui.questions import Questions
from opendeep.settings import Settings
from serve_app.services import Services

CONCURRENCY: Final = 16
"""Events run at once per handler (Gradio's default is 1: one user's slow chat would make
every other page wait). The handlers are async and wait on the database or the intake."""

ELEMENT_IDS: Final = {
    "tabs": "od-tabs",
    "tab_new": "od-tab-new",
    "tab_dashboard": "od-tab-dashboard",
    "tab_questions": "od-tab-questions",
    "tab_new_button": "od-tab-new-button",  # Gradio gives a tab's button "<elem_id>-button"
    "tab_dashboard_button": "od-tab-dashboard-button",
    "tab_questions_button": "od-tab-questions-button",
    "header": "od-header",
    "who": "od-who",
    "questions_alert": "od-questions-alert",
    "user_zone": "od-user-zone",
    "chat": "od-chat",
    "chat_input": "od-chat-input",
    "chat_send": "od-chat-send",
    "summary_card": "od-summary-card",
    "confirm_row": "od-confirm-row",
    "confirm": "od-confirm-button",
    "restart": "od-restart-button",
    "status_filter": "od-status-filter",
    "task_count": "od-task-count",
    "task_table": "od-task-table",
    "task_select": "od-task-select",
    "task_detail": "od-task-detail",
    "cancel": "od-cancel-button",
    "cancel_result": "od-cancel-result",
    "transcript": "od-transcript",
    "recording": "od-recording",
    "events": "od-events",
    "live_calls": "od-live-calls",
    "question_list": "od-question-list",
    "question_select": "od-question-select",
    "answer_box": "od-answer-box",
    "answer_button": "od-answer-button",
    "answer_result": "od-answer-result",
    "answered_list": "od-answered-list",
}

ZONE_JS: Final = "() => Intl.DateTimeFormat().resolvedOptions().timeZone || 'UTC'"
"""Times are shown on the user's wall clock: the browser says which zone that is."""

UI_CSS: Final = """
.od-badge { display:inline-block; padding:1px 8px; border-radius:10px; font-size:0.85em;
  font-weight:600; color:#fff; background:#6b7280; white-space:nowrap; }
.od-badge-pending { background:#6b7280; } .od-badge-in_progress { background:#2563eb; }
.od-badge-analyzing { background:#7c3aed; } .od-badge-retry_scheduled { background:#d97706; }
.od-badge-pending_user_info { background:#ea580c; } .od-badge-completed { background:#16a34a; }
.od-badge-failed { background:#dc2626; } .od-badge-cancelled { background:#374151; }
.od-q-pending { background:#ea580c; } .od-q-answered { background:#16a34a; }
.od-q-answered_late { background:#d97706; } .od-q-timed_out { background:#dc2626; }
.od-table { width:100%; border-collapse:collapse; font-size:0.92em; }
.od-table th, .od-table td { text-align:left; padding:4px 8px; border-bottom:1px solid #e5e7eb;
  vertical-align:top; }
.od-kv th { text-align:left; padding-right:12px; white-space:nowrap; vertical-align:top; }
.od-id { font-size:0.8em; color:#6b7280; }
.od-note, .od-empty { color:#6b7280; font-style:italic; }
.od-call { border:1px solid #e5e7eb; border-radius:8px; padding:8px 12px; margin:8px 0; }
.od-live { border-color:#2563eb; }
.od-facts span { margin-right:10px; }
.od-convo { display:flex; flex-direction:column; gap:6px; margin-top:6px; }
.od-turn { max-width:75%; }
.od-agent { align-self:flex-end; text-align:right; }
.od-callee { align-self:flex-start; }
.od-system { align-self:center; }
.od-who { font-size:0.75em; color:#6b7280; }
.od-bubble { display:inline-block; padding:6px 10px; border-radius:12px; text-align:left;
  background:#f3f4f6; color:#111827; }
.od-agent .od-bubble { background:#dbeafe; }
.od-tool { align-self:center; font-size:0.85em; color:#374151; background:#fef3c7;
  border-radius:6px; padding:2px 8px; }
.od-question { border:1px solid #fdba74; border-radius:8px; padding:8px 12px; margin:6px 0; }
.od-q-text { font-size:1.1em; font-weight:600; margin:4px 0; }
.od-countdown { font-weight:600; } .od-urgent { color:#dc2626; }
"""
"""Styles of the rendered HTML (:mod:`gradio_ui.render`); passed to ``mount_gradio_app``."""


def simulated_parts(settings: Settings) -> str:
    """Which parts run on the built-in stand-ins, in one line of Markdown."""
    parts = [
        ("PBX", settings.pbx_mode == "sim", "simulated", "Asterisk"),
        ("voice AI", settings.voice_mode == "sim", "simulated", "OpenAI Realtime"),
        ("analysis & chat", settings.analysis_mode == "rules", "rule-based stand-in", "Gemini"),
    ]
    text = " · ".join(f"{name}: **{fake if sim else real}**" for name, sim, fake, real in parts)
    if any(sim for _, sim, _, _ in parts):
        return f"⚠️ Some parts are simulated — {text}"
    return f"All parts are real — {text}"


class Header:
    """Who is logged in (filled in when the page loads)."""

    def __init__(self, login: Login) -> None:
        self._login = login

    async def who(self, request: gr.Request) -> str:
        """``Logged in as admin (tenant default) · Log out``."""
        account = await self._login.account(request)
        if account is None:
            return "Not logged in."
        return (
            f"Logged in as **{render.esc(account.username)}** "
            f"(tenant {render.esc(account.tenant_name)}) · "
            "[Log out](logout)"
        )


def build_ui(
    services: Services, *, login: Login | None = None, intake: Intake | None = None
) -> gr.Blocks:
    """The whole page. ``login`` must be the one whose ``check`` is the mount's ``auth``."""
    login = login or Login(services.db)
    intake = intake or make_intake(services.settings)
    header = Header(login)
    demo = gr.Blocks(title="OpenDeep", analytics_enabled=False)
    with demo:
        with gr.Row(elem_id="od-header"):
            gr.Markdown(f"## OpenDeep\n{simulated_parts(services.settings)}")
            who = gr.Markdown("", elem_id="od-who")
        alert = gr.Markdown("", elem_id="od-questions-alert")
        questions_timer = gr.Timer(QUESTIONS_REFRESH_SECONDS)
        zone = gr.Textbox("UTC", visible="hidden", elem_id="od-user-zone", label="Time zone")
        with gr.Tabs(elem_id="od-tabs"):
            with gr.Tab("New task", id="new", elem_id="od-tab-new"):
                Chat(services, login, intake).build(zone)
            with gr.Tab("Dashboard", id="dashboard", elem_id="od-tab-dashboard") as dashboard:
                Dashboard(services, login).build(zone, dashboard)
            with gr.Tab("Questions", id="questions", elem_id="od-tab-questions"):
                Questions(services, login).build(zone, alert, questions_timer)
        demo.load(None, None, zone, js=ZONE_JS)
        demo.load(header.who, None, who, api_visibility="private")
    demo.queue(default_concurrency_limit=CONCURRENCY)
    return demo
