"""The schema: migrations create exactly tables.py's schema, idempotently and safely in parallel."""

from __future__ import annotations

import multiprocessing
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Text, inspect, text
from sqlalchemy.dialects import mysql

import celeryflow.jobs.backends.sql_tables  # noqa: F401  (job tables are part of the head schema)
from celeryflow.exceptions import StorageFailure
from celeryflow.persistence import backends, migrate
from celeryflow.persistence.tables import Base
from tests.persistence import helpers

TABLES = {
    "celeryflow_logbooks", "celeryflow_flows", "celeryflow_atoms", "celeryflow_events",
    "celeryflow_jobs", "celeryflow_jobs_trash", "celeryflow_liveness", "celeryflow_identity",
}
HEAD = migrate.head()


def _compare_type(
    context: MigrationContext, inspected: Any, metadata: Any, inspected_type: Any, metadata_type: Any
) -> bool | None:
    # Alembic does not resolve Text().with_variant(..., "mysql", "mariadb") when comparing:
    # it reports LONGTEXT vs Text. The long-text test below checks the real column types.
    if isinstance(inspected_type, mysql.LONGTEXT) and isinstance(metadata_type, Text):
        return False
    return None


def _schema_diff(backend: backends.Backend) -> list[object]:
    with backend.connect() as conn:
        context = MigrationContext.configure(
            conn,
            opts={
                "compare_type": _compare_type,
                "include_name": lambda name, type_, parent: type_ != "table" or name in TABLES,
            },
        )
        return list(compare_metadata(context, Base.metadata))


def test_upgrade_creates_exactly_the_tables_schema(any_db_url: str) -> None:
    backend = backends.fetch(any_db_url, auto_migrate=False)
    assert migrate.current(backend) is None
    backend.upgrade()
    assert migrate.current(backend) == migrate.head() == HEAD
    with backend.connect() as conn:
        names = set(inspect(conn).get_table_names())
    assert names == {*TABLES, migrate.VERSION_TABLE}
    assert _schema_diff(backend) == []


def test_long_text_columns_hold_gigabytes_on_mysql(mariadb_url: str) -> None:
    backend = backends.fetch(mariadb_url)
    backend.upgrade()
    with backend.connect() as conn:
        rows = conn.execute(
            text(
                "SELECT table_name, column_name, data_type FROM information_schema.columns "
                "WHERE table_schema = DATABASE() AND data_type LIKE '%text'"
            )
        ).all()
    assert len(rows) == 21  # 18 logbook columns (0005: atoms.wait_reason; 0006: 5 JSON columns) + 3 in the job tables
    assert {row.data_type for row in rows} == {"longtext"}


def test_upgrade_is_idempotent_and_reversible(any_db_url: str) -> None:
    backend = backends.fetch(any_db_url)
    backend.upgrade()
    backend.upgrade()
    migrate.upgrade(backend)
    helpers.make_flow(backend)
    migrate.downgrade(backend, "base")
    with backend.connect() as conn:
        assert not TABLES & set(inspect(conn).get_table_names())
    migrate.upgrade(backend)
    assert migrate.current(backend) == HEAD
    assert backend.get_logbooks() == []


def test_first_use_creates_the_schema(any_db_url: str) -> None:
    backend = backends.fetch(any_db_url)
    assert backend.get_logbooks() == []
    assert migrate.current(backend) == migrate.head()


@pytest.mark.slow
def test_concurrent_upgrade_from_several_processes(db_url: str) -> None:
    ctx = multiprocessing.get_context("spawn")
    count = 4
    barrier = ctx.Barrier(count)
    results = ctx.Queue()
    procs = [
        ctx.Process(target=helpers.upgrade_in_process, args=(db_url, barrier, results)) for _ in range(count)
    ]
    for proc in procs:
        proc.start()
    outcomes = [results.get(timeout=180) for _ in procs]
    for proc in procs:
        proc.join(timeout=60)
        assert proc.exitcode == 0
    assert outcomes == [("ok", HEAD)] * count
    backend = backends.fetch(db_url, auto_migrate=False)
    with backend.connect() as conn:
        versions = conn.execute(text(f"SELECT version_num FROM {migrate.VERSION_TABLE}")).scalars().all()
    assert versions == [HEAD]
    assert _schema_diff(backend) == []


def test_concurrent_upgrade_from_several_threads(any_db_url: str) -> None:
    # distinct options -> distinct backends (engines, pools) racing in one process
    instances = [backends.fetch(any_db_url, auto_migrate=False, pool_size=i + 1) for i in range(4)]
    if any_db_url.startswith("memory://"):
        instances = [backends.fetch(any_db_url, auto_migrate=False)] * 4  # one database per backend
    errors = helpers.run_threads(len(instances), lambda i: instances[i].upgrade())
    assert errors == []
    assert {migrate.current(b) for b in instances} == {HEAD}


def test_auto_migrate_off_raises_a_clear_error(any_db_url: str) -> None:
    backend = backends.fetch(any_db_url, auto_migrate=False)
    with pytest.raises(StorageFailure, match="celeryflow db upgrade") as caught:
        backend.get_logbooks()
    assert "no celeryflow schema" in str(caught.value)
    backend.upgrade()
    assert backend.get_logbooks() == []


def test_auto_migrate_env_switch(any_db_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(backends.AUTO_MIGRATE_ENV, "0")
    backend = backends.fetch(any_db_url)
    assert backend.auto_migrate is False
    with pytest.raises(StorageFailure, match="CELERYFLOW_AUTO_MIGRATE"):
        backend.validate()
    monkeypatch.setenv(backends.AUTO_MIGRATE_ENV, "1")
    assert backends.fetch(any_db_url).auto_migrate is True


def test_schema_from_a_newer_celeryflow_is_refused(db_url: str) -> None:
    backend = backends.fetch(db_url)
    backend.upgrade()
    with backend.connect() as conn, conn.begin():
        conn.execute(text(f"UPDATE {migrate.VERSION_TABLE} SET version_num = '9999'"))
    for auto in (True, False):
        fresh = backends.fetch(db_url, auto_migrate=auto, echo=False)
        with pytest.raises(StorageFailure, match="newer celeryflow"):
            fresh.get_logbooks()


def test_flow_held_column_migrates_without_losing_flows(db_url: str) -> None:
    """0003 adds (and its downgrade drops) flows.held in place: existing flows, atoms and events stay."""
    from celeryflow import engines, task
    from celeryflow.patterns import linear_flow

    class Two(task.Task):
        def execute(self) -> int:
            return 2

    backend = backends.fetch(db_url)
    backend.upgrade()
    engines.run(linear_flow.Flow("kept").add(Two("a"), Two("b")), backend=db_url)

    def counts() -> tuple[int, int, int]:
        with backend.connect(readonly=True) as conn:
            return tuple(  # type: ignore[return-value]
                conn.execute(text(f"SELECT COUNT(*) FROM {table}")).scalar()
                for table in ("celeryflow_flows", "celeryflow_atoms", "celeryflow_events")
            )

    before = counts()
    assert before[0] == 1 and before[1] == 2
    migrate.downgrade(backend, "0002")
    with backend.connect() as conn:
        assert "held" not in {c["name"] for c in inspect(conn).get_columns("celeryflow_flows")}
    assert counts() == before
    migrate.upgrade(backend)
    assert counts() == before and _schema_diff(backend) == []


def test_claim_token_and_scope_flag_migrate_in_place(db_url: str) -> None:
    """0004 adds atoms.claim_token and flows.scope_retrying (set from the meta of flows mid-retry, exactly)."""
    from celeryflow import engines, task
    from celeryflow.patterns import linear_flow

    class Two(task.Task):
        def execute(self) -> int:
            return 2

    backend = backends.fetch(db_url)
    backend.upgrade()
    engines.run(linear_flow.Flow("kept").add(Two("a")), backend=db_url)
    migrate.downgrade(backend, "0003")
    with backend.connect() as conn:
        assert "claim_token" not in {c["name"] for c in inspect(conn).get_columns("celeryflow_atoms")}
        conn.execute(text(
            "INSERT INTO celeryflow_flows (uuid, name, state, epoch, meta, outstanding, held, progress_at, created_at,"
            " updated_at) VALUES (:uuid, 'f', 'RUNNING', 1, :meta, 0, 0, :now, :now, :now)"
        ), [
            {"uuid": "mid-retry", "meta": '{"retrying": {"r": {"countdown": 0}}}', "now": "2026-01-01 00:00:00"},
            {"uuid": "an-option", "meta": '{"options": {"note": "retrying"}}', "now": "2026-01-01 00:00:00"},
        ])
        conn.commit()
    migrate.upgrade(backend)
    assert _schema_diff(backend) == []
    with backend.connect(readonly=True) as conn:
        flags = dict(conn.execute(text("SELECT uuid, scope_retrying FROM celeryflow_flows")).all())
    assert bool(flags["mid-retry"]) is True and bool(flags["an-option"]) is False
    assert sum(bool(v) for v in flags.values()) == 1


_IN_FLIGHT_META = {
    "options": {"note": "retrying"},  # the user's own: stays
    "owner_tag": "mine",
    "retrying": {"r": {"countdown": 1.5, "plan": {"x": []}}},
    "revert_scope": ["r", "x"],
    "revert_plan": {"x": ["r"], "r": []},
    "revert_failed": True,
    "revert_failures": {"x": {"exception_str": "boom"}},
    "sweep_resends": {"count": 2, "progress_at": "2026-01-01T00:00:05", "by": "sweeper"},
}
_ATOM_META = {
    "duration": 1.25,  # a listener's: stays
    "worker_lost": {"execute": 2, "revert": 1},
    "verdicts": {"3": ["digest", True]},
    "on_failure": ["digest", ["RETRY", 0.0, None]],
}


def _columns(conn: Any, table: str) -> set[str]:
    return {c["name"] for c in inspect(conn).get_columns(table)}


def test_scheduler_state_moves_from_meta_to_typed_columns(db_url: str) -> None:
    """0006: a flow in flight at upgrade time keeps its bookkeeping, in the new columns, and back on downgrade."""
    import json

    backend = backends.fetch(db_url)
    backend.upgrade()
    migrate.downgrade(backend, "0005")
    with backend.connect() as conn:
        assert "retry_scopes" not in _columns(conn, "celeryflow_flows")
        assert "verdicts" not in _columns(conn, "celeryflow_atoms")
        now = "2026-01-01 00:00:05"
        conn.execute(text(
            "INSERT INTO celeryflow_flows (uuid, name, state, epoch, meta, outstanding, held, progress_at, created_at,"
            " updated_at) VALUES (:uuid, 'f', 'RUNNING', 1, :meta, 0, 0, :now, :now, :now)"
        ), [{"uuid": "in-flight", "meta": json.dumps(_IN_FLIGHT_META), "now": now},
            {"uuid": "plain", "meta": '{"options": {"x": "revert_plan"}}', "now": now}])
        conn.execute(text(
            "INSERT INTO celeryflow_atoms (flow_uuid, name, uuid, kind, state, intention, queued, waiting, rwaiting,"
            " attempts, progress, meta) VALUES ('in-flight', :name, :uuid, 'task', 'PENDING', 'EXECUTE', :f, 0, 0, 0,"
            " 0.0, :meta)"
        ), [{"name": "x", "uuid": "atom-x", "meta": json.dumps(_ATOM_META), "f": False},
            {"name": "y", "uuid": "atom-y", "meta": '{"verdicts": "a user value"}', "f": False}])
        conn.commit()
    migrate.upgrade(backend)
    assert _schema_diff(backend) == []
    with backend.connect(readonly=True) as conn:
        flows = {r.uuid: r for r in conn.execute(text("SELECT * FROM celeryflow_flows"))}
        atoms = {r.name: r for r in conn.execute(text("SELECT * FROM celeryflow_atoms"))}
    flow = flows["in-flight"]
    assert json.loads(flow.meta) == {"options": {"note": "retrying"}, "owner_tag": "mine"}
    assert json.loads(flow.retry_scopes) == _IN_FLIGHT_META["retrying"] and bool(flow.scope_retrying)
    assert json.loads(flow.revert_scope) == ["r", "x"]
    assert json.loads(flow.revert_plan) == {"x": ["r"], "r": []}
    assert bool(flow.revert_failed) and flow.resends == 2
    assert str(flow.resend_progress_at).startswith("2026-01-01 00:00:05")
    plain = flows["plain"]
    assert json.loads(plain.meta) == {"options": {"x": "revert_plan"}} and plain.retry_scopes is None
    assert not plain.revert_failed and plain.resends == 0 and not plain.scope_retrying
    x = atoms["x"]
    assert json.loads(x.meta) == {"duration": 1.25}
    assert (x.lost_execute, x.lost_revert) == (2, 1)
    assert json.loads(x.verdicts) == {"3": ["digest", True]}
    assert json.loads(x.on_failure) == ["digest", ["RETRY", 0.0, None]]
    # a user's key of the same name, not in the scheduler's shape, is left alone
    assert json.loads(atoms["y"].meta) == {"verdicts": "a user value"} and atoms["y"].verdicts is None

    migrate.downgrade(backend, "0005")
    with backend.connect(readonly=True) as conn:
        assert "retry_scopes" not in _columns(conn, "celeryflow_flows")
        assert "lost_execute" not in _columns(conn, "celeryflow_atoms")
        metas = dict(conn.execute(text("SELECT uuid, meta FROM celeryflow_flows")).all())
        atom_metas = dict(conn.execute(text("SELECT name, meta FROM celeryflow_atoms")).all())
    back = json.loads(metas["in-flight"])
    assert back["retrying"] == _IN_FLIGHT_META["retrying"] and back["revert_scope"] == ["r", "x"]
    assert back["revert_plan"] == {"x": ["r"], "r": []} and back["revert_failed"] is True
    assert back["sweep_resends"]["count"] == 2 and back["options"] == {"note": "retrying"}
    assert json.loads(metas["plain"]) == {"options": {"x": "revert_plan"}}
    assert json.loads(atom_metas["x"]) == _ATOM_META
    migrate.upgrade(backend)
    assert _schema_diff(backend) == []
