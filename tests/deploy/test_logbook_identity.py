"""#12 items 2 and 3: a logbook is known by the id stored in it, not by its URL.

* Every spelling of one PostgreSQL database (``postgresql://``, ``postgresql+psycopg://``,
  ``postgresql+psycopg2://``) is the same logbook: a worker configured with one runs the
  flows a submitter sends with another.
* The key in messages is that stored id: nothing derived from the URL or its password.
* ``postgresql://`` with only psycopg2 installed works (SQLAlchemy's default driver);
  psycopg 3 is preferred when present.
"""

from __future__ import annotations

import hashlib
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from sqlalchemy.engine import make_url

import celeryflow
from celeryflow.persistence import backends
from celeryflow.persistence.backends.impl_sqlalchemy import normalize_url
from celeryflow.runtime import backends as backend_keys
from tests.deploy.atoms import notes, read_trace
from tests.deploy.conftest import deployment, start_worker
from tests.support.procs import ProcessGroup

pytestmark = pytest.mark.services


def spelt(url: str, driver: str) -> str:
    return make_url(url).set(drivername=driver).render_as_string(hide_password=False)


def test_every_spelling_of_one_database_has_one_id(postgres_url: str, sqlite_url: str) -> None:
    opened = [backends.fetch(spelt(postgres_url, d)) for d in ("postgresql", "postgresql+psycopg",
                                                                 "postgresql+psycopg2")]
    try:
        assert [b.engine.dialect.driver for b in opened] == ["psycopg", "psycopg", "psycopg2"]
        ids = {backend_keys.key_of(b) for b in opened}
        assert len(ids) == 1
        other = backends.fetch(sqlite_url)
        assert backend_keys.key_of(other) not in ids  # another database, another id
    finally:
        for backend in opened:
            backend.close()


def test_the_message_key_is_not_derived_from_the_url(postgres_url: str) -> None:
    with_password = make_url(postgres_url).set(password="s3cret").render_as_string(hide_password=False)
    backend = backends.fetch(postgres_url)
    key = backend_keys.key_of(backend)
    assert key == backend.logbook_id
    for text in (postgres_url, with_password):
        digest = hashlib.sha1(text.encode()).hexdigest()
        assert key not in digest and digest[:12] not in key
        assert "s3cret" not in key
    # a fresh process reads the same id from the database (it is stored, not computed)
    code = f"from celeryflow.persistence import backends; print(backends.fetch({postgres_url!r}).logbook_id)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == key


def test_postgresql_url_prefers_psycopg3_and_falls_back_to_psycopg2(postgres_url: str, tmp_path: Path) -> None:
    assert normalize_url("postgresql://u@h/db").get_driver_name() == "psycopg"
    # A process where psycopg 3 cannot be imported: postgresql:// uses psycopg2 and works.
    script = tmp_path / "only_psycopg2.py"
    script.write_text(textwrap.dedent(f"""
        import sys

        class NoPsycopg3:
            def find_spec(self, name, path=None, target=None):
                if name == "psycopg" or name.startswith("psycopg."):
                    raise ModuleNotFoundError(f"No module named {{name!r}}")
                return None

        sys.meta_path.insert(0, NoPsycopg3())
        from celeryflow.persistence import backends
        backend = backends.fetch({postgres_url!r})
        book = backend.get_logbooks()
        print(backend.engine.dialect.driver, backend.logbook_id, len(list(book)))
    """))
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    driver, logbook_id, _ = out.stdout.split()
    assert driver == "psycopg2"
    assert logbook_id == backends.fetch(postgres_url).logbook_id


def test_worker_and_submitter_spelling_the_database_differently_share_flows(
    postgres_url: str, tmp_path: Path
) -> None:
    trace = str(tmp_path / "trace.log")
    worker_url = spelt(postgres_url, "postgresql+psycopg2")
    with deployment("spelling", worker_url) as dep, ProcessGroup(tmp_path) as group:
        start_worker(group, dep, "worker")
        handle = celeryflow.submit(notes("spelt", trace, "a", "b"), app=dep.app,
                                   backend=spelt(postgres_url, "postgresql+psycopg"))
        handle.wait(timeout=60)
        assert handle.state == "SUCCESS"
        assert [line.split()[:2] for line in read_trace(trace)] == [["execute", "a"], ["execute", "b"]]
        assert "does not know the logbook" not in group.output("worker")
        backends.close_all(worker_url)
