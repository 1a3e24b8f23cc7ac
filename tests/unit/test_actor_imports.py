"""The CallActor stays lean: importing it must not pull in the database stack or the AMI client."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

pytestmark = pytest.mark.unit


def test_call_actor_imports_no_sqlalchemy_nor_panoramisk() -> None:
    code = (
        "import json, sys; import actors.call; "
        "print(json.dumps(sorted(m for m in sys.modules "
        "if m.split('.')[0] in {'sqlalchemy', 'aiosqlite', 'asyncpg', 'alembic', 'panoramisk', "
        "'db', 'openai', 'dateparser'})))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    )
    loaded = set(json.loads(out.stdout.strip().splitlines()[-1]))
    for heavy in ("sqlalchemy", "aiosqlite", "asyncpg", "alembic", "panoramisk"):
        assert not any(m.split(".")[0] == heavy for m in loaded), heavy
    # db only through its SQLAlchemy-free modules; the SDK and dateparser load when needed.
    allowed_db = {"db", "db.messages", "db.shapes", "db.states"}
    assert {m for m in loaded if m.split(".")[0] == "db"} <= allowed_db
    assert not any(m.split(".")[0] in {"openai", "dateparser"} for m in loaded)
