"""What the front (REST API, Gradio UI) is given: the database, the settings, a nudger.

The front writes intents through the repository; correctness never depends on an actor
being reachable (DESIGN.md §2). After an intent it may *nudge* the actor concerned so the
running system reacts at once instead of at its next tick or poll. A nudge is fire-and-forget:
a missing actor (the system is not running, or the task is waiting and has none) is normal.
"""

from __future__ import annotations

import logging
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Protocol

from db.engine import Database
from opendeep.settings import Settings

__all__ = ["NoNudger", "Nudger", "RayNudger", "Services"]

log = logging.getLogger(__name__)


class Nudger(Protocol):
    """Cuts the latency of an intent; never required for it to take effect, never blocking."""

    def wake_supervisor(self) -> None:
        """A task was created or became due: claim now instead of at the next tick."""

    def nudge_task(self, task_id: uuid.UUID) -> None:
        """A question was answered or a cancel requested: the task's actor looks now."""


class NoNudger:
    """For a front without Ray (tests, the CLI): the actors pick intents up by polling."""

    def wake_supervisor(self) -> None:
        """Nothing to wake."""

    def nudge_task(self, task_id: uuid.UUID) -> None:
        """Nothing to nudge."""


class RayNudger:
    """Nudges the named actors of one Ray namespace (in a Serve replica or `opendeep up`).

    Ray's actor lookup is a blocking call to the cluster's control store, so each nudge runs
    on one background thread of its own: callers on an event loop (API and UI handlers) never
    wait for it, and a failure is logged there, never raised into the request.
    """

    def __init__(self, namespace: str) -> None:
        self.namespace = namespace
        self._thread: ThreadPoolExecutor | None = None

    def _send(self, name: str, method: str) -> None:
        if self._thread is None:
            self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="nudge")
        self._thread.submit(self._call, name, method)

    def _call(self, name: str, method: str) -> None:
        import ray  # noqa: PLC0415 -- only a front running inside Ray nudges

        try:
            handle = ray.get_actor(name, namespace=self.namespace)
        except ValueError:
            return  # no such actor now: the intent waits for the next tick or poll
        except Exception:  # a nudge only cuts latency: the intent is already stored
            log.warning("nudge of %s failed; it will poll instead", name, exc_info=True)
            return
        getattr(handle, method).remote()  # fire and forget: the result is not awaited

    def wake_supervisor(self) -> None:
        """``supervisor.wake()``."""
        from actors.options import SUPERVISOR_NAME  # noqa: PLC0415 -- keeps imports light

        self._send(SUPERVISOR_NAME, "wake")

    def nudge_task(self, task_id: uuid.UUID) -> None:
        """``task:<id>.nudge()``."""
        from actors.options import task_actor_name  # noqa: PLC0415 -- keeps imports light

        self._send(task_actor_name(task_id), "nudge")


@dataclass(frozen=True, slots=True)
class Services:
    """The front's dependencies, built once per process (Serve replica, test, benchmark)."""

    db: Database
    settings: Settings
    nudger: Nudger
