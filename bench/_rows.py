"""What the front-end benchmarks share: bulk task rows and a free loopback port."""

from __future__ import annotations

import datetime as dt
import socket
import uuid
from typing import Any

from db.states import TaskStatus

STATUSES = list(TaskStatus)


def task_row(
    i: int, tenant_id: uuid.UUID, now: dt.datetime, *, always_open: bool = False
) -> dict[str, Any]:
    """The ``i``-th bench task (statuses in turn, one minute older each) for a bulk insert."""
    created = now - dt.timedelta(minutes=i)
    window = (
        (dt.time.min, dt.time.max, list(range(7)))
        if always_open
        else (dt.time(9), dt.time(20), [0, 1, 2, 3, 4])
    )
    return {
        "id": uuid.uuid4(),
        "tenant_id": tenant_id,
        "title": f"Bench task {i}",
        "objective": "Ask when the order ships",
        "context": "",
        "phone": f"+1415{i % 10_000_000:07d}",
        "language": "en",
        "timezone": None,
        "window_start": window[0],
        "window_end": window[1],
        "window_days": window[2],
        "retry_backoff": [300.0, 1800.0, 7200.0],
        "status": STATUSES[i % len(STATUSES)],
        "max_attempts": 3,
        "current_attempt_count": 0,
        "total_calls": 0,
        "next_action_time": created,
        "collected_info": [],
        "created_at": created,
        "updated_at": created,
        "version": 1,
    }


def free_port() -> int:
    """A TCP port on 127.0.0.1 nobody listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port
