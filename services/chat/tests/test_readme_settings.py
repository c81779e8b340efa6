"""The README's configuration table states what chat/config.py accepts, derived from config.py.

Integer settings: their names, defaults, minimums and maximums are read from the
`_env_int(...)` calls in config.py's source, then checked against the running Config.
The other settings (every name Config() reads): each is given a value no checked setting
accepts; the refusal's own words (the values or length it expects) must be in the README's
`accepted` column, and a setting taking anything must say so there (`—`).
"""

from __future__ import annotations

import ast
import os
import re
from pathlib import Path
from typing import Any, NamedTuple

import pytest

from chat import config
from chat.config import Config, ConfigError

README = Path(config.__file__).resolve().parents[3] / "README.md"
SECRET = "s" * 40
# Accepted by none of the settings that check their value: not a word, number, URL or level.
REFUSED = "?"


class Row(NamedTuple):
    default: str
    accepted: str


def readme_table() -> dict[str, Row]:
    """Each variable of the README's configuration table: its default and `accepted` cells
    (a row naming several variables gives each its part of the default)."""
    text = README.read_text()
    section = text.split("## Configuration (environment)\n", 1)[1].split("\n## ", 1)[0]
    lines = [line for line in section.splitlines() if line.startswith("|")]
    header = [cell.strip() for cell in lines[0].strip("|").split("|")]
    assert header == ["variable", "default", "accepted", "meaning"]
    table = {}
    for line in lines[2:]:
        names, default, accepted, _meaning = (c.strip() for c in line.strip("|").split(" | "))
        variables = re.findall(r"`([A-Z][A-Z0-9_]+)`", names)
        defaults = default.split(", ") if len(variables) > 1 else [default]
        assert len(defaults) == len(variables), line
        for name, value in zip(variables, defaults, strict=True):
            table[name] = Row(value.strip("`"), accepted)
    return table


class IntSetting(NamedTuple):
    name: str
    default: int
    minimum: int
    maximum: int | None


def int_settings() -> list[IntSetting]:
    """Every `_env_int(NAME, default, minimum, maximum=None)` call in config.py, its arguments
    evaluated in config's namespace (so MAX_DATABASE_TIMEOUT_SECONDS, 64 * 1024 count)."""
    tree = ast.parse(Path(config.__file__).read_text())
    namespace = vars(config)

    def value(node: ast.expr) -> Any:
        return eval(compile(ast.Expression(node), config.__file__, "eval"), dict(namespace))

    found = []
    for node in ast.walk(tree):
        if not (isinstance(node, ast.Call) and getattr(node.func, "id", None) == "_env_int"):
            continue
        args = dict(zip(("name", "default", "minimum", "maximum"), node.args, strict=False))
        args.update({k.arg: k.value for k in node.keywords if k.arg})
        assert isinstance(args["name"], ast.Constant), ast.unparse(node)
        found.append(
            IntSetting(
                args["name"].value,
                value(args["default"]),
                value(args["minimum"]),
                value(args["maximum"]) if "maximum" in args else None,
            )
        )
    return found


INT_SETTINGS = int_settings()
INT_NAMES = {setting.name for setting in INT_SETTINGS}


class RecordingEnviron(dict):
    """os.environ's read interface, remembering every name asked for."""

    def __init__(self, values: dict[str, str]) -> None:
        super().__init__(values)
        self.read: set[str] = set()

    def get(self, key, default=None):
        self.read.add(key)
        return super().get(key, default)

    def __getitem__(self, key):
        self.read.add(key)
        return super().__getitem__(key)


@pytest.fixture
def environ(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    """Config() reads only the returned dict; the working directory is a scratch one."""
    monkeypatch.chdir(tmp_path)

    def use(values: dict[str, str]) -> RecordingEnviron:
        recording = RecordingEnviron({"CHAT_DATA_DIR": str(tmp_path / "data"), **values})
        monkeypatch.setattr(os, "environ", recording)
        return recording

    return use


def read_by_config(environ) -> set[str]:
    recording = environ({"SECRET_KEY": SECRET})
    Config()
    return recording.read


def refusal(environ, name: str, value: str) -> str | None:
    """ConfigError's message for `name=value` (the rest unset), None when it is accepted."""
    environ({"SECRET_KEY": SECRET, name: value})
    try:
        Config()
    except ConfigError as refused:
        return str(refused)
    return None


def test_config_has_integer_settings_to_check():
    assert len(INT_SETTINGS) == len(INT_NAMES) > 20
    assert {"PORT", "DRAIN_SECONDS", "DATABASE_TIMEOUT_SECONDS"} <= INT_NAMES


def test_the_integer_settings_found_in_the_source_are_those_config_reads(environ):
    assert sorted(INT_NAMES - read_by_config(environ)) == []


@pytest.mark.parametrize("setting", INT_SETTINGS, ids=lambda s: s.name)
def test_the_readme_states_an_integer_settings_default_and_bounds(setting, environ):
    row = readme_table().get(setting.name)
    assert row is not None, f"{setting.name} is not in the README's configuration table"
    stated = re.fullmatch(r"≥ (\d+)|(\d+)–(\d+)", row.accepted)
    assert stated, f"{setting.name}: {row.accepted!r} is neither '≥ N' nor 'N–M'"
    at_least, low, high = stated.groups()
    readme_bounds = (int(at_least), None) if at_least else (int(low), int(high))
    assert readme_bounds == (setting.minimum, setting.maximum), setting.name
    assert row.default == str(setting.default), setting.name
    # The bounds read from the source are the ones Config enforces.
    assert refusal(environ, setting.name, str(setting.minimum - 1)) is not None
    assert refusal(environ, setting.name, str(setting.minimum)) is None
    if setting.maximum is not None:
        assert refusal(environ, setting.name, str(setting.maximum + 1)) is not None
        assert refusal(environ, setting.name, str(setting.maximum)) is None


def _backticked_words(cell: str) -> set[str]:
    return {word for span in re.findall(r"`([^`]+)`", cell) for word in span.split()}


def test_the_readme_states_what_each_other_setting_accepts(environ):
    """Given a value no checked setting takes, a setting Config refuses must have its refusal's
    expected values (`one of A, B`) or length (`at least N`) in the `accepted` column; one
    Config takes must say `—` there."""
    table = readme_table()
    wrong = []
    for name in sorted(read_by_config(environ) - INT_NAMES):
        if name not in table:
            wrong.append(f"{name}: not in the README's configuration table")
            continue
        accepted = table[name].accepted
        message = refusal(environ, name, REFUSED)
        if message is None:
            if accepted != "—":
                wrong.append(f"{name}: takes any value, README says {accepted!r}")
            continue
        assert name in message, message
        one_of = re.search(r"one of (.+?)(?:, not | is expected| expected)", message)
        at_least = re.search(r"at least (\d+)", message)
        if one_of:
            missing = set(one_of.group(1).split(", ")) - _backticked_words(accepted)
            if missing or accepted == "—":
                wrong.append(f"{name}: README's {accepted!r} lacks {sorted(missing)}")
        elif at_least:
            if not re.search(rf"≥ {at_least.group(1)}\b", accepted):
                wrong.append(f"{name}: refused {message!r}, README says {accepted!r}")
        elif accepted == "—":
            wrong.append(f"{name}: refused {message!r}, README says it is not checked")
    assert wrong == []
