"""The benchmark runner works end to end (a smoke run; no timing is asserted).

``python -m bench --quick --no-taskflow`` runs tiny flows once each and writes its report;
this checks that it exits cleanly and the report holds its tables. With Redis down it
still runs the embedded cases (the remote ones are reported as skipped).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from bench import atoms, procs, report
from bench.runner import Plan

REPO_ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_quick_bench_writes_a_table(tmp_path: Path) -> None:
    output = tmp_path / "benchmarks.md"
    raw = tmp_path / "results.json"
    env = {k: v for k, v in os.environ.items() if not k.startswith("CELERYFLOW_")}
    env["XDG_DATA_HOME"] = str(tmp_path / "xdg")
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO_ROOT), env.get("PYTHONPATH", "")) if p)
    proc = subprocess.run(
        [sys.executable, "-m", "bench", "--quick", "--no-taskflow", "--no-postgres", "--output", str(output),
         "--json", str(raw)],
        cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=280,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    text = output.read_text()
    assert text.startswith("# Benchmarks")
    assert "Smoke run (`--quick`)" in text
    for heading in ("## Targets", "## Embedded default", "## Logbook work per atom", "## Scale"):
        assert heading in text
    assert "| case | median | runs | per atom |" in text
    assert "| linear 10 |" in text  # an embedded row with a measured time
    assert "TaskFlow (--no-taskflow)" in text
    if procs.redis_up():
        assert "| unordered 40 vs `group` of 40 |" in text
        assert "| target (issue 7) | measured | status |" in text
    assert raw.read_text().startswith("{")


def test_dag_is_fixed_and_acyclic() -> None:
    edges = atoms.dag_edges(200)
    assert edges == atoms.dag_edges(200)
    assert all(u < v for u, v in edges)
    assert 1 <= atoms.critical_path(200, edges) <= 200


def test_statement_kinds() -> None:
    assert atoms.statement_kind("UPDATE celeryflow_atoms SET state=?") == "UPDATE celeryflow_atoms"
    assert atoms.statement_kind("SELECT celeryflow_flows.spec \nFROM celeryflow_flows") == (
        "SELECT celeryflow_flows.spec"
    )
    assert atoms.statement_kind("BEGIN IMMEDIATE") == "BEGIN"


def test_report_renders_without_results() -> None:
    from bench.runner import Results

    results = Results(Plan.make(quick=True, runs=None))
    results.dag = {"atoms": 40, "edges": 0, "critical_path": 1, "seed": atoms.DAG_SEED}
    text = report.render(results, elapsed=0.0)
    assert "## Targets" in text
