"""OpenDeep's settings: one pydantic-settings model read from the environment and `.env`.

Our own settings use the ``OPENDEEP_`` prefix; providers keep their standard names
(``OPENAI_API_KEY``, ``GEMINI_API_KEY``, ``RAY_ADDRESS``). Secrets are ``SecretStr`` and
never printed: :meth:`Settings.describe` masks them.
"""

from __future__ import annotations

import datetime as dt
import functools
import re
from pathlib import Path
from typing import Any, Literal

from pydantic import AliasChoices, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

BUILTIN_AMI_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})
"""AMI hosts that mean "the built-in simulated PBX" unless OPENDEEP_PBX says otherwise."""

SIM_AMI_SECRET = "opendeep-sim"  # noqa: S105 -- public default, only the loopback simulated PBX accepts it
"""Default AMI secret, good only for the simulated PBX on loopback."""

_DAY_NAMES = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, None: 1.0}


def parse_duration(text: str) -> float:
    """Parse ``"90"``, ``"30s"``, ``"5m"``, ``"2h"``, ``"7d"`` or ``"250ms"`` into seconds."""
    match = _DURATION.match(text)
    if not match:
        raise ValueError(f"not a duration: {text!r} (use e.g. 30s, 5m, 2h, 7d)")
    return float(match.group(1)) * _UNIT_SECONDS[match.group(2)]


def parse_days(text: str) -> tuple[int, ...]:
    """Parse ``"mon-sat"`` or ``"mon,wed,fri"`` into ISO weekday indexes (Monday = 0)."""
    days: set[int] = set()
    for part in (p.strip().lower() for p in text.split(",")):
        if not part:
            continue
        if "-" in part:
            first, last = (x.strip()[:3] for x in part.split("-", 1))
            if first not in _DAY_NAMES or last not in _DAY_NAMES:
                raise ValueError(f"unknown day in {part!r}")
            i, j = _DAY_NAMES.index(first), _DAY_NAMES.index(last)
            days.update(range(i, j + 1) if i <= j else [*range(i, 7), *range(0, j + 1)])
        elif part[:3] in _DAY_NAMES:
            days.add(_DAY_NAMES.index(part[:3]))
        else:
            raise ValueError(f"unknown day {part!r} (use mon..sun)")
    if not days:
        raise ValueError("no calling days given")
    return tuple(sorted(days))


def parse_clock(text: str) -> dt.time:
    """Parse ``"09:00"`` (or ``"24:00"`` for the end of the day, stored as 23:59:59.999999)."""
    text = text.strip()
    if text in {"24:00", "24:00:00"}:
        return dt.time.max
    try:
        return dt.time.fromisoformat(text)
    except ValueError as exc:
        raise ValueError(f"not a time of day: {text!r} (use HH:MM)") from exc


class Settings(BaseSettings):
    """Every knob of OpenDeep. The README lists each with its env var and default."""

    model_config = SettingsConfigDict(
        env_prefix="OPENDEEP_",
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
        populate_by_name=True,
    )

    # -- where things live -------------------------------------------------------------
    var_dir: Path = Path("var")
    database_url: SecretStr | None = None
    """Secret because a PostgreSQL URL usually carries a password."""
    log_level: str = "INFO"

    # -- Ray and HTTP ----------------------------------------------------------------
    ray_address: str | None = Field(
        default=None, validation_alias=AliasChoices("RAY_ADDRESS", "OPENDEEP_RAY_ADDRESS")
    )
    ray_namespace: str = "opendeep"
    http_host: str = "127.0.0.1"
    http_port: int = Field(default=8000, ge=1, le=65535)
    call_slots: int = Field(default=20, ge=0, le=10_000)

    # -- which world: real services or the built-in stand-ins ---------------------------
    pbx: Literal["sim", "asterisk"] | None = None
    voice: Literal["sim", "openai"] | None = None
    analysis: Literal["rules", "gemini"] | None = None

    # -- OpenAI Realtime ----------------------------------------------------------------
    openai_api_key: SecretStr | None = Field(
        default=None, validation_alias=AliasChoices("OPENAI_API_KEY", "OPENDEEP_OPENAI_API_KEY")
    )
    realtime_model: str = "gpt-realtime"
    realtime_voice: str = "marin"
    realtime_base_url: str | None = None
    realtime_8k_format: Literal["pcmu", "pcm24k"] = "pcmu"

    # -- Gemini ----------------------------------------------------------------------
    gemini_api_key: SecretStr | None = Field(
        default=None, validation_alias=AliasChoices("GEMINI_API_KEY", "OPENDEEP_GEMINI_API_KEY")
    )
    gemini_model: str = "gemini-2.5-flash"
    gemini_base_url: str | None = None
    gemini_timeout: float = Field(default=30.0, gt=0)

    # -- Asterisk: AMI and AudioSocket --------------------------------------------------
    ami_host: str = "127.0.0.1"
    ami_port: int = Field(default=5038, ge=1, le=65535)
    ami_user: str = "opendeep"
    ami_secret: SecretStr = SecretStr(SIM_AMI_SECRET)
    dial_template: str = "PJSIP/{number}@trunk"
    originate_form: Literal["app", "context"] = "app"
    dialplan_context: str = "opendeep-outbound"
    dialplan_exten: str = "s"
    audiosocket_bind_host: str = "127.0.0.1"
    audiosocket_advertise_host: str | None = None
    audiosocket_allowed_peers: str = ""
    dtmf_mode: Literal["inband", "ami"] = "inband"

    # -- call timing -------------------------------------------------------------------
    ring_timeout: float = Field(default=30.0, gt=0)
    connect_timeout: float = Field(default=10.0, gt=0)
    max_call_duration: float = Field(default=900.0, gt=0)
    hitl_timeout_min: float = Field(default=5.0, gt=0)
    hitl_timeout_max: float = Field(default=120.0, gt=0)
    hitl_timeout_default: float = Field(default=10.0, gt=0)
    heartbeat_lease: float = Field(default=30.0, gt=0)
    drain_grace: float = Field(default=60.0, ge=0)
    scheduler_tick: float = Field(default=1.0, gt=0, le=1.0)

    call_gc_freeze: bool = True
    """gc.freeze() at call start: full collections then skip start-up objects (20 ms path)."""

    # -- recording -----------------------------------------------------------------------
    recording: bool = False
    recording_retention_days: int = Field(default=30, ge=0)

    # -- scheduling policy -------------------------------------------------------------
    calling_window_start: str = "09:00"
    calling_window_end: str = "20:00"
    calling_days: str = "mon-sat"
    retry_backoff: str = "5m,30m,2h"
    max_attempts: int = Field(default=3, ge=1, le=100)
    max_calls_per_task: int = Field(default=10, ge=1, le=1000)
    pending_user_info_expiry: str = "7d"
    retry_horizon: str = "30d"
    destination_daily_cap: int = Field(default=3, ge=0)
    max_concurrent_calls: int = Field(default=100, ge=1)

    # -- tenant defaults (first-run bootstrap and `opendeep tenant add`) ----------------
    tenant_max_concurrent_calls: int = Field(default=5, ge=1)
    tenant_dial_rate_per_minute: int = Field(default=10, ge=1)
    tenant_daily_call_quota: int = Field(default=200, ge=1)
    tenant_allowed_countries: str = "*"

    @field_validator("calling_window_start", "calling_window_end")
    @classmethod
    def _clock(cls, value: str) -> str:
        parse_clock(value)
        return value

    @field_validator("calling_days")
    @classmethod
    def _days(cls, value: str) -> str:
        parse_days(value)
        return value

    @field_validator("retry_backoff")
    @classmethod
    def _backoff(cls, value: str) -> str:
        steps = [parse_duration(p) for p in value.split(",") if p.strip()]
        if not steps or any(s <= 0 for s in steps):
            raise ValueError("retry backoff needs one or more positive durations, e.g. 5m,30m,2h")
        return value

    @field_validator("pending_user_info_expiry", "retry_horizon")
    @classmethod
    def _positive_duration(cls, value: str) -> str:
        if parse_duration(value) <= 0:
            raise ValueError("must be a positive duration")
        return value

    @model_validator(mode="after")
    def _coherent(self) -> Settings:
        if not self.hitl_timeout_min <= self.hitl_timeout_default <= self.hitl_timeout_max:
            raise ValueError(
                "HITL timeouts must satisfy min <= default <= max "
                f"(got {self.hitl_timeout_min} <= {self.hitl_timeout_default} "
                f"<= {self.hitl_timeout_max})"
            )
        if parse_clock(self.calling_window_start) >= parse_clock(self.calling_window_end):
            raise ValueError("calling window start must be before its end")
        if "{number}" not in self.dial_template:
            raise ValueError("OPENDEEP_DIAL_TEMPLATE must contain {number}")
        return self

    # -- derived values ------------------------------------------------------------------
    @property
    def resolved_database_url(self) -> str:
        """The database URL; by default a SQLite file under the var directory."""
        if self.database_url:
            return self.database_url.get_secret_value()
        return f"sqlite+aiosqlite:///{(self.var_dir / 'opendeep.db').as_posix()}"

    @property
    def pbx_mode(self) -> Literal["sim", "asterisk"]:
        """``asterisk`` when chosen, or when an AMI host other than the built-in is set."""
        if self.pbx:
            return self.pbx
        return "sim" if self.ami_host in BUILTIN_AMI_HOSTS else "asterisk"

    @property
    def voice_mode(self) -> Literal["sim", "openai"]:
        """``openai`` when chosen, or when OPENAI_API_KEY is set."""
        if self.voice:
            return self.voice
        return "openai" if self.openai_api_key else "sim"

    @property
    def analysis_mode(self) -> Literal["rules", "gemini"]:
        """``gemini`` when chosen, or when GEMINI_API_KEY is set."""
        if self.analysis:
            return self.analysis
        return "gemini" if self.gemini_api_key else "rules"

    @property
    def backoff_seconds(self) -> tuple[float, ...]:
        """Retry backoff steps in seconds; the last repeats."""
        return tuple(parse_duration(p) for p in self.retry_backoff.split(",") if p.strip())

    @property
    def pending_user_info_expiry_seconds(self) -> float:
        """How long a task may wait for its creator's answer before it fails."""
        return parse_duration(self.pending_user_info_expiry)

    @property
    def retry_horizon_seconds(self) -> float:
        """How far ahead a retry may be scheduled."""
        return parse_duration(self.retry_horizon)

    @property
    def calling_weekdays(self) -> tuple[int, ...]:
        """Default allowed weekdays (Monday = 0)."""
        return parse_days(self.calling_days)

    @property
    def window_start(self) -> dt.time:
        """Default local start of the calling window."""
        return parse_clock(self.calling_window_start)

    @property
    def window_end(self) -> dt.time:
        """Default local end of the calling window."""
        return parse_clock(self.calling_window_end)

    @property
    def allowed_peers(self) -> frozenset[str]:
        """Peers AudioSocket connections may come from: the setting, else AMI host + loopback."""
        listed = {p.strip() for p in self.audiosocket_allowed_peers.split(",") if p.strip()}
        if listed:
            return frozenset(listed)
        return frozenset({self.ami_host, "127.0.0.1", "::1"})

    @property
    def advertise_host(self) -> str:
        """The host Asterisk should connect to for AudioSocket."""
        return self.audiosocket_advertise_host or self.audiosocket_bind_host

    @property
    def recordings_dir(self) -> Path:
        """Where call recordings are written when recording is on."""
        return self.var_dir / "recordings"

    def clamp_hitl_timeout(self, seconds: float | None) -> float:
        """Clamp a requested HITL timeout into the configured bounds."""
        if seconds is None:
            return self.hitl_timeout_default
        return min(max(seconds, self.hitl_timeout_min), self.hitl_timeout_max)

    def describe(self) -> dict[str, Any]:
        """All settings as a dict with every secret masked (safe to print or log)."""
        out: dict[str, Any] = {}
        for name, value in self.model_dump().items():
            if isinstance(value, SecretStr):
                out[name] = "********" if value.get_secret_value() else ""
            elif isinstance(value, Path):
                out[name] = value.as_posix()
            else:
                out[name] = value
        out["database_url"] = mask_url(self.resolved_database_url)
        return out


def mask_url(url: str) -> str:
    """Hide the password in a database URL."""
    return re.sub(r"(://[^:/@]+:)[^@]+@", r"\1********@", url)


@functools.lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read once."""
    return Settings()


def reload_settings() -> Settings:
    """Forget the cached settings and read them again (tests and the CLI use this)."""
    get_settings.cache_clear()
    return get_settings()
