"""The README stays true: its config table is the one the settings model generates."""

from __future__ import annotations

from pathlib import Path

from model.settings import Settings
from tools.config_reference import BEGIN, END, rows, table

README = Path(__file__).resolve().parents[2] / "README.md"


def test_readme_config_table_matches_the_settings_model() -> None:
    text = README.read_text()
    start, end = text.index(BEGIN) + len(BEGIN), text.index(END)
    assert text[start:end].strip() == table(), "run: python -m tools.config_reference, and paste it into README.md"


def test_every_key_has_a_type_and_default() -> None:
    for key, type_, default in rows(Settings):
        assert key.startswith("settings.") and type_ and default, key


def test_readme_shows_the_two_commands() -> None:
    text = README.read_text()
    assert "make plan" in text and "make test" in text
