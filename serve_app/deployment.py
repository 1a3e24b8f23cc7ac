"""The Ray Serve application: one ingress serving the REST API, /healthz, /metrics and the UI.

One deployment, one replica (DESIGN.md §5): Gradio's queue keeps per-session state in its
replica, so a second replica would need sticky sessions that Serve's proxy does not give. The
REST API is thin (one repository call per request), so one replica carries it too; see
docs/decisions.md. ``max_ongoing_requests`` is raised far above Serve's default of 5, because
every open SSE stream and every Gradio queue connection holds one request slot for as long as
the page is open (DESIGN.md §9).

The ASGI app is built inside the replica, after the constructor, by
``__serve_build_asgi_app__`` (Serve's late-bound ingress), so Gradio is mounted where it runs
and the app gets this replica's own database pool.

Two ways in:
- ``opendeep up`` calls :func:`build_app` with its settings (the simulated world's endpoints
  already filled in);
- ``serve deploy serve_app/serve_config.yaml`` on an existing Ray cluster imports
  :func:`app_builder`, which reads the settings from the environment (``runtime_env``) and,
  unless told not to, makes sure the PbxGateway and the Supervisor run.
"""

from __future__ import annotations

import logging
from typing import Any, Final

from fastapi import FastAPI
from ray import serve
from ray.serve import Application

from db.engine import Database, open_database
from opendeep.logging import setup_logging
from opendeep.settings import Settings, get_settings
from serve_app.services import RayNudger, Services

__all__ = ["APP_NAME", "OpenDeepIngress", "app_builder", "build_app"]

log = logging.getLogger(__name__)

APP_NAME: Final = "opendeep"
MAX_ONGOING_REQUESTS: Final = 256  # SSE streams + Gradio queue connections + API calls at once
DB_POOL_SIZE: Final = 5  # the replica's connections; SSE polls and page refreshes share them


@serve.deployment(
    name="OpenDeepIngress",
    num_replicas=1,
    max_ongoing_requests=MAX_ONGOING_REQUESTS,
    # I/O bound (database, actor nudges): it must never wait for a free core.
    ray_actor_options={"num_cpus": 0},
    # Gradio's first build and the first database connection take a few seconds here.
    health_check_timeout_s=60,
)
@serve.ingress()
class OpenDeepIngress:
    """The front door: REST API + Gradio UI, built in the replica."""

    # Serve awaits an async constructor (the database and the actors are awaited here).
    async def __init__(  # type: ignore[misc]
        self, settings: Settings, start_actors: bool = False
    ) -> None:
        setup_logging(settings.log_level)
        self._settings = settings
        self._db: Database = open_database(settings.resolved_database_url, pool_size=DB_POOL_SIZE)
        self._services = Services(self._db, settings, RayNudger(settings.ray_namespace))
        if start_actors:
            from serve_app.system import start_system_actors  # noqa: PLC0415 -- only serve deploy

            await start_system_actors(settings)

    async def __del__(self) -> None:
        """Serve calls this when the replica stops: give the pooled connections back."""
        await self._db.close()

    async def __serve_build_asgi_app__(self) -> FastAPI:
        """Serve's late-bound ingress: the API with Gradio mounted, built in this replica."""
        from serve_app.ingress import build_ingress  # noqa: PLC0415 -- Gradio loads in the replica

        return build_ingress(self._services)


def build_app(settings: Settings, *, start_actors: bool = False) -> Application:
    """The bound application for ``serve.run`` (``opendeep up``, tests, benchmarks)."""
    app: Application = OpenDeepIngress.bind(settings, start_actors)  # type: ignore[attr-defined]
    return app  # (serve.deployment turns the class into a Deployment, which mypy cannot see)


def app_builder(args: dict[str, Any]) -> Application:
    """For ``serve deploy``: settings from the environment; ``start_actors`` defaults to true."""
    settings = get_settings()
    start = str(args.get("start_actors", "true")).lower() not in ("0", "false", "no")
    return build_app(settings, start_actors=start)
