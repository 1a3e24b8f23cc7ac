"""The ingress ASGI app: the REST API with the Gradio UI mounted at ``/`` behind its login.

Built in the Serve replica by ``OpenDeepIngress.__serve_build_asgi_app__`` (DESIGN.md §5:
Gradio must be mounted where it runs, not at import time). The API's routes (``/api/…``,
``/healthz``, ``/metrics``) are registered before the mount, so they match first; every
other path is Gradio's.
"""

from __future__ import annotations

import gradio as gr
from fastapi import FastAPI

from gradio_ui.app import UI_CSS, build_ui
from gradio_ui.intake_types import Intake
from gradio_ui.login import Login
from serve_app.api import build_api
from serve_app.services import Services

AUTH_MESSAGE = "Log in with your OpenDeep username and password."


def mount_ui(app: FastAPI, services: Services, *, intake: Intake | None = None) -> FastAPI:
    """Mount the Gradio page on ``app`` at ``/`` with per-user login; returns ``app``."""
    login = Login(services.db)
    ui = build_ui(services, login=login, intake=intake)
    gr.mount_gradio_app(
        app,
        ui,
        path="/",
        # A bound ``async def``: Gradio awaits it on the loop; scrypt runs in a thread.
        auth=login.check,
        auth_message=AUTH_MESSAGE,
        css=UI_CSS,
        footer_links=[],
        run_history=False,  # runs would keep chat drafts in the browser's storage
        ssr_mode=False,  # SSR needs a Node server next to every replica
        mcp_server=False,
        pwa=False,
        enable_monitoring=False,
        show_error=True,
    )
    return app  # mount_gradio_app mounted the UI on it (and returns it, untyped)


def build_ingress(services: Services, *, intake: Intake | None = None) -> FastAPI:
    """The API app (``serve_app.api.build_api``) with the UI mounted on it."""
    return mount_ui(build_api(services), services, intake=intake)
