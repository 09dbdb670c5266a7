"""bench/soak.py keeps working (a ``--quick`` run on real workers, Redis and PostgreSQL),
and its verdict (bench/soak_check.py) catches what it must, on hand-written traces."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from bench import soak_check, soak_flows
from bench.soak_check import Facts, Kill
from tests.support import REDIS_HOST, REDIS_PORT, require

REPO_ROOT = Path(__file__).resolve().parents[1]

LINEAR = {"fid": "f000", "shape": "linear", "atoms": ["s0", "s1", "s2"],
          "preds": {"s0": [], "s1": ["s0"], "s2": ["s1"]}, "scope": [], "delays": {},
          "fail_until": {}, "revert_fails": []}


def plan(**changes: Any) -> dict[str, Any]:
    return {**LINEAR, **changes}


def trace(*lines: str) -> list[tuple[str, str, str, int, float]]:
    """``"exec s0 7"`` -> a trace line of flow f000 by pid 7, at time = its position."""
    text = "\n".join(f"{ln.split()[0]} f000 {ln.split()[1]} {ln.split()[2]} {i}.0" for i, ln in enumerate(lines))
    return soak_check.parse_trace(text)


def judge(p: dict[str, Any], lines: list[str], flow: str, atoms: dict[str, str], *, kills: Sequence[Kill] = (),
          claims: dict[tuple[str, str], int] | None = None, **extra: Any) -> dict[str, Any]:
    facts = Facts(plans={"f000": p}, trace=trace(*lines), kills=list(kills), flow_states={"f000": flow},
                  atom_states={("f000", a): s for a, s in atoms.items()}, claims=claims or {}, **extra)
    return soak_check.verdict(facts)


def ok_run(*names: str) -> list[str]:
    return [f"{k} {n} 1" for n in names for k in ("exec", "done")]


def test_a_clean_success_holds() -> None:
    result = judge(plan(), ok_run("s0", "s1", "s2"), "SUCCESS", dict.fromkeys(("s0", "s1", "s2"), "SUCCESS"))
    assert result["ok"], result["violations"]
    assert result["counts"]["executions"] == 3


def test_a_compensated_flow_reverts_each_executed_atom_once() -> None:
    lines = [*ok_run("s0", "s1"), "exec s2 1", "efail s2 1",
             "rev s2 1", "rdone s2 1", "rev s1 1", "rdone s1 1", "rev s0 1", "rdone s0 1"]
    p = plan(fail_until={"s2": -1})
    assert judge(p, lines, "REVERTED", dict.fromkeys(("s0", "s1", "s2"), "REVERTED"))["ok"]
    # s0 never reverted: a missing compensation
    bad = judge(p, lines[:-2], "REVERTED", {"s0": "SUCCESS", "s1": "REVERTED", "s2": "REVERTED"})
    assert any("s0: executed but not compensated" in v for v in bad["violations"])


def test_a_second_revert_is_a_double_compensation_unless_a_kill_cut_the_first() -> None:
    lines = ["exec s0 1", "efail s0 1", "rev s0 2", "rdone s0 2", "rev s0 3", "rdone s0 3"]
    p = plan(atoms=["s0"], preds={"s0": []}, fail_until={"s0": -1})
    bad = judge(p, lines, "REVERTED", {"s0": "REVERTED"})
    assert any("compensated 2 times" in v for v in bad["violations"])
    # pid 2 was killed after its revert (it wrote nothing else): the revert may not have been recorded
    good = judge(p, lines, "REVERTED", {"s0": "REVERTED"}, kills=[Kill(3.5, [2], "pool_child")])
    assert good["ok"], good["violations"]
    assert good["counts"]["re_reverts"] == 1


def test_a_revert_of_an_atom_that_did_not_execute_fails_unless_it_was_claimed() -> None:
    lines = ["exec s0 1", "efail s0 1", "rev s0 1", "rdone s0 1", "rev s1 1", "rdone s1 1"]
    p = plan(atoms=["s0", "s1"], preds={"s0": [], "s1": []}, fail_until={"s0": -1})
    bad = judge(p, lines, "REVERTED", {"s0": "REVERTED", "s1": "REVERTED"})
    assert any("s1: reverted but never executed" in v for v in bad["violations"])
    # the logbook shows s1 claimed (its worker died before the user code ran): it may have run
    good = judge(p, lines, "REVERTED", {"s0": "REVERTED", "s1": "REVERTED"}, claims={("f000", "s1"): 1})
    assert good["ok"], good["violations"]


def test_a_failed_revert_leaves_what_it_depends_on_unreverted() -> None:
    p = plan(fail_until={"s2": -1}, revert_fails=["s1"])
    lines = [*ok_run("s0", "s1"), "exec s2 1", "efail s2 1", "rev s2 1", "rdone s2 1", "rev s1 1", "rfail s1 1"]
    states = {"s0": "SUCCESS", "s1": "REVERT_FAILURE", "s2": "REVERTED"}
    result = judge(p, lines, "FAILURE", states)
    assert result["ok"], result["violations"]
    bad = judge(p, [*lines, "rev s0 1", "rdone s0 1"], "FAILURE", {**states, "s0": "REVERTED"})
    assert any("s0: reverted although a revert it depends on failed" in v for v in bad["violations"])
    wrong = judge(p, lines, "REVERTED", states)
    assert any("REVERTED though the revert" in v for v in wrong["violations"])


def test_retry_rounds_and_lost_flows() -> None:
    p = plan(shape="retry", atoms=["x0"], preds={"x0": []}, scope=["x0"], fail_until={"x0": 1})
    lines = ["exec x0 1", "efail x0 1", "rev x0 1", "rdone x0 1", "exec x0 1", "done x0 1"]
    assert judge(p, lines, "SUCCESS", {"x0": "SUCCESS"})["ok"]
    # outside a retry scope, running again after the revert is wrong
    outside = judge(plan(atoms=["x0"], preds={"x0": []}), lines, "SUCCESS", {"x0": "SUCCESS"})
    assert any("executed again after its revert" in v for v in outside["violations"])
    lost = judge(p, lines[:2], "RUNNING", {"x0": "FAILURE"})
    assert lost["violations"] == ["f000: lost: the flow is RUNNING at the end"]
    assert any("fails for good" in v for v in judge(plan(fail_until={"s1": -1}), ok_run("s0", "s1", "s2"),
                                                    "SUCCESS", dict.fromkeys(("s0", "s1", "s2"), "SUCCESS"))[
                                                        "violations"])


def test_kill_to_recovery_and_at_least_once_executes() -> None:
    # pid 5 killed at t=1.5 mid-execute of s0 (line 1); s0 runs again at t=2 on pid 6; s1 at t=4
    lines = ["exec s0 5", "exec s0 6", "done s0 6", "exec s1 6", "done s1 6"]
    p = plan(atoms=["s0", "s1"], preds={"s0": [], "s1": ["s0"]})
    result = judge(p, lines, "SUCCESS", {"s0": "SUCCESS", "s1": "SUCCESS"}, kills=[Kill(0.5, [5], "whole_worker")])
    assert result["ok"], result["violations"]
    assert result["counts"]["re_executions"] == 1
    assert result["counts"]["re_executions_unexplained"] == 0
    assert result["recovery"]["interrupted_executes"] == 1
    assert result["recovery"]["recovery_seconds_median"] == 0.5


@pytest.mark.parametrize("seed", range(4))
def test_plans_are_reproducible_and_their_dependencies_are_the_compiled_ones(seed: int) -> None:
    from celeryflow.compiler import compile as compile_flow

    for shape in soak_flows.SHAPES:
        one = soak_flows.make_plan(random.Random(seed), "f001", shape)
        assert one == soak_flows.make_plan(random.Random(seed), "f001", shape)
        comp = compile_flow(soak_flows.soak_flow("/dev/null", one))
        assert set(one["atoms"]) <= set(comp.order)
        for atom in one["atoms"]:  # the checker's "what a failed revert blocks" is the engine's graph
            assert comp.ancestors(atom) & set(one["atoms"]) == soak_check.ancestors(one["preds"], {atom}), (shape, atom)


@pytest.mark.slow
@pytest.mark.crash
def test_quick_soak_holds(tmp_path: Path, postgres_available: str) -> None:
    require("redis")
    out = tmp_path / "soak.json"
    env = {k: v for k, v in os.environ.items() if not k.startswith("CELERYFLOW_")}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO_ROOT), env.get("PYTHONPATH", "")) if p)
    proc = subprocess.run(
        # every control call, suspend() too (tests/recovery/test_soak_findings.py: its bug is fixed)
        [sys.executable, "bench/soak.py", "--quick", "--seed", "5", "--json", str(out),
         "--redis", f"redis://{REDIS_HOST}:{REDIS_PORT}", "--postgres", postgres_available],
        cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=150,
    )
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-3000:]
    report = json.loads(out.read_text())
    assert report["verdict"]["ok"] and report["verdict"]["violation_count"] == 0
    assert set(report["shapes"]) == set(soak_flows.SHAPES)
    assert report["unfinished_at_deadline"] == []


def test_an_exhausted_retry_scope_keeps_the_atoms_before_it() -> None:
    p = plan(shape="retry", atoms=["pre0", "pre1", "x0"], preds={"pre0": [], "pre1": ["pre0"], "x0": ["pre1"]},
             scope=["x0"], fail_until={"x0": 3})
    rounds = [ln for _ in range(3) for ln in ("exec x0 1", "efail x0 1", "rev x0 1", "rdone x0 1")]
    states = {"pre0": "SUCCESS", "pre1": "SUCCESS", "x0": "REVERTED"}
    result = judge(p, [*ok_run("pre0", "pre1"), *rounds], "REVERTED", states)
    assert result["ok"], result["violations"]
    assert result["counts"]["kept_by_an_exhausted_retry_scope"] == 2
    # reverse order: pre0 cannot be compensated while pre1, which depends on it, is kept
    bad = judge(p, [*ok_run("pre0", "pre1"), *rounds, "rev pre0 1", "rdone pre0 1"], "REVERTED",
                {**states, "pre0": "REVERTED"})
    assert any("pre0: reverted although pre1" in v for v in bad["violations"])
