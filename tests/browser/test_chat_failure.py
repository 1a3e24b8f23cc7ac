"""A chat turn that fails gives the user their message back, in the browser.

The intake here raises (as an outage of its backend would); the page must unlock the input and
put the message back in it, so nothing typed is lost. The UI is the real ingress on uvicorn
(as in ``tests/integration/test_ui.py``), so the failing intake can be plugged in; Chromium
is driven with Playwright's async API because the server runs on the test's event loop.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Sequence
from pathlib import Path

import pytest

from db.engine import Database
from gradio_ui.intake_types import Draft, IntakeTurn
from tests.browser.chromium import CHROMIUM, CHROMIUM_ARGS
from tests.integration.test_ui import PASSWORD, _serving

pytestmark = [
    pytest.mark.browser,
    pytest.mark.filterwarnings("ignore:.*no_silent_downcasting:DeprecationWarning"),
    pytest.mark.filterwarnings("ignore:The copy keyword is deprecated"),
]

MESSAGE = "Call +1 415 555 0100 and ask about my order"


class BrokenIntake:
    """An intake whose backend is down: every turn raises."""

    async def respond(
        self,
        draft: Draft,
        history: Sequence[tuple[str, str]],
        message: str,
        *,
        now: dt.datetime,
        user_zone: str,
    ) -> IntakeTurn:
        """Fail, as an unreachable backend would."""
        raise ConnectionError("the intake backend is unreachable")


async def test_a_failed_turn_puts_the_message_back_and_unlocks_the_input(
    sqlite_db: Database, tmp_path: Path
) -> None:
    if CHROMIUM is None:
        pytest.skip("chromium is not installed (Debian: apt-get install chromium)")
    from playwright.async_api import async_playwright, expect  # noqa: PLC0415

    async with _serving(sqlite_db, tmp_path, BrokenIntake()) as running, async_playwright() as pw:
        browser = await pw.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS
        )
        try:
            page = await browser.new_page(viewport={"width": 1280, "height": 900})
            await page.goto(running.url)
            await page.get_by_label(re.compile("username", re.I)).fill("alice")
            await page.get_by_label(re.compile("password", re.I)).fill(PASSWORD)
            await page.get_by_role("button", name=re.compile("log ?in", re.I)).click()
            box = page.locator("#od-chat-input textarea")
            await box.fill(MESSAGE)
            await page.locator("#od-chat-send").click()
            await expect(box).to_have_value(MESSAGE, timeout=15_000)
            await expect(box).to_be_editable()
            await expect(page.locator("#od-chat-send")).to_be_enabled()
        finally:
            await browser.close()
