"""Flow metrics in the Prometheus text format, read from the logbook.

::

    from celeryflow.web.metrics import FlowMetrics
    metrics = FlowMetrics("postgresql://...")       # a prometheus_client collector
    text = metrics.render()                          # the text format, as /metrics serves it
    prometheus_client.REGISTRY.register(metrics)     # or beside your own metrics

Counters (``*_total``) follow the logbook's event table from the moment the
collector starts (like any Prometheus counter they start at 0 in a new process);
each scrape reads only the events written since the previous one (primary-key
range), so a scrape costs O(new events), not O(flows ever). Gauges describe the
flows that are active now, through the flows' ``(state, progress_at)`` index.

Nothing here runs in workers: the metrics add no query to their hot path.
"""

from __future__ import annotations

import datetime as dt
import threading
import time
from collections import defaultdict
from collections.abc import Iterator
from typing import Any

from sqlalchemy import func, select, tuple_
from sqlalchemy.orm import Session

from celeryflow import serialization, states
from celeryflow.contrib.snapshot import ACTIVE_STATES
from celeryflow.persistence.tables import AtomRow, EventRow, FlowRow, db_utcnow, utcnow

try:
    from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
    from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest
    from prometheus_client.registry import CollectorRegistry
except ImportError as exc:  # pragma: no cover - an extra
    raise ImportError("Flow metrics need prometheus_client: pip install 'celeryflow[web]'") from exc

CONTENT_TYPE = CONTENT_TYPE_LATEST
#: atom duration buckets (seconds)
BUCKETS = (0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0, 300.0, 1800.0, 3600.0)
FINISHED = (states.SUCCESS, states.REVERTED, states.FAILURE)
_BATCH = 5000


class FlowMetrics:
    """A Prometheus collector of celeryflow's flow metrics (see the module docstring).

    Args:
        backend: the logbook (URL or backend object).
        stuck_after: seconds without progress before an active flow counts as stuck (and a
            queued atom as waiting for a worker).
        max_events: events read per scrape at most (the rest are read by the next scrapes).
    """

    def __init__(self, backend: Any, *, stuck_after: float = 600.0, max_events: int = 50_000) -> None:
        if isinstance(backend, str):
            from celeryflow.persistence.backends import fetch

            backend = fetch(backend)
        self.backend = backend
        self.stuck_after = stuck_after
        self.max_events = max_events
        self._lock = threading.Lock()
        self._cursor: int | None = None
        self._started: dict[str, float] = defaultdict(float)
        self._finished: dict[tuple[str, str], float] = defaultdict(float)
        self._reclaimed: dict[str, float] = defaultdict(float)
        self._resent: dict[str, float] = defaultdict(float)
        self._durations: dict[tuple[str, str], list[float]] = {}  # (flow, atom) -> [bucket counts..., sum]
        self._latency = 0.0

    # ------------------------------------------------------------------ reading

    def _follow(self, session: Session) -> None:
        """Fold the events written since the last scrape into the counters."""
        if self._cursor is None:
            self._cursor = int(session.scalar(select(func.max(EventRow.id))) or 0)
            return
        read = 0
        while read < self.max_events:
            rows = session.execute(
                select(EventRow.id, EventRow.flow_uuid, EventRow.kind, EventRow.atom_name, EventRow.old_state,
                       EventRow.new_state, EventRow.details, FlowRow.name)
                .join(FlowRow, FlowRow.uuid == EventRow.flow_uuid)
                .where(EventRow.id > self._cursor).order_by(EventRow.id).limit(_BATCH)
            ).all()
            if not rows:
                return
            finished_atoms: list[tuple[str, str, str]] = []
            for row in rows:
                if row.kind == "flow":
                    if row.old_state is None and row.new_state == states.PENDING:
                        self._started[row.name] += 1
                    elif row.new_state in FINISHED and row.old_state != row.new_state:
                        self._finished[(row.name, row.new_state)] += 1
                elif row.kind == "atom" and row.atom_name:
                    if row.new_state in (states.SUCCESS, states.FAILURE) and row.old_state == states.RUNNING:
                        finished_atoms.append((row.flow_uuid, row.atom_name, row.name))
                    if row.details and row.old_state in (states.RUNNING, states.REVERTING) and \
                            "worker lost" in row.details:
                        reason = serialization.loads(row.details) or {}
                        if reason.get("reason") == "worker lost":
                            self._reclaimed[row.name] += 1
                elif row.kind == "sweep" and row.details:
                    record = serialization.loads(row.details) or {}
                    if record.get("action") == "resent":
                        self._resent[row.name] += len(record.get("atoms") or ())
            self._observe(session, finished_atoms)
            self._cursor = rows[-1].id
            read += len(rows)
            if len(rows) < _BATCH:
                return

    def _observe(self, session: Session, finished: list[tuple[str, str, str]]) -> None:
        for start in range(0, len(finished), 500):
            chunk = finished[start:start + 500]
            names = {(f, a): flow_name for f, a, flow_name in chunk}
            found = session.execute(
                select(AtomRow.flow_uuid, AtomRow.name, AtomRow.started_at, AtomRow.finished_at)
                .where(tuple_(AtomRow.flow_uuid, AtomRow.name).in_(list(names)))
            )
            for flow_uuid, atom, started, ended in found:
                if started is None or ended is None:
                    continue
                seconds = max(0.0, (ended - started).total_seconds())
                counts = self._durations.setdefault((names[(flow_uuid, atom)], atom), [0.0] * (len(BUCKETS) + 2))
                for i, bound in enumerate(BUCKETS):
                    if seconds <= bound:
                        counts[i] += 1
                counts[len(BUCKETS)] += 1  # +Inf
                counts[-1] += seconds

    def _gauges(self, session: Session) -> dict[str, Any]:
        t0 = time.perf_counter()
        now: dt.datetime = session.scalar(select(db_utcnow())) or utcnow()
        self._latency = time.perf_counter() - t0
        cutoff = now - dt.timedelta(seconds=self.stuck_after)
        active = [*ACTIVE_STATES, states.SUSPENDED]
        flows = session.execute(
            select(FlowRow.name, FlowRow.state, func.count()).where(FlowRow.state.in_(active))
            .group_by(FlowRow.name, FlowRow.state)).all()
        stuck = session.execute(
            select(FlowRow.name, func.count()).where(FlowRow.state.in_(list(ACTIVE_STATES)),
                                                      FlowRow.progress_at < cutoff)
            .group_by(FlowRow.name)).all()
        # the active flows' ids first, then their atoms by (flow_uuid, state) index, 500 flows at a time:
        # a join lets the planner hash-join a scan of every atom ever recorded
        live = list(session.scalars(select(FlowRow.uuid).where(FlowRow.state.in_(list(ACTIVE_STATES)))))
        by_state: dict[str, int] = defaultdict(int)
        for start in range(0, len(live), 500):
            for state, n in session.execute(select(AtomRow.state, func.count())
                                            .where(AtomRow.flow_uuid.in_(live[start:start + 500]))
                                            .group_by(AtomRow.state)):
                by_state[state] += int(n)
        atoms = sorted(by_state.items())
        waiting = session.execute(
            select(FlowRow.name, func.count()).join(AtomRow, AtomRow.flow_uuid == FlowRow.uuid)
            .where(FlowRow.state.in_(list(ACTIVE_STATES)), AtomRow.state == states.PENDING,
                   AtomRow.queued.is_(True), AtomRow.queued_at < cutoff)
            .group_by(FlowRow.name)).all()
        return {"flows": flows, "stuck": stuck, "atoms": atoms, "waiting": waiting}

    # ------------------------------------------------------------------ collector

    def collect(self) -> Iterator[Metric]:
        t0 = time.perf_counter()
        with self._lock:
            def read(session: Session) -> dict[str, Any]:
                self._follow(session)
                return self._gauges(session)

            gauges = self.backend.run(read, readonly=True)
            yield from self._families(gauges)
        scrape = GaugeMetricFamily("celeryflow_scrape_duration_seconds", "Time to read these metrics from the logbook")
        scrape.add_metric([], time.perf_counter() - t0)
        yield scrape

    def _families(self, gauges: dict[str, Any]) -> Iterator[Metric]:
        started = CounterMetricFamily("celeryflow_flows_started", "Flows started", labels=["flow"])
        for name, n in sorted(self._started.items()):
            started.add_metric([name], n)
        finished = CounterMetricFamily("celeryflow_flows_finished", "Flows that ended, by final state (SUCCESS, "
                                       "REVERTED, FAILURE)", labels=["flow", "state"])
        for (name, state), n in sorted(self._finished.items()):
            finished.add_metric([name, state], n)
        reclaimed = CounterMetricFamily("celeryflow_sweep_reclaimed_atoms", "Atoms the sweep took back from a lost "
                                        "worker", labels=["flow"])
        for name, n in sorted(self._reclaimed.items()):
            reclaimed.add_metric([name], n)
        resent = CounterMetricFamily("celeryflow_sweep_resent_atoms", "Atoms whose lost message the sweep sent "
                                     "again", labels=["flow"])
        for name, n in sorted(self._resent.items()):
            resent.add_metric([name], n)
        duration = HistogramMetricFamily("celeryflow_atom_duration_seconds", "How long atoms ran (execute)",
                                         labels=["flow", "atom"])
        for (name, atom), counts in sorted(self._durations.items()):
            buckets = [(str(b), counts[i]) for i, b in enumerate(BUCKETS)] + [("+Inf", counts[len(BUCKETS)])]
            duration.add_metric([name, atom], buckets, counts[-1])
        flows = GaugeMetricFamily("celeryflow_flows", "Flows not finished, by state", labels=["flow", "state"])
        for name, state, n in gauges["flows"]:
            flows.add_metric([name, state], n)
        stuck = GaugeMetricFamily("celeryflow_flows_stuck", f"Active flows without progress for "
                                  f"{self.stuck_after:g}s", labels=["flow"])
        for name, n in gauges["stuck"]:
            stuck.add_metric([name], n)
        atoms = GaugeMetricFamily("celeryflow_atoms", "Atoms of active flows, by state", labels=["state"])
        for state, n in gauges["atoms"]:
            atoms.add_metric([state], n)
        waiting = GaugeMetricFamily("celeryflow_atoms_waiting", f"Atoms queued for more than {self.stuck_after:g}s "
                                    "and not started (no worker has their code, or none is up)", labels=["flow"])
        for name, n in gauges["waiting"]:
            waiting.add_metric([name], n)
        latency = GaugeMetricFamily("celeryflow_logbook_latency_seconds", "Round trip of one logbook query")
        latency.add_metric([], self._latency)
        yield from (started, finished, reclaimed, resent, duration, flows, stuck, atoms, waiting, latency)

    def render(self) -> bytes:
        """The metrics in the Prometheus text format."""
        registry = CollectorRegistry(auto_describe=False)
        registry.register(self)
        return generate_latest(registry)


def metrics_text(backend: Any, **options: Any) -> str:
    """One-shot: gauges of the logbook now (counters need a long-lived :class:`FlowMetrics`)."""
    return FlowMetrics(backend, **options).render().decode()


__all__ = ["BUCKETS", "CONTENT_TYPE", "FlowMetrics", "metrics_text"]
