"""`opendeep up` is the whole product: a real process, real Ray, Serve, the simulated world.

What `make run` starts is driven here through its HTTP front door only: the API creates a task,
the system dials it on the simulated world and closes it; the UI page is served; Ctrl-C drains
a live call politely and everything stops.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.up_process import UpProcess

pytestmark = pytest.mark.e2e

DENTIST = "+14155550100"  # answers, talks, the agent closes the call: SUCCESS
HOLDS_THE_LINE = "+14155550119"  # asks for a policy number and holds the line for ~50 s


def _task(client: httpx.Client, task_id: str) -> dict[str, Any]:
    reply = client.get(f"api/tasks/{task_id}")
    assert reply.status_code == 200, reply.text
    body: dict[str, Any] = reply.json()
    return body


def _wait(client: httpx.Client, task_id: str, done: Any, within: float) -> dict[str, Any]:
    deadline = time.monotonic() + within
    while True:
        body = _task(client, task_id)
        if done(body):
            return body
        if time.monotonic() > deadline:
            raise AssertionError(f"task {task_id} did not get there in {within} s: {body}")
        time.sleep(0.5)


def _status(body: dict[str, Any]) -> str:
    status: str = body["status"]
    return status


def _chat_reply_pieces(up: UpProcess, message: str) -> list[str]:
    """The assistant's reply to ``message`` as it grew, read through the Serve proxy."""
    from gradio_client import Client  # noqa: PLC0415 -- only this test speaks Gradio's protocol

    client = Client(up.url, auth=(up.username, up.password), verbose=False)
    job = client.submit(message, "UTC", api_name="/chat_send")
    job.result(timeout=30)
    pieces = []
    for output in job.outputs():
        chat = output[0] if isinstance(output[0], list) else []
        if chat and chat[-1]["role"] == "assistant":
            pieces.append("".join(part["text"] for part in chat[-1]["content"]))
    return list(dict.fromkeys(pieces))


def test_up_serves_the_product_runs_a_task_and_drains_on_ctrl_c(tmp_path: Path) -> None:
    up = UpProcess.start(tmp_path)
    try:
        assert "SIMULATED PBX" in up.console and "SIMULATED voice AI" in up.console
        assert up.username == "admin" and up.password
        key = up.api_key()
        with httpx.Client(
            base_url=up.url, headers={"Authorization": f"Bearer {key}"}, timeout=30
        ) as client:
            assert client.get("healthz").json()["status"] == "ok"
            assert client.get("/", headers={"Authorization": ""}).status_code == 200
            pieces = _chat_reply_pieces(up, "Call +1 415 555 0100 to move my appointment")
            growing = [p for p in pieces if p and pieces[-1].startswith(p.rstrip("…"))]
            assert len(growing) >= 3, pieces  # streamed through Serve's proxy, not buffered
            made = client.post(
                "api/tasks",
                json={"to": DENTIST, "objective": "Move the dental appointment to next week."},
            )
            assert made.status_code == 201, made.text
            done = _wait(client, made.json()["id"], lambda b: _status(b) == "COMPLETED", 120)
            (call,) = done["calls"]
            assert call["transcript"], "the conversation was stored"

            held = client.post(
                "api/tasks", json={"to": HOLDS_THE_LINE, "objective": "Ask about claim 4471."}
            ).json()["id"]
            _wait(client, held, lambda b: any(c["answered_at"] for c in b["calls"]), 60)
    finally:
        code = up.stop()
    assert code == 0, up.console
    assert "Ending 1 call(s) politely" in up.console, up.console
    assert "Stopped." in up.console
    shown = up.cli("task", "show", held, "--json")
    assert shown.returncode == 0, shown.stderr
    (ended,) = json.loads(shown.stdout)["calls"]
    assert ended["status"] == "ENDED", "the drain ended the live call politely"
    assert ended["end_reason"] == "cancelled"

    again = UpProcess.start(tmp_path)  # the second run: no new password, the same database
    try:
        assert not again.password
    finally:
        assert again.stop() == 0, again.console
