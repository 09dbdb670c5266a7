"""#13 item 4: TaskFlow's remaining public names (TargetedFlow, pformat, book=, Storage properties,
save_factory_details, REVERT_RESULT, backend() context managers, celeryflow.logging, exceptions)."""

from __future__ import annotations

import logging
import re
from pathlib import Path

import pytest

from celeryflow import engines, exceptions, task
from celeryflow import logging as cf_logging
from celeryflow.jobs import backends as job_backends
from celeryflow.patterns import graph_flow
from celeryflow.persistence import backends, models
from tests.porting.atoms import AddOne, Echo, Hi, make_hello

#: every public name of TaskFlow 6.5's ``taskflow.exceptions`` (its module imports left out)
TASKFLOW_EXCEPTIONS = [
    "AmbiguousDependency", "CompilationFailure", "ConductorFailure", "DependencyFailure", "DisallowedAccess",
    "Duplicate", "Empty", "ExecutionFailure", "IncompatibleVersion", "InvalidFormat", "InvalidState",
    "JobFailure", "MissingDependencies", "MultipleChoices", "NotFound", "NotImplementedError", "RequestTimeout",
    "StorageFailure", "TaskFlowException", "UnclaimableJob", "WrappedFailure", "raise_with_cause",
]


@pytest.fixture
def logbook(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'logbook.db'}"


def test_every_taskflow_exception_name_exists() -> None:
    missing = [name for name in TASKFLOW_EXCEPTIONS if not hasattr(exceptions, name)]
    assert missing == []
    for name in TASKFLOW_EXCEPTIONS:
        obj = getattr(exceptions, name)
        if isinstance(obj, type) and name not in ("NotImplementedError",):
            assert issubclass(obj, exceptions.CeleryflowError), name
    assert issubclass(exceptions.RequestTimeout, exceptions.ExecutionFailure)
    assert exceptions.DisallowedAccess("no", state="RUNNING").state == "RUNNING"
    assert issubclass(exceptions.NotImplementedError, NotImplementedError)


def test_the_list_matches_the_installed_taskflow() -> None:
    tf_exc = pytest.importorskip("taskflow.exceptions")
    import types

    public = sorted(n for n, v in vars(tf_exc).items() if not n.startswith("_") and not isinstance(v, types.ModuleType))
    assert sorted(TASKFLOW_EXCEPTIONS) == public


def test_pformat_and_raise_with_cause() -> None:
    with pytest.raises(exceptions.StorageFailure) as caught:
        try:
            raise KeyError("k")
        except KeyError:
            exceptions.raise_with_cause(exceptions.StorageFailure, "could not read")
    text = caught.value.pformat()
    assert text.splitlines()[0] == "could not read" and "KeyError: 'k'" in text
    outer = exceptions.NotFound("outer", cause=exceptions.StorageFailure("inner"))
    assert outer.pformat(show_root_class=True).splitlines() == ["NotFound: outer", "  StorageFailure: inner"]
    with pytest.raises(ValueError):
        exceptions.raise_with_cause(ValueError, "not ours")  # type: ignore[arg-type]


def test_celeryflow_logging(caplog: pytest.LogCaptureFixture) -> None:
    assert cf_logging.BLATHER == cf_logging.TRACE == 5
    assert cf_logging.WARN == logging.WARNING and cf_logging.DEBUG == logging.DEBUG
    log = cf_logging.getLogger("porting.blather")
    with caplog.at_level(cf_logging.BLATHER, logger="porting.blather"):
        log.trace("very %s", "chatty")
        log.warn("old spelling")
    assert [(r.levelno, r.getMessage()) for r in caplog.records] == [(5, "very chatty"), (30, "old spelling")]


def test_revert_keyword_names() -> None:
    assert task.REVERT_RESULT == "result" and task.REVERT_FLOW_FAILURES == "flow_failures"


def test_targeted_flow_runs_the_target_and_what_it_needs(logbook: str) -> None:
    hi, plus, other = Hi(), AddOne(), Echo(inject={"value": 1})
    flow = graph_flow.TargetedFlow("targeted").add(hi, plus, other)
    flow.set_target(plus)
    assert [item.name for item in flow] == [hi.name, plus.name] and len(flow) == 2
    assert engines.run(flow, backend=logbook) == {"hi": "hi", "plus_one": 3}
    flow.set_target(hi)
    assert engines.run(flow, backend=logbook) == {"hi": "hi"}
    flow.reset_target()
    assert engines.run(flow, backend=logbook) == {"hi": "hi", "plus_one": 3, "echoed": 1}
    with pytest.raises(ValueError, match="not found"):
        flow.set_target(Hi(name="stranger"))


def test_book_is_filled_and_pformat_as_taskflow(db_url: str) -> None:
    book = models.LogBook("my-book")
    engine = engines.load(make_hello(), backend=db_url, book=book)
    engine.run()
    [fd] = list(book)
    assert fd.uuid == engine.flow_uuid and fd.state == "SUCCESS" and len(fd) == 2
    text = book.pformat()
    lines = text.splitlines()
    assert lines[0] == "LogBook: 'my-book'"
    assert lines[1] == f" - uuid = {book.uuid}"
    assert re.match(r" - created_at = \d{4}-\d\d-\d\dT", lines[2])
    assert f"  - uuid = {fd.uuid}" in lines and "  - state = SUCCESS" in lines
    assert "  TaskDetail: 'tests.porting.atoms.Hi'" in lines and "   - results = hi" in lines
    assert "   - failure = False" in lines
    assert "options" not in text  # the engine's own metadata is not shown
    stored = backends.fetch(db_url).get_logbook(book.uuid)
    assert stored.pformat() == text.replace(f"updated_at = {book.updated_at.isoformat()}",  # type: ignore[union-attr]
                                            f"updated_at = {stored.updated_at.isoformat()}")  # type: ignore[union-attr]
    fd.meta["progress"] = 0.5
    assert "+ progress = 50.00%" in fd.pformat()


def test_storage_properties(logbook: str) -> None:
    engine = engines.load(make_hello(), backend=logbook)
    engine.run()
    storage = engine.storage
    assert storage.flow_name == "hello" and storage.flow_uuid == engine.flow_uuid
    assert storage.backend is engine.backend
    assert isinstance(storage.flow_meta, dict)
    with storage.lock.read_lock(), storage.lock.write_lock():
        pass
    name = "tests.porting.atoms.Hi"
    assert storage.get_atom_uuid(name) == engine.flow_detail.find_by_name(name).uuid
    assert storage.get_execute_result(name) == "hi" == storage.get(name)
    assert storage.get_revert_result(name) is None
    assert storage.has_failures() is False and storage.get_failures() == {}
    assert storage.get_retry_histories() == []
    storage.update_atom_metadata(name, {"k": 1})
    storage.update_flow_metadata({"note": "x"})
    assert storage.get_atom_metadata(name)["k"] == 1 and storage.flow_meta["note"] == "x"
    assert engine.flow_detail.meta["note"] == "x"
    with pytest.raises(exceptions.NotFound):
        storage.update_atom_metadata("no-such-atom", {"k": 1})


def test_save_factory_details_then_load_from_detail(db_url: str) -> None:
    backend = backends.fetch(db_url)
    book = models.LogBook("factories")
    fd = models.FlowDetail("from-factory")
    book.add(fd)
    with backend.get_connection() as conn:
        conn.save_logbook(book)
    engines.save_factory_details(fd, make_hello, [], {"boom": False}, backend=backend)
    stored = backend.get_flow_details(fd.uuid)
    assert stored.meta["factory"] == {"name": "tests.porting.atoms:make_hello", "args": [],
                                      "kwargs": {"boom": False}}
    engine = engines.load_from_detail(fd, backend=backend)
    engine.run()
    assert engine.flow_uuid == fd.uuid
    assert engine.storage.fetch_all() == {"hi": "hi", "plus_one": 3}
    assert backend.get_flow_details(fd.uuid).state == "SUCCESS"
    with pytest.raises(exceptions.NotRegistered):
        engines.save_factory_details(models.FlowDetail("x"), lambda: None, [], {})


def test_save_factory_details_accepts_taskflows_dotted_name() -> None:
    fd = models.FlowDetail("named")
    engines.save_factory_details(fd, "tests.porting.atoms.make_hello", None, None)
    assert fd.meta["factory"]["name"] == "tests.porting.atoms:make_hello"


def test_jobboard_backend_context_manager(tmp_path: Path) -> None:
    conf = {"board": "sql", "url": f"sqlite:///{tmp_path / 'jobs.db'}"}
    with job_backends.backend("porting-board", conf) as board:
        assert board.connected
        board.post("a-job", details={"k": 1})
        assert board.job_count == 1
    assert not board.connected


def test_persistence_backend_context_manager(logbook: str) -> None:
    with backends.backend({"connection": logbook}) as backend:
        backend.validate()
    assert not backend.closed  # shared by the process: other engines may use it
