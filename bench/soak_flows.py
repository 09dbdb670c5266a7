"""Atoms and the flow factory of ``bench/soak.py``; workers import this module
(``CELERYFLOW_IMPORTS=bench.soak_flows``).

Each soak flow is described by a *plan*: a small JSON dict drawn from the soak's seeded
random generator (:func:`make_plan`) and passed to the registered factory
:func:`soak_flow`, so the submitter, every worker and the checker rebuild the same
flow. A plan names its shape (``linear``, ``unordered``, ``graph`` with joins,
``fan``: head -> parallel chains -> tail, ``retry``: a nested linear scope under
``retry.Times``), its atoms' delays, the atoms whose execute fails (always, or while
the retry scope's attempt number is at most N) and the atoms whose revert fails.

The atoms' own calls are the soak's evidence (not the logbook): every ``execute`` and
``revert`` appends one line ``<kind> <flow> <atom> <pid> <time>`` to the run's trace
file when it starts (``exec`` / ``rev``) and when it returns or raises (``done`` /
``efail``, ``rdone`` / ``rfail``). Small ``O_APPEND`` writes are atomic across
processes, so the file is the ordered record of the user code's side effects.
"""

from __future__ import annotations

import os
import random
import time
from typing import Any

from celeryflow import registry, retry, task
from celeryflow.patterns import graph_flow, linear_flow, unordered_flow

SHAPES = ("linear", "unordered", "graph", "fan", "retry")

#: the attempt number the retry scope's ``Times`` provides to its atoms
ATTEMPT = "attempt"


def record(trace: str, kind: str, flow: str, atom: str) -> None:
    """Append ``<kind> <flow> <atom> <pid> <time>`` to ``trace`` (one atomic write)."""
    fd = os.open(trace, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, f"{kind} {flow} {atom} {os.getpid()} {time.time():.6f}\n".encode())
    finally:
        os.close(fd)


class SoakFailure(RuntimeError):
    """An execute or revert that fails on purpose (the plan says so)."""


class SoakAtom(task.Task):
    """Records each execute and revert call in the trace, sleeps, and fails when planned.

    Args:
        name: the atom's name, unique in its flow.
        trace: the run's trace file.
        flow: the soak's id of the flow (``f007``), written on every trace line.
        delay: seconds ``execute`` sleeps (``revert`` sleeps half of it).
        fail_until: ``execute`` raises while the retry scope's attempt is at most this
            (``-1``: always; ``0``: never).
        revert_fails: ``revert`` raises.
        in_scope: the atom requires the retry scope's attempt number.
    """

    def __init__(self, name: str, trace: str, flow: str, *, delay: float = 0.0, fail_until: int = 0,
                 revert_fails: bool = False, in_scope: bool = False) -> None:
        super().__init__(name=name, requires=[ATTEMPT] if in_scope else None)
        self.trace = trace
        self.flow = flow
        self.delay = delay
        self.fail_until = fail_until
        self.revert_fails = revert_fails

    def execute(self, **kwargs: Any) -> str:
        name = str(self.name)
        record(self.trace, "exec", self.flow, name)
        time.sleep(self.delay)
        attempt = int(kwargs.get(ATTEMPT, 1))
        if self.fail_until < 0 or attempt <= self.fail_until:
            record(self.trace, "efail", self.flow, name)
            raise SoakFailure(f"{self.flow}/{name} fails on purpose (attempt {attempt})")
        record(self.trace, "done", self.flow, name)
        return name

    def revert(self, *args: Any, **kwargs: Any) -> None:
        name = str(self.name)
        record(self.trace, "rev", self.flow, name)
        time.sleep(self.delay / 2)
        if self.revert_fails:
            record(self.trace, "rfail", self.flow, name)
            raise SoakFailure(f"{self.flow}/{name} revert fails on purpose")
        record(self.trace, "rdone", self.flow, name)


def make_plan(rng: random.Random, fid: str, shape: str, *, delay: tuple[float, float] = (0.1, 0.4),
              fail_rate: float = 0.35, revert_fail_rate: float = 0.2) -> dict[str, Any]:
    """Draw one flow's plan: its atoms, their dependencies, delays and planned failures."""
    atoms: list[str]
    preds: dict[str, list[str]]
    scope: list[str] = []
    if shape == "linear":
        atoms = [f"s{i}" for i in range(rng.randint(3, 6))]
        preds = {a: atoms[i - 1:i] for i, a in enumerate(atoms)}
    elif shape == "unordered":
        atoms = [f"u{i}" for i in range(rng.randint(3, 6))]
        preds = {a: [] for a in atoms}
    elif shape == "graph":
        n = rng.randint(5, 7)
        atoms = [f"g{i}" for i in range(n)]
        preds = {a: [] for a in atoms}
        for j in range(1, n):
            # at least one predecessor each; every few nodes a join of two or three
            k = min(j, rng.choice((1, 1, 2, 3)))
            preds[atoms[j]] = sorted(rng.sample(atoms[:j], k))
    elif shape == "fan":
        width, depth = rng.randint(2, 3), rng.randint(1, 2)
        chains = [[f"b{b}_{i}" for i in range(depth)] for b in range(width)]
        atoms = ["head"] + [a for c in chains for a in c] + ["tail"]
        preds = {"head": [], "tail": [c[-1] for c in chains]}
        for c in chains:
            for i, a in enumerate(c):
                preds[a] = [c[i - 1]] if i else ["head"]
    elif shape == "retry":
        scope = [f"x{i}" for i in range(rng.randint(2, 3))]
        atoms = ["pre0", "pre1", *scope, "post"]
        preds = {a: atoms[i - 1:i] for i, a in enumerate(atoms)}
    else:
        raise ValueError(f"unknown soak shape {shape!r}; one of {', '.join(SHAPES)}")
    fail_until: dict[str, int] = {}
    if shape == "retry" and rng.random() < 0.7:
        # a scope atom fails while attempt <= N of Times(3): N < 3 recovers, N = 3 exhausts
        fail_until[rng.choice(scope)] = rng.choice((1, 1, 2, 3))
    if rng.random() < fail_rate:
        fail_until[rng.choice([a for a in atoms if a not in scope])] = -1
    # revert failures only outside the retry scope (a scope's rounds would retry them)
    outside = [a for a in atoms if a not in scope]
    revert_fails = [rng.choice(outside)] if rng.random() < revert_fail_rate else []
    return {
        "fid": fid,
        "shape": shape,
        "atoms": atoms,
        "preds": preds,
        "scope": scope,
        "delays": {a: round(rng.uniform(*delay), 3) for a in atoms},
        "fail_until": fail_until,
        "revert_fails": revert_fails,
    }


def draw_plans(rng: random.Random, flows: int, shapes: tuple[str, ...] = SHAPES,
               **options: Any) -> dict[str, dict[str, Any]]:
    """The plans of a run's ``flows`` flows, ``f000`` ...: one of each of ``shapes`` first, then at
    random (``options`` go to :func:`make_plan`). The same seed and arguments give the same plans."""
    kinds = [shapes[i] if i < len(shapes) else rng.choice(shapes) for i in range(flows)]
    return {f"f{i:03d}": make_plan(rng, f"f{i:03d}", shape, **options) for i, shape in enumerate(kinds)}


@registry.register
def soak_flow(trace: str, plan: dict[str, Any]) -> linear_flow.Flow | unordered_flow.Flow | graph_flow.Flow:
    """The flow of one soak plan (see :func:`make_plan`)."""
    def atom(name: str) -> SoakAtom:
        return SoakAtom(name, trace, plan["fid"], delay=plan["delays"][name],
                        fail_until=plan["fail_until"].get(name, 0), revert_fails=name in plan["revert_fails"],
                        in_scope=name in plan["scope"])

    shape, names, fid = plan["shape"], plan["atoms"], plan["fid"]
    if shape == "linear":
        return linear_flow.Flow(f"soak-{fid}-linear").add(*(atom(n) for n in names))
    if shape == "unordered":
        return unordered_flow.Flow(f"soak-{fid}-unordered").add(*(atom(n) for n in names))
    if shape == "graph":
        made = {n: atom(n) for n in names}
        flow = graph_flow.Flow(f"soak-{fid}-graph").add(*made.values())
        for n in names:
            for p in plan["preds"][n]:
                flow.link(made[p], made[n])
        return flow
    if shape == "fan":
        chains: dict[str, list[str]] = {}
        for n in names[1:-1]:
            chains.setdefault(n.split("_")[0], []).append(n)
        branches = unordered_flow.Flow("branches").add(*(
            linear_flow.Flow(b).add(*(atom(n) for n in c)) for b, c in chains.items()))
        return linear_flow.Flow(f"soak-{fid}-fan").add(atom("head"), branches, atom("tail"))
    scope = linear_flow.Flow("scope", retry=retry.Times(3, name="times", provides=ATTEMPT))
    scope.add(*(atom(n) for n in plan["scope"]))
    return linear_flow.Flow(f"soak-{fid}-retry").add(atom("pre0"), atom("pre1"), scope, atom("post"))
