"""The TaskFlow-style logbook API: models round-trip through every database; list and prune."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from celeryflow import states
from celeryflow.exceptions import NotFound, SerializationError
from celeryflow.persistence import backends, models
from celeryflow.persistence.tables import AtomRow, EventRow, FlowRow, LogBookRow
from celeryflow.types.failure import Failure
from tests.persistence import helpers

HOUR = dt.timedelta(hours=1)


def _failure(message: str) -> Failure:
    try:
        raise RuntimeError(message)
    except RuntimeError:
        return Failure()


def _book() -> tuple[models.LogBook, models.FlowDetail]:
    book = models.LogBook("orders")
    book.meta = {"tenant": "acme"}
    fd = models.FlowDetail("boot-vm")
    fd.meta = {"engine": {"max_workers": 4}}
    fd.store = {"size": 10, "when": dt.datetime(2024, 1, 2, 3, 4, 5)}
    task = models.TaskDetail("create_volume")
    task.put(states.SUCCESS, {"volume": "vol-1", "bytes": b"\x00\xff"})
    task.version = "1.2"
    task.meta = {"progress": 1.0}
    failed = models.TaskDetail("attach")
    failed.put(states.FAILURE, _failure("no capacity"))
    failed.intention = states.REVERT
    retry = models.RetryDetail("times")
    retry.put(states.SUCCESS, 1)
    retry.results[-1][1]["attach"] = _failure("no capacity")
    retry.put(states.SUCCESS, 2)
    for ad in (task, failed, retry):
        fd.add(ad)
    book.add(fd)
    return book, fd


def test_logbook_round_trip(any_db_url: str) -> None:
    backend = backends.fetch(any_db_url)
    book, fd = _book()
    saved = backend.save_logbook(book)
    for loaded in (saved, backend.get_logbook(book.uuid), backend.get_logbooks()[0]):
        assert (loaded.uuid, loaded.name, loaded.meta) == (book.uuid, "orders", {"tenant": "acme"})
        assert loaded.created_at is not None and loaded.updated_at is not None
        assert [f.uuid for f in loaded] == [fd.uuid] and fd.uuid in loaded
        flow = loaded[fd.uuid]
        assert (flow.name, flow.state, flow.epoch, flow.logbook_uuid) == (
            "boot-vm",
            states.PENDING,
            0,
            book.uuid,
        )
        assert flow.meta == {"engine": {"max_workers": 4}}
        assert flow.store == {"size": 10, "when": dt.datetime(2024, 1, 2, 3, 4, 5)}
        assert sorted(ad.name for ad in flow) == ["attach", "create_volume", "times"]
        task = flow.find_by_name("create_volume")
        assert isinstance(task, models.TaskDetail)
        assert (task.state, task.results, task.version) == (
            states.SUCCESS,
            {"volume": "vol-1", "bytes": b"\x00\xff"},
            "1.2",
        )
        assert task.meta == {"progress": 1.0} and task.failure is None
        failed = flow.find_by_name("attach")
        assert failed is not None and failed.failure is not None
        assert (failed.state, failed.intention) == (states.FAILURE, states.REVERT)
        assert failed.failure.check(RuntimeError) is RuntimeError
        assert failed.failure.exception_str == "no capacity"
        retry = flow.find_by_name("times")
        assert isinstance(retry, models.RetryDetail)
        assert [value for value, _ in retry.results] == [1, 2]
        assert retry.results[0][1]["attach"].exception_str == "no capacity"
        assert retry.last_results == 2 and retry.last_failures == {}
        assert flow.find(task.uuid) is task
    assert backend.get_flow_details(fd.uuid, lazy=True).find_by_name("times") is None
    assert len(backend.get_logbook(book.uuid, lazy=True)) == 0


def test_updates(any_db_url: str) -> None:
    backend = backends.fetch(any_db_url)
    book, fd = _book()
    backend.save_logbook(book)
    fd.state = states.RUNNING
    fd.meta["note"] = "resumed"
    extra = models.TaskDetail("extra")
    fd.add(extra)
    updated = backend.update_flow_details(fd)
    assert (updated.state, updated.meta["note"], len(updated)) == (states.RUNNING, "resumed", 4)
    extra.put(states.SUCCESS, [1, 2, 3])
    assert backend.update_atom_details(extra).results == [1, 2, 3]
    assert backend.get_atom_details(extra.uuid).results == [1, 2, 3]
    # engine-owned columns are not wiped by a model that never read them
    bare = models.FlowDetail("boot-vm", fd.uuid)
    bare.state = states.SUCCESS
    after = backend.update_flow_details(bare)
    assert after.store == fd.store and after.finished_at is not None
    # saving the book again updates in place
    book.name = "renamed"
    assert backend.save_logbook(book).name == "renamed"
    assert len(backend.get_logbooks()) == 1


def test_missing_things_raise_not_found(any_db_url: str) -> None:
    backend = backends.fetch(any_db_url)
    with pytest.raises(NotFound):
        backend.get_logbook("nope")
    with pytest.raises(NotFound):
        backend.get_flow_details("nope")
    with pytest.raises(NotFound):
        backend.get_atom_details("nope")
    with pytest.raises(NotFound):
        backend.destroy_logbook("nope")
    with pytest.raises(NotFound, match="save its logbook first"):
        backend.update_flow_details(models.FlowDetail("x"))
    with pytest.raises(NotFound):
        backend.update_atom_details(models.TaskDetail("x"))


def test_destroy_and_clear_all(any_db_url: str) -> None:
    backend = backends.fetch(any_db_url)
    one = helpers.make_flow(backend, "one", atoms=2)
    two = helpers.make_flow(backend, "two", atoms=2)
    _add_events(backend, one.uuid, 3)
    backend.destroy_logbook(one.logbook_uuid or "")
    assert _counts(backend) == {"books": 1, "flows": 1, "atoms": 2, "events": 0}
    with backend.get_connection() as conn:
        conn.clear_all()
    assert _counts(backend) == {"books": 0, "flows": 0, "atoms": 0, "events": 0}
    with pytest.raises(NotFound):
        backend.get_flow_details(two.uuid)


def test_values_over_a_mebibyte(any_db_url: str) -> None:
    backend = backends.fetch(any_db_url)
    book, fd = _book()
    big = "é" * (1 << 20)  # 2 MiB of UTF-8: beyond MySQL's TEXT and MEDIUMTEXT-sized surprises
    fd.store = {"blob": big}
    task = fd.find_by_name("create_volume")
    assert task is not None
    task.results = {"blob": big, "emoji": "🚀"}
    backend.save_logbook(book)
    loaded = backend.get_flow_details(fd.uuid)
    assert loaded.store == {"blob": big}
    assert loaded.find_by_name("create_volume").results == {"blob": big, "emoji": "🚀"}  # type: ignore[union-attr]


def test_unserializable_values_name_the_culprit(any_db_url: str) -> None:
    backend = backends.fetch(any_db_url)
    book, fd = _book()
    task = fd.find_by_name("create_volume")
    assert task is not None
    task.results = {"handle": object()}
    with pytest.raises(SerializationError, match="create_volume"):
        backend.save_logbook(book)
    assert backend.get_logbooks() == []  # nothing half-written


def test_list_flows(any_db_url: str) -> None:
    backend = backends.fetch(any_db_url)
    old_done = helpers.make_flow(backend, "old-done", states.SUCCESS)
    helpers.age_flow(backend, old_done.uuid, 3 * HOUR)
    running = helpers.make_flow(backend, "running", states.RUNNING)
    new_done = helpers.make_flow(backend, "new-done", states.SUCCESS)
    assert {f.name for f in backend.list_flows()} == {"old-done", "running", "new-done"}
    assert backend.list_flows()[-1].name == "old-done"  # newest first
    assert {f.name for f in backend.list_flows(state=states.SUCCESS)} == {"old-done", "new-done"}
    assert {f.name for f in backend.list_flows(state=[states.RUNNING])} == {"running"}
    assert [f.name for f in backend.list_flows(older_than=HOUR)] == ["old-done"]
    assert {f.name for f in backend.list_flows(newer_than=HOUR)} == {"running", "new-done"}
    assert len(backend.list_flows(limit=2)) == 2
    assert len(backend.list_flows(lazy=False)[0]) == 1 and len(backend.list_flows()[0]) == 0
    assert new_done.uuid in {f.uuid for f in backend.list_flows(limit=None)} and running


def test_prune_deletes_old_finished_flows_with_their_atoms_and_events(any_db_url: str) -> None:
    backend = backends.fetch(any_db_url)
    doomed = [
        helpers.make_flow(backend, f"done-{i}", states.FAILURE if i % 2 else states.SUCCESS, atoms=2)
        for i in range(5)
    ]
    for fd in doomed:
        helpers.age_flow(backend, fd.uuid, 2 * HOUR)
        _add_events(backend, fd.uuid, 3)
    stuck = helpers.make_flow(backend, "old-running", states.RUNNING)
    helpers.age_flow(backend, stuck.uuid, 2 * HOUR)
    fresh = helpers.make_flow(backend, "fresh-done", states.SUCCESS)
    _add_events(backend, fresh.uuid, 1)

    assert backend.prune(HOUR, batch_size=2) == 5  # three batches: 2 + 2 + 1
    assert {f.name for f in backend.list_flows()} == {"old-running", "fresh-done"}
    assert _counts(backend) == {"books": 2, "flows": 2, "atoms": 2, "events": 1}
    assert backend.prune(HOUR) == 0
    assert backend.prune(HOUR, states=[states.RUNNING]) == 1


def _add_events(backend: backends.Backend, flow_uuid: str, count: int) -> None:
    def add(session: Session) -> None:
        for index in range(count):
            session.add(EventRow(flow_uuid=flow_uuid, kind="flow", new_state=f"S{index}"))

    backend.run(add)


def _counts(backend: backends.Backend) -> dict[str, int]:
    tables = {"books": LogBookRow, "flows": FlowRow, "atoms": AtomRow, "events": EventRow}
    return backend.run(
        lambda s: {
            name: s.scalar(select(func.count()).select_from(table)) or 0 for name, table in tables.items()
        }
    )


# ------------------------------------------------------------------ models, no database


def test_models_behave_like_taskflows() -> None:
    book = models.LogBook("b")
    fd = models.FlowDetail("f")
    book.add(fd)
    assert fd.logbook_uuid == book.uuid and book.find(fd.uuid) is fd and book.find("x") is None
    assert len(book) == 1 and list(book) == [fd] and book[fd.uuid] is fd
    td = models.TaskDetail("t")
    fd.add(td)
    assert (td.state, td.intention, td.results) == (states.PENDING, states.EXECUTE, None)
    td.put(states.REVERTED, "undone")
    assert td.revert_results == "undone" and td.results is None
    td.put(states.REVERT_FAILURE, _failure("cannot undo"))
    assert td.revert_failure is not None and td.revert_failure.exception_str == "cannot undo"
    td.reset(states.PENDING)
    assert (td.revert_failure, td.revert_results, td.state) == (None, None, states.PENDING)
    rd = models.RetryDetail("r")
    assert rd.last_results is None and rd.last_failures == {}
    rd.put(states.SUCCESS, "a")
    rd.put(states.FAILURE, _failure("x"))
    assert rd.results == [("a", {})] and rd.failure is not None
    rd.reset(states.PENDING)
    assert rd.results == []
    assert (
        models.AtomDetail.from_row(
            AtomRow(flow_uuid="f", name="r", uuid="u", kind="retry", state="PENDING", intention="EXECUTE")
        ).__class__
        is models.RetryDetail
    )
    assert "FlowDetail(name='f'" in repr(fd) and "TaskDetail(name='t'" in repr(td)
