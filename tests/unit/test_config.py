"""The one config object and the documented limits agree: every setting is in docs/operations.md's table of
limits with its default, and every variable that table names is read by the code."""

import os
import re
import tomllib
from pathlib import Path

from pydantic import AliasChoices

from digits.service.config import Settings
from main import app
from tests.helpers import ROOT

OPERATIONS = ROOT / "docs" / "operations.md"


def documented() -> dict[str, str]:
    """The table's rows: each variable, and its default as written."""
    text = OPERATIONS.read_text()
    section = text[text.index("## Limits (environment variables)") :]
    section = section[: section.index("\n## ", 1)]
    return dict(re.findall(r"^\| `(\w+)` \| ([^|]+) \|", section, re.MULTILINE))


def variable(name: str) -> str:
    """The environment variable a setting is read from: its first alias, or its name in capitals."""
    alias = Settings.model_fields[name].validation_alias
    return str(alias.choices[0]) if isinstance(alias, AliasChoices) else name.upper()


def shown(default: object) -> str:
    """A default as the table writes it: paths from the checkout, whole floats without a point, none for empty."""
    text = f"{default:g}" if isinstance(default, float) else str(default)
    text = text.replace(f"{ROOT}/", "")
    return text or "none"


def test_every_setting_is_documented_with_its_default():
    rows = documented()
    for name, field in Settings.model_fields.items():
        assert variable(name) in rows, f"{variable(name)} is missing from {OPERATIONS.name}"
        said = rows[variable(name)].strip("` ")
        if field.default_factory is not None:  # made where the service starts: the one such is the cores'
            assert said.startswith("one per core"), variable(name)
            assert field.get_default(call_default_factory=True) == len(os.sched_getaffinity(0))
        else:
            assert said.startswith(shown(field.default)), variable(name)


def test_every_documented_variable_is_read_by_the_code():
    read = {variable(name) for name in Settings.model_fields}
    code = "\n".join(p.read_text() for p in [ROOT / "serve.py", *Path(ROOT / "digits").rglob("*.py")])
    for name in documented():
        assert name in read or f'"{name}"' in code, f"{name} is documented but nothing reads it"


def test_the_app_says_the_projects_version():
    assert app.version == tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
