"""The plugin's private logbooks (SQLite, PostgreSQL schema, MariaDB database) and its fixtures' isolation."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.pool import NullPool

from celeryflow import states
from celeryflow.exceptions import ConfigurationError
from celeryflow.install import installed_app
from celeryflow.persistence import backends
from celeryflow.runtime.embedded import is_embedded
from celeryflow.testing.databases import private_logbook
from tests.fixtures_db import MARIADB_BASE, POSTGRES_BASE
from tests.testing import flows


def _flows_in(url: str) -> int:
    backend = backends.fetch(url)
    return int(backend.run(lambda s: s.execute(text("SELECT COUNT(*) FROM celeryflow_flows")).scalar()))


def _run_one(url: str) -> None:
    from celeryflow.testing.runner import FlowRunner

    outcome = FlowRunner(url).run(flows.shop, {"ledger": flows.new_ledger(), "item": "x", "amount": 1})
    assert outcome.state == states.SUCCESS


def test_sqlite_by_default(tmp_path: Path) -> None:
    with private_logbook(None, tmp_path) as url:
        assert url == f"sqlite:///{tmp_path / 'logbook.db'}"
        _run_one(url)
        assert _flows_in(url) == 1


@pytest.mark.parametrize("server", [
    pytest.param(POSTGRES_BASE.replace("+psycopg", ""), id="postgresql", marks=pytest.mark.services),
    pytest.param(MARIADB_BASE, id="mariadb", marks=pytest.mark.services),
])
def test_a_private_schema_or_database_per_test(server: str, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    request.getfixturevalue("postgres_available" if server.startswith("postgresql") else "mariadb_available")
    with private_logbook(server, tmp_path) as first, private_logbook(server, tmp_path) as second:
        assert first != second
        _run_one(first)
        assert (_flows_in(first), _flows_in(second)) == (1, 0)  # nothing shared
    # dropped after
    admin = create_engine(server.replace("postgresql://", "postgresql+psycopg://"), poolclass=NullPool)
    with admin.connect() as conn:
        if server.startswith("postgresql"):
            name = first.rsplit("search_path%3D", 1)[-1]
            found = conn.execute(text("SELECT 1 FROM information_schema.schemata WHERE schema_name = :n"),
                                 {"n": name}).first()
        else:
            name = first.rsplit("/", 1)[-1]
            found = conn.execute(text("SELECT 1 FROM information_schema.schemata WHERE schema_name = :n"),
                                 {"n": name}).first()
    admin.dispose()
    assert found is None


def test_a_server_kind_without_a_private_variant(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="give a postgresql:// or mysql"), \
            private_logbook("mssql+pyodbc://host/db", tmp_path):
        pass


def test_the_worker_runner_is_on_the_users_app(celeryflow_worker_runner: Any, celeryflow_app: Any,
                                               celeryflow_logbook_url: str) -> None:
    runner = celeryflow_worker_runner
    assert not runner.embedded and runner.app is celeryflow_app and installed_app() is celeryflow_app
    assert celeryflow_app.conf.celeryflow_backend == celeryflow_logbook_url
    assert runner.run(flows.shop, {"ledger": flows.new_ledger(), "item": "y", "amount": 2}).state == states.SUCCESS


def test_the_embedded_runner(celeryflow_runner: Any, celeryflow_embedded_app: Any) -> None:
    assert celeryflow_runner.embedded and is_embedded(celeryflow_embedded_app)
    assert celeryflow_runner.app is celeryflow_embedded_app
    assert "embedded" in repr(celeryflow_runner)


def test_the_outcome_of_a_flow_run_elsewhere(celeryflow_runner: Any) -> None:
    from celeryflow import engines

    engine = engines.load(flows.shop(), store={"ledger": flows.new_ledger(), "item": "z", "amount": 3},
                          app=celeryflow_runner.app, backend=celeryflow_runner.backend)
    engine.run(timeout=60)
    outcome = celeryflow_runner.outcome(engine.flow_uuid)
    assert outcome.state == states.SUCCESS and outcome.executed == ["reserve", "charge", "ship"]
    assert outcome.results["parcel"] == "parcel-pay-seat-z"
