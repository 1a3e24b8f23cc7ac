"""Settings: defaults, env names, switches, validation, and secrets that never show."""

from __future__ import annotations

import datetime as dt
import logging
import os
from pathlib import Path

import pytest
from pydantic import ValidationError

from opendeep.logging import REDACTOR, register_secrets
from opendeep.settings import Settings, mask_url, parse_days, parse_duration

pytestmark = pytest.mark.unit

PROVIDER_VARS = {"OPENAI_API_KEY", "GEMINI_API_KEY", "RAY_ADDRESS"}


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("OPENDEEP_") or name in {
            "OPENAI_API_KEY",
            "GEMINI_API_KEY",
            "RAY_ADDRESS",
        }:
            monkeypatch.delenv(name)
    monkeypatch.chdir("/")  # no stray .env


def test_defaults_are_the_documented_ones() -> None:
    s = Settings()
    assert s.resolved_database_url == "sqlite+aiosqlite:///var/opendeep.db"
    assert (s.http_host, s.http_port) == ("127.0.0.1", 8000)
    assert s.ray_namespace == "opendeep" and s.call_slots == 20
    assert (s.ring_timeout, s.connect_timeout, s.max_call_duration) == (30, 10, 900)
    assert (s.hitl_timeout_min, s.hitl_timeout_default, s.hitl_timeout_max) == (5, 10, 120)
    assert (s.heartbeat_lease, s.drain_grace) == (30, 60)
    assert s.window_start == dt.time(9) and s.window_end == dt.time(20)
    assert s.calling_weekdays == (0, 1, 2, 3, 4, 5)
    assert s.backoff_seconds == (300, 1800, 7200)
    assert s.max_calls_per_task == 10 and s.destination_daily_cap == 3
    assert s.pending_user_info_expiry_seconds == 7 * 86400
    assert s.recording is False


def test_unconfigured_world_is_simulated() -> None:
    s = Settings()
    assert (s.pbx_mode, s.voice_mode, s.analysis_mode) == ("sim", "sim", "rules")


def test_credentials_switch_to_the_real_services(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-123456")
    monkeypatch.setenv("GEMINI_API_KEY", "gm-test-123456")
    monkeypatch.setenv("OPENDEEP_AMI_HOST", "pbx.example.net")
    monkeypatch.setenv("RAY_ADDRESS", "ray://head:10001")
    s = Settings()
    assert (s.pbx_mode, s.voice_mode, s.analysis_mode) == ("asterisk", "openai", "gemini")
    assert s.ray_address == "ray://head:10001"


def test_explicit_switches_win_over_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-123456")
    monkeypatch.setenv("OPENDEEP_VOICE", "sim")
    monkeypatch.setenv("OPENDEEP_PBX", "asterisk")
    s = Settings()
    assert (s.pbx_mode, s.voice_mode) == ("asterisk", "sim")


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("OPENDEEP_PBX", "freeswitch"),
        ("OPENDEEP_HTTP_PORT", "70000"),
        ("OPENDEEP_RETRY_BACKOFF", "5m,soon"),
        ("OPENDEEP_CALLING_DAYS", "mon,funday"),
        ("OPENDEEP_CALLING_WINDOW_START", "25:00"),
        ("OPENDEEP_HITL_TIMEOUT_DEFAULT", "500"),
        ("OPENDEEP_DIAL_TEMPLATE", "PJSIP/trunk"),
        ("OPENDEEP_CALLING_WINDOW_END", "08:00"),
    ],
)
def test_bad_settings_are_refused_with_the_name(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str
) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(ValidationError):
        Settings()


def test_dotenv_file_is_read(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("OPENDEEP_HTTP_PORT=9123\nGEMINI_API_KEY=abc-secret\n")
    monkeypatch.chdir(tmp_path)
    s = Settings()
    assert s.http_port == 9123 and s.analysis_mode == "gemini"


def test_describe_masks_every_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-live-verysecret")
    monkeypatch.setenv("OPENDEEP_AMI_SECRET", "ami-verysecret")
    monkeypatch.setenv("OPENDEEP_DATABASE_URL", "postgresql+asyncpg://od:pw-verysecret@db/od")
    s = Settings()
    text = repr(s) + str(s.describe())
    assert "verysecret" not in text
    assert s.describe()["database_url"] == "postgresql+asyncpg://od:********@db/od"


def test_log_filter_masks_registered_secrets(caplog: pytest.LogCaptureFixture) -> None:
    register_secrets(["tok-abcdef123"])
    logger = logging.getLogger("test.secrets")
    record = logger.makeRecord("x", logging.INFO, "f", 1, "login with %s", ("tok-abcdef123",), None)
    REDACTOR.filter(record)
    assert record.getMessage() == "login with ********"


def test_parsers() -> None:
    assert parse_duration("250ms") == 0.25 and parse_duration("2h") == 7200
    assert parse_days("fri-mon") == (0, 4, 5, 6)
    assert mask_url("sqlite+aiosqlite:///var/x.db") == "sqlite+aiosqlite:///var/x.db"
    with pytest.raises(ValueError, match="not a duration"):
        parse_duration("-5m")


def test_hitl_timeout_is_clamped() -> None:
    s = Settings()
    assert s.clamp_hitl_timeout(None) == 10
    assert s.clamp_hitl_timeout(1) == 5
    assert s.clamp_hitl_timeout(1000) == 120
