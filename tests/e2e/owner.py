"""A small recording owner for CallActor tests: what a TaskActor must implement, and no more.

It keeps every message in a JSON-lines file named at construction, so a restarted owner (Ray
re-runs ``__init__``) reloads what it had, like a TaskActor reloading from the database. It drops
any ``seq`` it already applied, as a TaskActor does, and counts the duplicates it saw.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import ray


@ray.remote(max_restarts=-1, num_cpus=0)
class RecordingOwner:
    """``report(msg_json)`` and ``resolve_hitl_timeout(request_id)``, recorded to a file."""

    def __init__(self, path: str, hitl_verdict: str = "TIMED_OUT") -> None:
        self._path = Path(path)
        self._verdict = hitl_verdict
        self._applied: list[dict[str, Any]] = []
        self._duplicates = 0
        self._restarts = 0
        self._resolve_calls: list[str] = []
        if self._path.exists():
            for line in self._path.read_text().splitlines():
                self._applied.append(json.loads(line))
            self._restarts = 1
        self.pid = os.getpid()

    async def report(self, msg: dict[str, Any]) -> None:
        """Apply one CallMessage (as JSON); drop seqs already applied."""
        last = self._applied[-1]["seq"] if self._applied else 0
        if msg["seq"] <= last:
            self._duplicates += 1
            return
        with self._path.open("a") as fh:  # durable before we answer, like a DB commit
            fh.write(json.dumps(msg) + "\n")
        self._applied.append(msg)

    async def resolve_hitl_timeout(self, request_id: str) -> str:
        """The HITL row's verdict when the call's timer fired (configurable)."""
        self._resolve_calls.append(request_id)
        return self._verdict

    async def set_verdict(self, verdict: str) -> None:
        """Change what resolve_hitl_timeout answers."""
        self._verdict = verdict

    async def messages(self) -> list[dict[str, Any]]:
        """Every applied message, in order."""
        return list(self._applied)

    async def info(self) -> dict[str, Any]:
        """Duplicates seen, restarts, resolve calls, pid."""
        return {
            "duplicates": self._duplicates,
            "restarted": self._restarts,
            "resolve_calls": list(self._resolve_calls),
            "pid": self.pid,
        }
