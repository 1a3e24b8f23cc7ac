"""Integration fixtures shared by more than one module."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from ai.gemini_sim import GeminiStandIn
from tests.integration._gemini import KEY


@pytest.fixture
async def standin() -> AsyncIterator[GeminiStandIn]:
    """The Gemini stand-in on a free loopback port, for one test (a module may define its own
    ``standin``, as the Realtime stand-in's tests do)."""
    async with GeminiStandIn(api_key=KEY) as server:
        yield server
