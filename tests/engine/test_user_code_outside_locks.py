"""User code (deciders, ``Retry.on_failure``) never runs while a flow's row is locked (issue #11, defect 11).

Each probe runs inside the user code and asks, from a fresh connection, for the lock
the scheduler's transactions take: the flow row ``FOR UPDATE`` on PostgreSQL and
MariaDB, the database's write lock on SQLite. A probe that cannot get it within its
lock timeout means the user code was called from inside such a transaction: the
transaction holding it is waiting for the user code, so the wait cannot end early.

A transaction that is retried (here: a trigger that fails it once with a real
serialization failure / deadlock error) must not call the user code a second time.
"""

from __future__ import annotations

import sqlite3
from typing import Any

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.pool import NullPool

from celeryflow import engines, retry, states, task
from celeryflow.patterns import graph_flow, linear_flow
from celeryflow.persistence.backends.impl_sqlalchemy import normalize_url

LOCK_TIMEOUT_S = 2


class Value(task.Task):
    def execute(self) -> int:
        return 1


class Broken(task.Task):
    def execute(self) -> None:
        raise ValueError("broken on purpose")


class Probe:
    """Records, each time user code runs, whether the flow's lock was free."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.flow_uuid = ""
        self.free: list[bool] = []

    def __call__(self) -> None:
        self.free.append(self._lock_is_free())

    def _lock_is_free(self) -> bool:
        url = normalize_url(self.url)
        if url.get_backend_name() == "sqlite":
            conn = sqlite3.connect(str(url.database), timeout=LOCK_TIMEOUT_S, isolation_level=None)
            try:
                conn.execute("BEGIN IMMEDIATE")
                conn.execute("ROLLBACK")
                return True
            except sqlite3.OperationalError:
                return False
            finally:
                conn.close()
        engine = create_engine(url, poolclass=NullPool)
        try:
            with engine.begin() as conn:
                if url.get_backend_name() == "postgresql":
                    conn.execute(text(f"SET LOCAL lock_timeout = '{LOCK_TIMEOUT_S}s'"))
                else:
                    conn.execute(text(f"SET SESSION innodb_lock_wait_timeout = {LOCK_TIMEOUT_S}"))
                try:
                    conn.execute(text("SELECT uuid FROM celeryflow_flows WHERE uuid = :u FOR UPDATE"),
                                 {"u": self.flow_uuid})
                except DBAPIError:
                    return False
                return True
        finally:
            engine.dispose()


def _decided_flow(probe: Probe, calls: list[int]) -> graph_flow.Flow:
    """a -(decider: no, ATOM)-> b; the decider probes the lock and counts its calls."""

    def decider(history: dict[str, Any]) -> bool:
        calls.append(1)
        probe()
        return False

    a, b = Value("a"), Value("b")
    flow = graph_flow.Flow("decided").add(a, b)
    flow.link(a, b, decider=decider, decider_depth="ATOM")
    return flow


class ProbedTimes(retry.Times):
    probe: Probe
    calls: list[int]

    def on_failure(self, history: retry.History, *args: Any, **kwargs: Any) -> str:
        self.calls.append(1)
        self.probe()
        return super().on_failure(history, *args, **kwargs)


def _retried_flow(probe: Probe, calls: list[int]) -> linear_flow.Flow:
    controller = ProbedTimes(attempts=1, name="times")
    controller.probe, controller.calls = probe, calls
    return linear_flow.Flow("retried", retry=controller).add(Broken("broken"))


def test_decider_runs_while_the_flow_row_is_free(db_url: str) -> None:
    probe, calls = Probe(db_url), []
    engine = engines.load(_decided_flow(probe, calls), backend=db_url)
    engine.prepare()
    probe.flow_uuid = engine.flow_uuid
    engine.run(timeout=30)
    assert engine.storage.get_atom_state("b") == states.IGNORE
    assert probe.free == [True]  # before the fix: [False], called inside finish's FOR UPDATE transaction


def test_on_failure_runs_while_the_flow_row_is_free(db_url: str) -> None:
    probe, calls = Probe(db_url), []
    engine = engines.load(_retried_flow(probe, calls), backend=db_url)
    engine.prepare()
    probe.flow_uuid = engine.flow_uuid
    with pytest.raises(ValueError, match="broken on purpose"):
        engine.run(timeout=30)
    assert engine.storage.get_flow_state() == states.REVERTED
    assert probe.free and all(probe.free), probe.free  # before the fix: [False]


def test_decider_after_an_ignored_atom_is_asked_once_outside_the_lock(db_url: str) -> None:
    """a -(no)-> b -(decider)-> c: b is ignored in a's finish; c's decider (given {b: None}) is not
    known to the worker that finished a, so the transaction asks it outside and runs again."""
    probe, seen = Probe(db_url), []

    def no(history: dict[str, Any]) -> bool:
        seen.append(dict(history))
        probe()
        return False

    def yes(history: dict[str, Any]) -> bool:
        seen.append(dict(history))
        probe()
        return True

    a, b, c = Value("a"), Value("b"), Value("c")
    flow = graph_flow.Flow("cascade").add(a, b, c)
    flow.link(a, b, decider=no, decider_depth="ATOM")
    flow.link(b, c, decider=yes, decider_depth="ATOM")
    engine = engines.load(flow, backend=db_url)
    engine.prepare()
    probe.flow_uuid = engine.flow_uuid
    engine.run(timeout=30)
    assert seen == [{"a": 1}, {"b": None}]  # each decider once
    assert probe.free == [True, True]
    assert [engine.storage.get_atom_state(n) for n in "abc"] == [states.SUCCESS, states.IGNORE, states.SUCCESS]


# --------------------------------------------------------------------------- transaction retries


@pytest.fixture(params=["postgresql", "mariadb"])
def server_url(request: pytest.FixtureRequest) -> str:
    return str(request.getfixturevalue({"postgresql": "postgres_url", "mariadb": "mariadb_url"}[request.param]))


def _fail_once(url: str, table: str, state: str) -> None:
    """A trigger that fails the first UPDATE moving a row of ``table`` to ``state`` with a transient error.

    Its counter is not rolled back with the failed transaction (a PostgreSQL sequence, a
    MyISAM table), so the transaction's retry goes through.
    """
    engine = create_engine(normalize_url(url), poolclass=NullPool)
    with engine.begin() as conn:
        if engine.dialect.name == "postgresql":
            conn.execute(text("CREATE SEQUENCE cf_fail_once"))
            conn.execute(text(f"""
                CREATE FUNCTION cf_fail_once() RETURNS trigger LANGUAGE plpgsql AS $$
                BEGIN
                    IF NEW.state = '{state}' AND OLD.state <> '{state}' AND nextval('cf_fail_once') = 1 THEN
                        RAISE EXCEPTION 'injected serialization failure' USING ERRCODE = '40001';
                    END IF;
                    RETURN NEW;
                END $$"""))
            conn.execute(text(f"CREATE TRIGGER cf_fail_once BEFORE UPDATE ON {table} "
                              "FOR EACH ROW EXECUTE FUNCTION cf_fail_once()"))
        else:
            conn.execute(text("CREATE TABLE cf_fail_once (n INT) ENGINE=MyISAM"))
            conn.execute(text("INSERT INTO cf_fail_once VALUES (0)"))
            conn.execute(text(f"""
                CREATE TRIGGER cf_fail_once BEFORE UPDATE ON {table} FOR EACH ROW
                BEGIN
                    IF NEW.state = '{state}' AND OLD.state <> '{state}' THEN
                        UPDATE cf_fail_once SET n = n + 1;
                        IF (SELECT n FROM cf_fail_once) = 1 THEN
                            SIGNAL SQLSTATE '40001' SET MESSAGE_TEXT = 'injected deadlock', MYSQL_ERRNO = 1213;
                        END IF;
                    END IF;
                END"""))
    engine.dispose()


def _fired(url: str) -> int:
    engine = create_engine(normalize_url(url), poolclass=NullPool)
    with engine.connect() as conn:
        if engine.dialect.name == "postgresql":
            value = conn.execute(text("SELECT last_value FROM cf_fail_once")).scalar()
        else:
            value = conn.execute(text("SELECT n FROM cf_fail_once")).scalar()
    engine.dispose()
    return int(value or 0)


def test_a_retried_transaction_does_not_call_the_decider_again(server_url: str) -> None:
    probe, calls = Probe(server_url), []
    engine = engines.load(_decided_flow(probe, calls), backend=server_url)
    engine.prepare()
    probe.flow_uuid = engine.flow_uuid
    _fail_once(server_url, "celeryflow_atoms", states.IGNORE)  # the decider's verdict taking effect
    engine.run(timeout=30)
    assert engine.storage.get_atom_state("b") == states.IGNORE
    assert _fired(server_url) >= 1  # the transaction did fail once and was retried
    assert len(calls) == 1  # before the fix: 2


def test_a_retried_transaction_does_not_call_on_failure_again(server_url: str) -> None:
    probe, calls = Probe(server_url), []
    engine = engines.load(_retried_flow(probe, calls), backend=server_url)
    engine.prepare()
    probe.flow_uuid = engine.flow_uuid
    _fail_once(server_url, "celeryflow_flows", states.REVERTING)  # the controller's REVERT taking effect
    with pytest.raises(ValueError, match="broken on purpose"):
        engine.run(timeout=30)
    assert engine.storage.get_flow_state() == states.REVERTED
    assert _fired(server_url) >= 1
    assert len(calls) == 1  # before the fix: 2


# --------------------------------------------------------------------------- recorded verdicts, by hand


def test_a_recorded_verdict_is_reused_on_resume_without_asking_again(db_url: str) -> None:
    """The worker's verdict is recorded with the predecessor's result; a resume reuses it (no decider here)."""
    from celeryflow import serialization
    from celeryflow.persistence.backends import fetch
    from celeryflow.runtime import control, steps
    from celeryflow.runtime.logbook import EXECUTE
    from celeryflow.runtime.verdicts import decide_links

    probe, calls = Probe(db_url), []
    engine = engines.load(_decided_flow(probe, calls), backend=db_url)
    engine.prepare()
    probe.flow_uuid = engine.flow_uuid
    backend, comp, flow_uuid = fetch(db_url), engine.compile(), engine.flow_uuid
    assert engine._runtime is not None
    decide = engine._runtime.decide
    first = control.start(backend, comp, flow_uuid, owner="test", decide=decide)
    assert steps.begin(backend, comp, flow_uuid, "a", first.epoch, EXECUTE, "w:1").verdict is steps.Verdict.RUN
    control.suspend(backend, comp, flow_uuid)
    answers = decide_links(comp, "a", serialization.dumps(1), decide)  # what the worker does, before finish
    assert len(calls) == 1 and probe.free == [True]
    steps.finish(backend, comp, flow_uuid, "a", first.epoch, EXECUTE, "w:1", result=1, answers=answers)
    again = control.start(backend, comp, flow_uuid, owner="test", decide=None)  # nobody to ask: recorded
    assert again.execute == [] and len(calls) == 1
    assert engine.storage.get_atom_state("b") == states.IGNORE
    assert engine.storage.get_flow_state() == states.SUCCESS
