"""``CeleryFlow.submit(..., session=db.session)``: a flow tied to a Flask-SQLAlchemy transaction.

Same database (SQLite file; PostgreSQL schema spelt with another driver, recognised by
the logbook's stored id): the flow is written in the view's transaction; after the
commit it runs, after a rollback nothing is left and nothing ran. Another database:
the flow is written and started only after the commit.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from sqlalchemy.engine import make_url

from celeryflow.contrib.flask import CeleryFlow
from celeryflow.exceptions import NotFound
from celeryflow.persistence import backends
from tests.contrib.test_flask import restore_installed_app  # noqa: F401 (autouse: no leaked app or env)
from tests.deploy.atoms import notes, read_trace

flask_sqlalchemy = pytest.importorskip("flask_sqlalchemy")


def shop(app_db: str, logbook: str) -> tuple[Flask, Any, CeleryFlow, Any]:
    app = Flask("shop")
    app.config.update(SQLALCHEMY_DATABASE_URI=app_db, CELERYFLOW_BACKEND=logbook)
    db = flask_sqlalchemy.SQLAlchemy(app)

    class Order(db.Model):  # type: ignore[name-defined,misc]
        __tablename__ = f"orders_{id(app)}"
        id = db.Column(db.Integer, primary_key=True)
        flow_id = db.Column(db.String(36))

    with app.app_context():
        db.create_all()
    return app, db, CeleryFlow(app), Order


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.services)])
def same_db(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[str, str]:
    """(the app's database URL, the logbook URL): one database, two spellings."""
    if request.param == "sqlite":
        path = tmp_path / "shop.db"
        return f"sqlite:///{path}", f"sqlite:///{path}"
    url: str = request.getfixturevalue("postgres_url")
    return make_url(url).set(drivername="postgresql+psycopg2").render_as_string(hide_password=False), url


def test_same_database_commit_runs_the_flow(same_db: tuple[str, str], tmp_path: Path) -> None:
    app_db, logbook = same_db
    trace = str(tmp_path / "trace.log")
    app, db, flows, order_model = shop(app_db, logbook)
    with app.app_context():
        from celeryflow.contrib.flask_sqlalchemy import same_database

        backends.fetch(logbook).validate()
        assert same_database(backends.fetch(logbook), db.session())
        handle = flows.submit(notes("order", trace, "reserve", "charge"), session=db.session)
        db.session.add(order_model(flow_id=handle.id))
        with pytest.raises(NotFound):  # not committed: other connections do not see it yet
            backends.fetch(logbook).get_flow_details(handle.id)
        db.session.commit()
        handle.wait(timeout=60)
        assert handle.state == "SUCCESS"
        assert [line.split()[:2] for line in read_trace(trace)] == [["execute", "reserve"], ["execute", "charge"]]
        assert db.session.query(order_model).one().flow_id == handle.id


def test_same_database_rollback_leaves_nothing(same_db: tuple[str, str], tmp_path: Path) -> None:
    app_db, logbook = same_db
    trace = str(tmp_path / "trace.log")
    app, db, flows, order_model = shop(app_db, logbook)
    with app.app_context():
        handle = flows.submit(notes("order", trace, "reserve"), session=db.session)
        db.session.add(order_model(flow_id=handle.id))
        db.session.rollback()
        with pytest.raises(NotFound):
            backends.fetch(logbook).get_flow_details(handle.id)
        db.session.commit()  # a later commit of the same session sends nothing
        assert db.session.query(order_model).count() == 0
    assert read_trace(trace) == []


def test_another_database_is_written_after_the_commit(tmp_path: Path) -> None:
    trace = str(tmp_path / "trace.log")
    logbook = f"sqlite:///{tmp_path / 'logbook.db'}"
    app, db, flows, order_model = shop(f"sqlite:///{tmp_path / 'shop.db'}", logbook)
    with app.app_context():
        handle = flows.submit(notes("order", trace, "reserve"), session=db.session)
        with pytest.raises(NotFound):
            backends.fetch(logbook).get_flow_details(handle.id)
        db.session.add(order_model(flow_id=handle.id))
        db.session.commit()
        handle.wait(timeout=60)
        assert handle.state == "SUCCESS"
        rolled = flows.submit(notes("order2", trace, "never"), session=db.session)
        db.session.rollback()
        with pytest.raises(NotFound):
            backends.fetch(logbook).get_flow_details(rolled.id)
    assert [line.split()[:2] for line in read_trace(trace)] == [["execute", "reserve"]]
