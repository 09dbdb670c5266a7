"""The porting guide's table of TaskFlow's public modules is complete and claims nothing absent."""

from __future__ import annotations

import importlib
import re

import pytest

from tests.porting import api_table, harness
from tests.support.procs import REPO_ROOT

GUIDE = REPO_ROOT / "docs" / "porting-from-taskflow.md"
pytestmark = pytest.mark.skipif(harness.examples_dir() is None, reason="taskflow is not installed")

_ROW = re.compile(r"^\| `taskflow\.([\w.]+)`[^|]*\| ([^|]*) \|", re.M)


def _table() -> dict[str, list[str]]:
    text = GUIDE.read_text()
    section = text[text.index("## 6. Every public TaskFlow module and name, here"):]
    return {m.group(1): re.findall(r"`(\w+)`", m.group(2)) for m in _ROW.finditer(section)}


def test_every_public_module_is_in_the_guide() -> None:
    assert set(_table()) == set(api_table.PUBLIC_MODULES)
    assert set(api_table.NOTES) == set(api_table.PUBLIC_MODULES)


def test_every_name_the_guide_says_is_here_is_here() -> None:
    for module_name, names in _table().items():
        if not names:
            continue
        module = importlib.import_module(f"celeryflow.{module_name}")
        for name in names:
            assert hasattr(module, name), f"the porting guide says celeryflow.{module_name}.{name} exists"


def test_the_names_are_taskflows() -> None:
    for module_name, names in _table().items():
        assert set(names) <= set(api_table.public_names(module_name)), module_name
