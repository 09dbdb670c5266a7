"""The flow row's scheduler columns are written in one place (runtime/bookkeeping.py).

``outstanding`` and ``held`` (the in-flight counts) and the typed bookkeeping columns used
to be kept by hand in about ten modules; a count written in two ways drifts. This parses
the package and fails on an assignment to one of them anywhere else (the fast paths write
the same numbers in SQL, from the same admission rules).
"""

from __future__ import annotations

import ast
from pathlib import Path

import celeryflow

PACKAGE = Path(celeryflow.__file__).parent
OWNED = frozenset({"outstanding", "held", "retry_scopes", "scope_retrying", "revert_scope", "revert_plan",
                   "revert_failed"})
HOME = PACKAGE / "runtime" / "bookkeeping.py"


def _writes(path: Path) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        targets = node.targets if isinstance(node, ast.Assign) else [node.target] \
            if isinstance(node, (ast.AugAssign, ast.AnnAssign)) else []
        for target in targets:
            if isinstance(target, ast.Attribute) and target.attr in OWNED:
                found.append(f"{path.relative_to(PACKAGE)}:{node.lineno}: .{target.attr}")
    return found


def test_only_bookkeeping_writes_the_flow_rows_scheduler_columns() -> None:
    elsewhere = [hit for path in sorted(PACKAGE.rglob("*.py")) if path != HOME for hit in _writes(path)]
    assert elsewhere == []


def test_the_check_sees_a_write() -> None:
    assert _writes(HOME), "bookkeeping.py writes these columns: the parser must find them"
