"""The Gemini stand-in as the analysis and intake tests use it: its key and the settings."""

from __future__ import annotations

from typing import Any

from pydantic import SecretStr

from ai.gemini_sim import GeminiStandIn
from opendeep.settings import Settings

KEY = "AIza-standin-0123456789-secret"
"""The stand-in's API key: it refuses any other, and no log or result may show it."""


def settings_for(standin: GeminiStandIn, **values: Any) -> Settings:
    """Settings that send the real google-genai client to ``standin`` (``values`` override)."""
    fields: dict[str, Any] = {
        "_env_file": None,
        "analysis": "gemini",
        "gemini_api_key": SecretStr(KEY),
        "gemini_base_url": standin.base_url,
        "gemini_model": "gemini-2.5-flash",
        "gemini_timeout": 5.0,
    }
    fields.update(values)
    return Settings(**fields)
