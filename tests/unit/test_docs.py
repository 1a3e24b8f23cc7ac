"""The README stays true: every setting is documented with its environment variable."""

from __future__ import annotations

from pathlib import Path

import pytest

from opendeep.settings import Settings

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]


def _env_names() -> list[str]:
    names = []
    for name, field in Settings.model_fields.items():
        alias = field.validation_alias
        choices = getattr(alias, "choices", None)
        names.append(str(choices[0]) if choices else f"OPENDEEP_{name.upper()}")
    return names


def test_every_setting_is_in_the_readme() -> None:
    readme = (ROOT / "README.md").read_text()
    missing = [name for name in _env_names() if f"`{name}`" not in readme]
    assert not missing, f"settings missing from README.md: {missing}"


def test_readme_names_the_two_commands_and_the_eol_note() -> None:
    readme = (ROOT / "README.md").read_text()
    assert "make run" in readme and "make test" in readme
    assert "google-generativeai" in readme and "end of life" in readme
