"""#13 item 3: TaskFlow's ``dir://`` / ``file://`` logbook URLs, and TaskFlow's NotFound where callers catch it."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from celeryflow import engines, exceptions
from celeryflow.jobs import backends as job_backends
from celeryflow.persistence import backends, models
from celeryflow.persistence.backends.impl_dir import DB_FILENAME
from tests.porting.atoms import make_hello


@pytest.mark.parametrize("form", ["dir:///{}", "file:///{}", "file:////{}", "conf"])
def test_dir_urls_are_a_logbook_in_that_directory(tmp_path: Path, form: str) -> None:
    root = tmp_path / "flows"
    conf: object = {"connection": "dir://", "path": str(root), "max_cache_size": 16} if form == "conf" else \
        form.format(str(root).lstrip("/"))
    with backends.backend(conf) as backend:  # type: ignore[arg-type]
        assert backend.url == f"sqlite:///{root / DB_FILENAME}"
        book = models.LogBook("dir-book")
        results = engines.run(make_hello(), backend=backend, book=book)
    assert results == {"hi": "hi", "plus_one": 3}
    assert (root / DB_FILENAME).is_file()
    again = backends.fetch(f"dir://{root}")
    assert again is backend
    assert [fd.state for fd in again.get_logbook(book.uuid)] == ["SUCCESS"]


def test_dir_logbook_survives_the_process(tmp_path: Path) -> None:
    """What a second run of a TaskFlow script relies on: the first run's logbook is there."""
    root = tmp_path / "persisting"
    script = textwrap.dedent(f"""
        from celeryflow import engines
        from celeryflow.persistence import backends, models
        from tests.porting.atoms import make_hello
        with backends.backend({{"connection": "file:///{root}"}}) as be:
            books = be.get_logbooks()
            if not books:
                book = models.LogBook("persisted")
                engines.run(make_hello(), backend=be, book=book)
                print("first", book.uuid)
            else:
                print("second", books[0].name, [fd.state for fd in books[0]])
    """)
    cwd = Path(__file__).resolve().parents[2]
    first = subprocess.run([sys.executable, "-c", script], cwd=cwd, capture_output=True, text=True, timeout=120)
    assert first.returncode == 0, first.stderr
    assert first.stdout.startswith("first ")
    second = subprocess.run([sys.executable, "-c", script], cwd=cwd, capture_output=True, text=True, timeout=120)
    assert second.returncode == 0, second.stderr
    assert second.stdout.strip() == "second persisted ['SUCCESS']"


def test_dir_url_errors_say_what_to_do(tmp_path: Path) -> None:
    with pytest.raises(exceptions.ConfigurationError, match="names no directory"):
        backends.fetch("dir://")
    a_file = tmp_path / "logbook.db"
    a_file.write_text("")
    with pytest.raises(exceptions.ConfigurationError, match="is a file"):
        backends.fetch(f"dir://{a_file}")


def test_unknown_backends_and_boards_are_not_found(tmp_path: Path) -> None:
    # TaskFlow raises NotFound for a backend or board it has no driver for; scripts catch it
    with pytest.raises(exceptions.NotFound):
        backends.fetch("zookeeper://127.0.0.1/flows")
    with pytest.raises(exceptions.StorageFailure):
        backends.fetch("zookeeper://127.0.0.1/flows")
    with pytest.raises(exceptions.NotFound):
        job_backends.fetch("board", {"board": "zookeeper"})


def test_missing_book_and_flow_detail_raise_not_found(db_url: str) -> None:
    backend = backends.fetch(db_url)
    with backend.get_connection() as conn:
        for call in (lambda: conn.get_logbook("no-such-book"), lambda: conn.get_flow_details("no-such-flow"),
                     lambda: conn.get_atom_details("no-such-atom"), lambda: conn.destroy_logbook("no-such-book"),
                     lambda: conn.update_flow_details(models.FlowDetail("never-saved"))):
            with pytest.raises(exceptions.NotFound):
                call()
    with pytest.raises(exceptions.NotFound):
        engines.load_from_detail("no-such-flow", backend=db_url)
