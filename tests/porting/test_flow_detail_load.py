"""#13 item 7: ``engines.load(flow, flow_detail=fd)`` runs ``flow`` into a detail the caller made."""

from __future__ import annotations

import pytest

from celeryflow import engines
from celeryflow.persistence import backends, models
from tests.porting.atoms import make_hello


def _saved_detail(db_url: str, name: str = "my-detail") -> tuple[models.LogBook, models.FlowDetail]:
    book = models.LogBook("caller-book")
    fd = models.FlowDetail(name)
    fd.meta["owner"] = "caller"
    book.add(fd)
    with backends.fetch(db_url).get_connection() as conn:
        conn.save_logbook(book)
    return book, fd


def test_flow_runs_into_a_saved_detail(db_url: str) -> None:
    book, fd = _saved_detail(db_url)
    engine = engines.load(make_hello(), flow_detail=fd, backend=db_url, store={"extra": 1})
    engine.run()
    assert engine.flow_uuid == fd.uuid
    assert engine.storage.fetch_all() == {"extra": 1, "hi": "hi", "plus_one": 3}
    stored = backends.fetch(db_url).get_logbook(book.uuid)
    [detail] = list(stored)
    assert detail.uuid == fd.uuid and detail.name == "my-detail" and detail.state == "SUCCESS"
    assert detail.meta["owner"] == "caller"  # the caller's metadata is kept
    assert sorted(ad.name for ad in detail) == ["tests.porting.atoms.AddOne", "tests.porting.atoms.Hi"]
    assert engine.storage.flow_name == "my-detail"


def test_a_detail_never_saved_is_created(db_url: str) -> None:
    fd = models.FlowDetail("unsaved")
    engine = engines.load(make_hello(), flow_detail=fd, backend=db_url)
    engine.run()
    assert backends.fetch(db_url).get_flow_details(fd.uuid).state == "SUCCESS"


def test_a_detail_that_ran_is_resumed_not_replaced(db_url: str) -> None:
    _, fd = _saved_detail(db_url)
    first = engines.load(make_hello(boom=True), flow_detail=fd, backend=db_url)
    with pytest.raises(ValueError):
        first.run()
    assert backends.fetch(db_url).get_flow_details(fd.uuid).state == "REVERTED"
    again = engines.load(make_hello(boom=True), flow_detail=fd, backend=db_url)
    assert again.flow_uuid == fd.uuid
    with pytest.raises(ValueError):
        again.run()  # the stored flow (a REVERTED flow re-runs from scratch)
    detail = backends.fetch(db_url).get_flow_details(fd.uuid)
    assert detail.state == "REVERTED" and len(detail) == 2


def test_the_callers_book_argument_with_a_detail(db_url: str) -> None:
    book, fd = _saved_detail(db_url)
    engine = engines.load(make_hello(), flow_detail=fd, book=book, backend=db_url)
    engine.run()
    assert book.find(fd.uuid) is not None and book.find(fd.uuid).state == "SUCCESS"  # type: ignore[union-attr]


def test_the_callers_detail_objects_are_kept_current_as_taskflow_keeps_them(db_url: str) -> None:
    """TaskFlow's resume_from_backend: a suspended flow resumed from a re-read detail; both objects show the end."""
    from celeryflow import states, task
    from celeryflow.patterns import linear_flow

    holder: dict[str, engines.CeleryEngine] = {}

    class Interrupt(task.Task):
        def execute(self) -> None:
            holder["engine"].suspend()

    def flow() -> linear_flow.Flow:
        from tests.porting.atoms import Hi

        return linear_flow.Flow("resumable").add(Hi(name="first"), Interrupt(name="boom"), Hi(name="second",
                                                                                              provides="again"))

    book, fd = _saved_detail(db_url, "resumable")
    assert models.FlowDetail("fresh").state is None  # as TaskFlow's, until stored
    holder["engine"] = engines.load(flow(), flow_detail=fd, book=book, backend=db_url)
    holder["engine"].run()
    assert fd.state == states.SUSPENDED
    assert {ad.name: (ad.version, ad.state) for ad in fd} == {
        "first": ("1.0", states.SUCCESS), "boom": ("1.0", states.SUCCESS), "second": ("1.0", states.PENDING)}
    again = backends.fetch(db_url).get_logbook(book.uuid).find(fd.uuid)
    assert again is not None
    engines.load(flow(), flow_detail=again, backend=db_url, book=book).run()
    assert again.state == states.SUCCESS and again.find_by_name("second").state == states.SUCCESS  # type: ignore[union-attr]
    assert book.find(fd.uuid).state == states.SUCCESS  # type: ignore[union-attr]
