"""The web page as a user meets it, in headless Chromium against a real `opendeep up`.

Log in, define a task in the chat, watch it reach COMPLETED on the dashboard; then a call whose
callee needs a fact: the test answers in the Questions tab while the simulated call waits, and
the transcript shows the AI using the answer. Screenshots of each tab go to docs/img/.
"""

from __future__ import annotations

import re
from typing import Any

import pytest
from playwright.sync_api import expect

from tests.browser.conftest import SCREENSHOTS
from tests.up_process import UpProcess

pytestmark = pytest.mark.browser

CALL_WITHIN = 120_000  # ms: the actors start, the simulated call runs its script
POLICY = "PX-2291"


def _log_in(page: Any, up: UpProcess) -> None:
    page.goto(up.url)
    page.get_by_label(re.compile("username", re.I)).fill(up.username)
    page.get_by_label(re.compile("password", re.I)).fill(up.password)
    page.get_by_role("button", name=re.compile("log ?in", re.I)).click()
    page.locator("#od-chat-input textarea").wait_for(timeout=30_000)


def _wait_text(page: Any, where: str, pattern: str, timeout: float = 30_000) -> None:
    """Wait until the element ``where`` shows text matching ``pattern`` (case-insensitive)."""
    found = page.locator(where).get_by_text(re.compile(pattern, re.I)).first
    found.wait_for(timeout=timeout)


def _say(page: Any, text: str) -> None:
    page.locator("#od-chat-input textarea").fill(text)
    page.locator("#od-chat-send").click()


def _create_task_in_chat(page: Any, request: str) -> None:
    _say(page, request)
    page.locator("#od-confirm-button").wait_for(state="visible", timeout=30_000)
    page.locator("#od-confirm-button").click()
    page.locator("#od-chat").get_by_text(re.compile("Task created", re.I)).wait_for(timeout=30_000)


def _open_tab(page: Any, name: str) -> None:
    page.get_by_role("tab", name=re.compile(name, re.I)).click()


def _shot(page: Any, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)


def test_login_is_required(page: Any, product: UpProcess) -> None:
    page.goto(product.url)
    page.get_by_label(re.compile("password", re.I)).fill("not the password")
    page.get_by_label(re.compile("username", re.I)).fill(product.username)
    page.get_by_role("button", name=re.compile("log ?in", re.I)).click()
    page.get_by_text(re.compile("incorrect|invalid|wrong", re.I)).first.wait_for(timeout=10_000)
    assert page.locator("#od-chat-input").count() == 0


def test_a_message_sent_right_after_another_is_answered_in_turn(
    page: Any, product: UpProcess
) -> None:
    _log_in(page, product)
    _say(page, "Call Bright Smile Dental at +1 415 555 0100")
    _say(page, "Move my appointment to next week")  # at once, while the first reply streams
    _wait_text(page, "#od-chat", "when should I call")
    said = page.locator("#od-chat").get_by_text("Move my appointment to next week", exact=True)
    assert said.count() == 1
    box = page.locator("#od-chat-input textarea")
    expect(box).to_be_editable(timeout=10_000)  # once the reply has ended
    assert box.input_value() == ""


def test_a_task_defined_in_the_chat_is_completed_on_the_dashboard(
    page: Any, product: UpProcess
) -> None:
    _log_in(page, product)
    _say(page, "Call Bright Smile Dental at +1 415 555 0100")
    _wait_text(page, "#od-chat", "what should I get done on this call")
    _say(page, "Move my appointment to next week")
    _wait_text(page, "#od-chat", "when should I call")
    _create_task_in_chat(page, "now")
    _shot(page, "chat")
    _open_tab(page, "Dashboard")
    table = page.locator("#od-task-table")
    table.get_by_text("COMPLETED").first.wait_for(timeout=CALL_WITHIN)
    page.locator("#od-task-select input").click()
    page.get_by_role("option").first.click()
    page.locator("#od-transcript").get_by_text(re.compile("Bright Smile Dental")).first.wait_for(
        timeout=30_000
    )
    _shot(page, "dashboard")


def test_a_question_answered_in_the_questions_tab_reaches_the_live_call(
    page: Any, product: UpProcess
) -> None:
    _log_in(page, product)
    _create_task_in_chat(page, "Call +1 415 555 0119 now and ask about the status of claim 4471")
    _open_tab(page, "Questions")
    questions = page.locator("#od-question-list")
    questions.get_by_text(re.compile("policy number", re.I)).first.wait_for(timeout=CALL_WITHIN)
    page.locator("#od-question-select input").click()
    page.get_by_role("option").first.click()
    page.locator("#od-answer-box textarea").fill(POLICY)
    _shot(page, "questions")
    page.locator("#od-answer-button").click()
    page.locator("#od-answer-result").get_by_text(re.compile("live call", re.I)).wait_for(
        timeout=10_000
    )
    _open_tab(page, "Dashboard")
    page.locator("#od-task-select input").click()
    page.get_by_role("option", name=re.compile("claim 4471", re.I)).first.click()
    try:
        _wait_text(page, "#od-transcript", f"policy number is {POLICY}", CALL_WITHIN)
    finally:
        _shot(page, "hitl-transcript")
