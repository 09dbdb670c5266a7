"""The soak's verdict: per flow, from the atoms' own calls (the trace), the kills and the
final logbook states. Pure (no I/O, tested with hand-written traces), but for
:class:`TraceTail`, which follows the trace file during the run.

Per flow and atom, the calls (``exec`` ... ``done``/``efail``, ``rev`` ...
``rdone``/``rfail``) are read in trace order and grouped into *runs* of the same kind
(a retry round or a re-run from scratch gives E R E ...). A call is *cut short* when
its process was SIGKILLed by the soak and wrote nothing after it (a prefork child runs
one task at a time, so only its last call can have been interrupted, before or after
its result was recorded). The invariants:

* a revert run follows an execute run: nothing that did not execute is reverted (an
  atom the logbook shows claimed but whose execute never reached user code counts as
  executed: it *may* have run, so compensating it is right);
* in a revert run every call but the last was cut short (or failed on purpose and was
  retried on request): each compensation happens once;
* an atom outside a retry scope is executed again after its revert only in a flow that
  was re-run from scratch;
* a SUCCESS flow: every atom's last call is a completed execute and every atom row is
  SUCCESS; a compensated flow (REVERTED, or FAILURE when a revert failed): every atom
  that executed ends with a completed revert, or is a predecessor of an atom whose
  revert failed (compensation stops there), and such predecessors are not reverted;
* a flow whose plan fails for good ends compensated, a flow with nothing planned, no
  revert request and no re-run ends SUCCESS; every flow ends (terminal, not suspended).

Repeated executes are at-least-once and only reported (explained by a kill, by a re-run from
scratch -- a ``resume()`` that lands just after the flow ended REVERTED -- or not).
"""

from __future__ import annotations

import datetime as dt
import statistics
from collections import Counter, defaultdict
from collections.abc import Collection
from dataclasses import dataclass, field
from typing import Any

TERMINAL = ("SUCCESS", "REVERTED", "FAILURE")
_STARTS = {"exec": "E", "rev": "R"}
_ENDS = {"done": "E", "efail": "E", "rdone": "R", "rfail": "R"}


@dataclass
class Call:
    """One execute (``E``) or revert (``R``) call of one atom, as the trace shows it."""

    kind: str
    pid: int
    start: float
    end: str | None = None  # done / efail / rdone / rfail; None: never returned
    seq: int = 0  # position of its start line in the trace
    cut: bool = False


@dataclass
class Kill:
    """A SIGKILL the soak sent: when, which processes, and what it killed (worker / pool child)."""

    at: float
    pids: list[int]
    what: str


@dataclass
class Facts:
    """Everything the verdict is computed from."""

    plans: dict[str, dict[str, Any]]
    trace: list[tuple[str, str, str, int, float]]
    kills: list[Kill]
    flow_states: dict[str, str]
    atom_states: dict[tuple[str, str], str]
    claims: dict[tuple[str, str], int] = field(default_factory=dict)
    reruns: dict[str, int] = field(default_factory=dict)
    revert_requested: set[str] = field(default_factory=set)


def parse_trace(text: str) -> list[tuple[str, str, str, int, float]]:
    """Lines ``<kind> <flow> <atom> <pid> <time>`` -> tuples (a torn last line is skipped)."""
    out = []
    for line in text.splitlines():
        parts = line.split(" ")
        if len(parts) == 5:
            out.append((parts[0], parts[1], parts[2], int(parts[3]), float(parts[4])))
    return out


class TraceTail:
    """Follows the trace file while the soak runs: which (flow, atom) call each pid is in."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.offset = 0
        self.partial = b""
        self.open: dict[int, tuple[str, str, str]] = {}  # pid -> (kind E/R, flow, atom)

    def update(self) -> None:
        try:
            with open(self.path, "rb") as fh:
                fh.seek(self.offset)
                data = fh.read()
        except FileNotFoundError:
            return
        self.offset += len(data)
        lines = (self.partial + data).split(b"\n")
        self.partial = lines.pop()
        for kind, fid, atom, pid, _at in parse_trace(b"\n".join(lines).decode()):
            if kind in ("exec", "rev"):
                self.open[pid] = ("E" if kind == "exec" else "R", fid, atom)
            else:
                self.open.pop(pid, None)

    def busy(self, kind: str, alive: Collection[int]) -> dict[int, str]:
        """pid -> flow of the calls of ``kind`` (E/R) in progress in the ``alive`` processes
        (a killed process's last call stays open in the trace)."""
        return {pid: fid for pid, (k, fid, _a) in self.open.items() if k == kind and pid in alive}


def calls_of(trace: list[tuple[str, str, str, int, float]], kills: list[Kill]) -> dict[tuple[str, str], list[Call]]:
    """The calls per (flow, atom), in trace order, with ``cut`` set from the kills."""
    calls: dict[tuple[str, str], list[Call]] = defaultdict(list)
    open_calls: dict[tuple[str, str, int], Call] = {}
    last_of_pid: dict[int, Call] = {}
    for seq, (kind, fid, atom, pid, at) in enumerate(trace):
        if kind in _STARTS:
            call = Call(_STARTS[kind], pid, at, seq=seq)
            calls[(fid, atom)].append(call)
            open_calls[(fid, atom, pid)] = call
            last_of_pid[pid] = call
        elif kind in _ENDS:
            started = open_calls.pop((fid, atom, pid), None)
            if started is not None:
                started.end = kind
    killed_at: dict[int, float] = {}
    for kill in kills:
        for pid in kill.pids:
            killed_at.setdefault(pid, kill.at)
    for pid, call in last_of_pid.items():
        if pid in killed_at and killed_at[pid] >= call.start:
            call.cut = True
    return calls


def _runs(calls: list[Call]) -> list[list[Call]]:
    runs: list[list[Call]] = []
    for call in calls:
        if runs and runs[-1][0].kind == call.kind:
            runs[-1].append(call)
        else:
            runs.append([call])
    return runs


def ancestors(preds: dict[str, list[str]], roots: set[str]) -> set[str]:
    """Every atom the ``roots`` depend on, transitively (``preds``: direct predecessors)."""
    seen: set[str] = set()
    stack = [p for r in roots for p in preds.get(r, [])]
    while stack:
        atom = stack.pop()
        if atom not in seen:
            seen.add(atom)
            stack.extend(preds.get(atom, []))
    return seen


def check_flow(fid: str, facts: Facts, calls: dict[tuple[str, str], list[Call]], stats: Counter[str]) -> list[str]:
    """The invariant violations of one flow (empty: it holds); ``stats`` gets its counts."""
    plan = facts.plans[fid]
    state = facts.flow_states.get(fid, "MISSING")
    rerun = facts.reruns.get(fid, 0) > 0
    bad: list[str] = []
    if state not in TERMINAL:
        return [f"{fid}: lost: the flow is {state} at the end"]
    if state == "SUCCESS" and plan_fails(plan):
        bad.append(f"{fid}: SUCCESS though its plan fails for good ({plan['fail_until']})")
    if state != "SUCCESS" and not (plan_fails(plan) or fid in facts.revert_requested or rerun):
        bad.append(f"{fid}: {state} though nothing made it fail")
    failed_reverts = {a for a in plan["atoms"] if calls.get((fid, a)) and calls[(fid, a)][-1].end == "rfail"}
    if state == "REVERTED" and failed_reverts:
        bad.append(f"{fid}: REVERTED though the revert of {sorted(failed_reverts)} failed")
    if state == "FAILURE" and not failed_reverts:
        bad.append(f"{fid}: FAILURE but no revert failed")
    blocked = ancestors(plan["preds"], failed_reverts) if state == "FAILURE" else set()
    # an exhausted Times decides REVERT: only its subflow is reverted, the atoms before it keep
    # their results (docs/porting-from-taskflow.md), unless something widened the compensation
    kept_ok = set(plan["atoms"]) - set(plan["scope"]) if scope_exhausts(plan) else set()
    unreverted: set[str] = set()
    for atom in plan["atoms"]:
        row = facts.atom_states.get((fid, atom))
        seq = calls.get((fid, atom), [])
        runs = _runs(seq)
        e_runs = 0
        for i, run in enumerate(runs):
            if run[0].kind == "E":
                e_runs += 1
                extra = len(run) - 1
                stats["executions"] += len(run)
                stats["re_executions"] += extra
                uncut = sum(1 for c in run[:-1] if not c.cut)
                stats["re_executions_in_a_rerun" if rerun else "re_executions_unexplained"] += uncut
                continue
            stats["reverts"] += len(run)
            if i == 0:
                if facts.claims.get((fid, atom), 0) > sum(1 for c in seq if c.kind == "E"):
                    stats["reverts_of_claimed_unrun"] += 1
                else:
                    bad.append(f"{fid}/{atom}: reverted but never executed")
            doubled = [c for c in run[:-1] if not c.cut and c.end != "rfail"]
            stats["re_reverts"] += len(run) - 1
            if doubled:
                bad.append(f"{fid}/{atom}: compensated {len(doubled) + 1} times (no kill explains it)")
        if e_runs > 1 and atom not in plan["scope"] and not rerun:
            bad.append(f"{fid}/{atom}: executed again after its revert ({e_runs} execute runs)")
        last = seq[-1] if seq else None
        if state == "SUCCESS":
            if last is None or last.kind != "E" or last.end != "done":
                bad.append(f"{fid}/{atom}: flow SUCCESS but the atom's last call is "
                           f"{'none' if last is None else last.kind + '/' + str(last.end)}")
            if row != "SUCCESS":
                bad.append(f"{fid}/{atom}: flow SUCCESS but the atom is {row}")
            continue
        if atom in blocked:
            if last is not None and last.kind == "R":
                bad.append(f"{fid}/{atom}: reverted although a revert it depends on failed")
            continue
        if last is None:
            if facts.claims.get((fid, atom), 0) and row != "REVERTED":
                bad.append(f"{fid}/{atom}: claimed (it may have run) but not compensated ({row})")
            continue
        if last.kind == "E":
            unreverted.add(atom)
            if atom in kept_ok:
                stats["kept_by_an_exhausted_retry_scope"] += 1
            else:
                bad.append(f"{fid}/{atom}: executed but not compensated (atom {row})")
        elif last.end == "rdone" and row != "REVERTED" and not (row == "PENDING" and (rerun or atom in plan["scope"])):
            bad.append(f"{fid}/{atom}: its revert completed but the atom is {row}")
        elif last.end == "rfail" and row != "REVERT_FAILURE":
            bad.append(f"{fid}/{atom}: its revert failed but the atom is {row}")
    # reverse dependency order: what an unreverted atom depends on is not reverted either
    for atom in sorted(unreverted):
        for pred in sorted(ancestors(plan["preds"], {atom})):
            pred_calls = calls.get((fid, pred))
            if pred_calls and pred_calls[-1].kind == "R" and pred not in plan["scope"]:
                bad.append(f"{fid}/{pred}: reverted although {atom}, which depends on it, was not")
    return bad


def scope_exhausts(plan: dict[str, Any]) -> bool:
    """True when an atom of the plan's ``Times(3)`` scope fails on every attempt."""
    return any(plan["fail_until"].get(a, 0) >= 3 for a in plan["scope"])


def plan_fails(plan: dict[str, Any]) -> bool:
    """True when the plan makes the flow fail for good (a Times(3) scope exhausted, or always)."""
    return any(n < 0 or n >= 3 for n in plan["fail_until"].values())


def recovery(calls: dict[tuple[str, str], list[Call]], kills: list[Kill]) -> dict[str, Any]:
    """Kill-to-recovery: for each call a kill interrupted (no end line), the time to the next
    call of the same atom of the same flow (its re-execution, or its revert)."""
    victims: list[tuple[float, str, str, str]] = []  # kill time, flow, atom, kind
    by_pid_kill = {pid: k for k in kills for pid in k.pids}
    for (fid, atom), seq in calls.items():
        for call in seq:
            kill = by_pid_kill.get(call.pid)
            if call.cut and call.end is None and kill is not None:
                victims.append((kill.at, fid, atom, call.kind))
    waits: list[float] = []
    flow_waits: list[float] = []
    unrecovered = []
    starts: dict[str, list[float]] = defaultdict(list)
    for (fid, _atom), seq in calls.items():
        starts[fid].extend(c.start for c in seq)
    for at, fid, atom, _kind in victims:
        later = [c.start for c in calls[(fid, atom)] if c.start > at]
        if later:
            waits.append(min(later) - at)
        else:
            unrecovered.append(f"{fid}/{atom}")
        flow_later = [t for t in starts[fid] if t > at]
        if flow_later:
            flow_waits.append(min(flow_later) - at)
    return {
        "interrupted_calls": len(victims),
        "interrupted_executes": sum(1 for v in victims if v[3] == "E"),
        "interrupted_reverts": sum(1 for v in victims if v[3] == "R"),
        **_spread("recovery_seconds", waits),
        "recovered": len(waits),
        "not_called_again": unrecovered[:20],
        # the looser measure: the next call of any atom of that flow (a parallel branch counts)
        **_spread("flow_next_call_seconds", flow_waits),
    }


def _spread(name: str, values: list[float]) -> dict[str, float | None]:
    ordered = sorted(values)
    return {
        f"{name}_median": round(statistics.median(ordered), 2) if ordered else None,
        f"{name}_p90": round(ordered[int(0.9 * (len(ordered) - 1))], 2) if ordered else None,
        f"{name}_max": round(ordered[-1], 2) if ordered else None,
    }


def verdict(facts: Facts) -> dict[str, Any]:
    """The soak's report: violations (must be none), counts and kill-to-recovery times."""
    calls = calls_of(facts.trace, facts.kills)
    stats: Counter[str] = Counter()
    violations: list[str] = []
    for fid in sorted(facts.plans):
        violations.extend(check_flow(fid, facts, calls, stats))
    unknown = sorted({fid for fid, _ in calls} - set(facts.plans))
    violations.extend(f"{fid}: trace lines of a flow the soak did not submit" for fid in unknown)
    return {
        "ok": not violations,
        "violations": violations[:50],
        "violation_count": len(violations),
        "flow_states": dict(Counter(facts.flow_states.get(f, "MISSING") for f in facts.plans)),
        "flows_rerun_from_scratch": sorted(f for f, n in facts.reruns.items() if n),
        "counts": dict(sorted(stats.items())),
        "recovery": recovery(calls, facts.kills),
    }


def evidence(violations: list[str], facts: Facts, ids: dict[str, str], controls: list[tuple[float, str, str, str]],
             events: list[Any], limit: int = 6) -> dict[str, Any]:
    """For the first flows with a violation: plan, trace, control calls, kills and logbook events
    (times in seconds from the first trace line; ``events`` rows are (flow uuid, atom, kind, old,
    new, epoch, details, at))."""
    t0 = min((line[4] for line in facts.trace), default=0.0)
    out: dict[str, Any] = {}
    for fid in dict.fromkeys(v.split("/")[0].split(":")[0] for v in violations):
        if len(out) >= limit:
            break
        flow_uuid = ids.get(fid)
        lines = [line for line in facts.trace if line[1] == fid]
        pids = {line[3] for line in lines}
        out[fid] = {
            "uuid": flow_uuid,
            "plan": facts.plans.get(fid),
            "trace": [f"{at - t0:8.2f} {kind} {atom} pid={pid}" for kind, _f, atom, pid, at in lines],
            "controls": [f"{at - t0:8.2f} {op}: {what}" for at, f, op, what in controls if f == fid],
            "kills": [f"{k.at - t0:8.2f} {k.what} {k.pids}" for k in facts.kills if pids & set(k.pids)],
            "events": [f"{at.replace(tzinfo=dt.timezone.utc).timestamp() - t0:8.2f} e{epoch} {kind} "
                       f"{atom or ''} {old}->{new} {details or ''}"
                       for u, atom, kind, old, new, epoch, details, at in events if u == flow_uuid],
        }
    return out


#: the header of docs/soak.md's table, matching :func:`table_row`
TABLE_HEADER = ("| seed | flows SUCCESS / REVERTED / FAILURE | kills (worker / child) | calls cut (execute / revert) "
                "| resume / revert / suspend calls | re-executions (unexplained) | re-reverts after a kill "
                "| kill-to-recovery median / max | violations | wall time |")


def table_row(report: dict[str, Any]) -> str:
    """One line of docs/soak.md's table from a report."""
    v, rec, kills = report["verdict"], report["verdict"]["recovery"], report["kills"]
    states, counts = v["flow_states"], v["counts"]
    ops: Counter[str] = Counter()
    for key, n in report["controls"].items():
        ops[key.split(" ")[0]] += n
    return (f"| {report['seed']} | {states.get('SUCCESS', 0)} / {states.get('REVERTED', 0)} / "
            f"{states.get('FAILURE', 0)} | {kills['total']} ({kills.get('whole_worker', 0)} / "
            f"{kills.get('pool_child', 0)}) | {rec['interrupted_executes']} / {rec['interrupted_reverts']} | "
            f"{ops['resume']} / {ops['revert']} / {ops['suspend']} | {counts.get('re_executions', 0)} "
            f"({counts.get('re_executions_unexplained', 0)}) | {counts.get('re_reverts', 0)} | "
            f"{rec['recovery_seconds_median']} / {rec['recovery_seconds_max']} s | **{v['violation_count']}** | "
            f"{report['seconds']:.0f} s |")
