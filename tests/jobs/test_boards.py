"""The jobboard contract, one suite for every board: sql × {sqlite, postgresql, mariadb} and redis."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from celeryflow import states
from celeryflow.exceptions import ConfigurationError, JobFailure, NotFound, SerializationError, UnclaimableJob
from celeryflow.jobs import Job, JobPriority
from celeryflow.jobs import backends as job_backends
from celeryflow.jobs.backends.base import JobBoard
from tests.jobs import flows
from tests.jobs.conftest import MakeBoard


def test_post_and_read_back(board: JobBoard) -> None:
    job = board.post("resize", details={"size": 3, "tags": ["a"]}, priority="HIGH")
    assert isinstance(job, Job)
    assert (job.name, job.details, job.priority, job.flow_uuid) == ("resize", {"size": 3, "tags": ["a"]},
                                                                      JobPriority.HIGH, None)
    assert job.created_on is not None
    (seen,) = list(board.iterjobs())
    assert seen == job
    assert (seen.name, seen.details, seen.priority) == ("resize", {"size": 3, "tags": ["a"]}, JobPriority.HIGH)
    assert seen.created_on is not None and abs((seen.created_on - job.created_on).total_seconds()) < 1
    assert board.get_job(job.uuid).details == job.details
    assert job.state == states.UNCLAIMED
    assert board.find_owner(job) is None  # TaskFlow raises here; celeryflow says "nobody"
    assert board.job_count == 1


def test_flow_uuid_from_details(board: JobBoard) -> None:
    job = board.post("run", details={"flow_uuid": "0f6e9c7e-2f38-4c55-9d1c-7d7a1c2f0000"})
    assert job.flow_uuid == "0f6e9c7e-2f38-4c55-9d1c-7d7a1c2f0000"
    assert next(board.iterjobs()).flow_uuid == job.flow_uuid


def test_fifo_within_a_priority_and_priority_first(board: JobBoard) -> None:
    posted = [
        board.post("n1"),
        board.post("low1", priority=JobPriority.LOW),
        board.post("n2", priority="NORMAL"),
        board.post("vh1", priority="very_high"),
        board.post("vl1", priority=JobPriority.VERY_LOW),
        board.post("n3"),
        board.post("vh2", priority="VERY_HIGH"),
        board.post("h1", priority=JobPriority.HIGH),
    ]
    assert len(posted) == board.job_count == 8
    assert [j.name for j in board.iterjobs()] == ["vh1", "vh2", "h1", "n1", "n2", "n3", "low1", "vl1"]
    board.claim(posted[3], "c1")  # vh1
    assert [j.name for j in board.iterjobs(only_unclaimed=True)][:2] == ["vh2", "h1"]


def test_fifo_holds_for_many_jobs(board: JobBoard) -> None:
    names = [f"job-{i:03d}" for i in range(60)]
    for name in names:
        board.post(name)
    assert [j.name for j in board.iterjobs()] == names


def test_bad_priority_and_details(board: JobBoard) -> None:
    with pytest.raises(ConfigurationError, match="VERY_HIGH"):
        board.post("x", priority="URGENT")
    with pytest.raises(ConfigurationError):
        board.post("x", details=["not", "a", "dict"])  # type: ignore[arg-type]
    with pytest.raises(SerializationError):
        board.post("x", details={"obj": object()})
    with pytest.raises(ConfigurationError):
        board.post("")
    assert board.job_count == 0


def test_ownership_rules(make_board: MakeBoard) -> None:
    one, two = make_board(), make_board()  # two clients of one board, as two conductors would be
    job = one.post("work")
    one.claim(job, "alice")
    assert two.find_owner(job) == "alice"
    assert job.state == states.CLAIMED
    with pytest.raises(UnclaimableJob, match="alice"):
        two.claim(job, "bob")
    with pytest.raises(UnclaimableJob):
        one.claim(job, "alice")  # not re-entrant: extend_claim renews
    with pytest.raises(JobFailure, match="alice"):
        two.consume(job, "bob")
    with pytest.raises(JobFailure, match="alice"):
        two.abandon(job, "bob")
    with pytest.raises(JobFailure):
        two.trash(job, "bob")
    with pytest.raises(JobFailure):
        two.extend_claim(job, "bob")
    assert one.find_owner(job) == "alice"
    one.abandon(job, "alice")
    assert two.find_owner(job) is None
    assert job.state == states.UNCLAIMED
    with pytest.raises(JobFailure, match="not claimed"):
        two.consume(job, "bob")
    two.claim(job, "bob")
    two.consume(job, "bob")
    assert job.state == states.COMPLETE
    assert one.job_count == 0
    with pytest.raises(NotFound):
        one.consume(job, "bob")
    with pytest.raises(UnclaimableJob, match="no longer"):
        one.claim(job, "alice")
    assert one.find_owner(job) is None


def test_claim_without_expiry_expires_and_the_job_is_claimable_again(make_board: MakeBoard) -> None:
    board = make_board(claim_expiry=0.5)
    other = make_board(claim_expiry=0.5)
    job = board.post("work")
    board.claim(job, "crashed-conductor")  # no expiry given: the board's default applies
    assert other.find_owner(job) == "crashed-conductor"
    with pytest.raises(UnclaimableJob):
        other.claim(job, "survivor")
    time.sleep(0.7)
    assert other.find_owner(job) is None
    assert job.state == states.UNCLAIMED
    assert [j.uuid for j in other.iterjobs(only_unclaimed=True)] == [job.uuid]
    other.claim(job, "survivor")
    assert board.find_owner(job) == "survivor"
    with pytest.raises(JobFailure, match="survivor"):
        board.consume(job, "crashed-conductor")
    other.consume(job, "survivor")
    assert board.job_count == 0


def test_claims_expire_by_default(board: JobBoard) -> None:
    assert board.claim_expiry == job_backends.DEFAULT_CLAIM_EXPIRY == 60.0


def test_extend_claim_keeps_the_claim(make_board: MakeBoard) -> None:
    board, other = make_board(claim_expiry=0.6), make_board(claim_expiry=0.6)
    job = board.post("work")
    board.claim(job, "alive")
    for _ in range(4):
        time.sleep(0.3)
        board.extend_claim(job, "alive")
    assert other.find_owner(job) == "alive"
    with pytest.raises(UnclaimableJob):
        other.claim(job, "other")


def test_explicit_expiry_and_never_expiring_claims(make_board: MakeBoard) -> None:
    board = make_board(claim_expiry=0.3)
    short, forever = board.post("short"), board.post("forever")
    board.claim(short, "a", expiry=60)
    board.claim(forever, "b", expiry=0)
    time.sleep(0.5)
    assert board.find_owner(short) == "a"
    assert board.find_owner(forever) == "b"
    never = make_board(claim_expiry=0)
    assert never.claim_expiry is None


def test_trash_keeps_the_job_with_its_reason(board: JobBoard) -> None:
    keep = board.post("keep")
    bad = board.post("bad", details={"x": 1}, priority="LOW")
    board.claim(bad, "c1")
    board.trash(bad, "c1", reason="factory not registered")
    assert board.job_count == 1
    assert [j.uuid for j in board.iterjobs()] == [keep.uuid]
    assert bad.state == states.COMPLETE
    (trashed,) = list(board.iter_trash())
    assert (trashed.uuid, trashed.name, trashed.reason, trashed.trashed_by) == (bad.uuid, "bad",
                                                                                "factory not registered", "c1")
    assert trashed.details == {"x": 1}
    assert trashed.priority is JobPriority.LOW
    assert trashed.trashed_on is not None
    with pytest.raises(JobFailure):
        board.trash(keep, "c1")  # not claimed


def test_job_count(board: JobBoard) -> None:
    assert board.job_count == 0
    jobs = [board.post(f"j{i}") for i in range(5)]
    assert board.job_count == 5
    board.claim(jobs[0], "c")
    assert board.job_count == 5  # claimed jobs are still on the board
    board.consume(jobs[0], "c")
    board.claim(jobs[1], "c")
    board.trash(jobs[1], "c")
    assert board.job_count == 3


def test_one_winner_among_racing_claimers(make_board: MakeBoard) -> None:
    boards = [make_board() for _ in range(6)]
    job = boards[0].post("contended")
    winners: list[str] = []
    losers: list[str] = []
    barrier = threading.Barrier(len(boards))

    def race(i: int) -> None:
        barrier.wait()
        try:
            boards[i].claim(job, f"c{i}")
            winners.append(f"c{i}")
        except UnclaimableJob:
            losers.append(f"c{i}")

    threads = [threading.Thread(target=race, args=(i,)) for i in range(len(boards))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert len(winners) == 1 and len(losers) == len(boards) - 1
    assert boards[1].find_owner(job) == winners[0]


def test_wait_returns_when_a_job_is_posted(make_board: MakeBoard) -> None:
    waiter, poster = make_board(), make_board()
    with pytest.raises(NotFound):
        waiter.wait(timeout=0.2)
    timer = threading.Timer(0.3, lambda: poster.post("late"))
    began = time.monotonic()
    timer.start()
    jobs = list(waiter.wait(timeout=10))
    waited = time.monotonic() - began
    assert [j.name for j in jobs] == ["late"]
    assert 0.25 < waited < 3.0


def test_wait_sees_an_expired_claim(make_board: MakeBoard) -> None:
    board = make_board(claim_expiry=0.4)
    job = board.post("x")
    board.claim(job, "dead")
    began = time.monotonic()
    assert [j.uuid for j in board.wait(timeout=10)] == [job.uuid]
    assert time.monotonic() - began < 3.0


def test_board_is_a_context_manager(make_board: MakeBoard, board_kind: str) -> None:
    board = make_board()
    conf = dict(board.conf)
    fresh = job_backends.fetch("test-board", conf, persistence=board._persistence_conf)
    with pytest.raises(JobFailure, match="connect"):
        fresh.post("x")
    with fresh as connected:
        assert connected.connected
        connected.post("x")
    assert not fresh.connected
    assert board.job_count == 1


def test_namespaces_separate_boards(make_board: MakeBoard) -> None:
    first = make_board()
    other = make_board(name="other-board", namespace=f"{first.namespace}-other")
    first.post("mine")
    assert other.job_count == 0
    assert list(other.iterjobs()) == []


def test_post_flow_persists_the_flow_and_posts_its_job(board: JobBoard, tmp_path: Path) -> None:
    trace = str(tmp_path / "trace")
    job = board.post_flow(flows.three_steps, factory_args=[trace], priority="HIGH")
    assert job.flow_uuid and job.details["flow_uuid"] == job.flow_uuid
    assert job.name == "three-steps" and job.priority is JobPriority.HIGH
    persistence = board.persistence
    assert persistence is not None
    fd = persistence.get_flow_details(job.flow_uuid)
    assert fd.state == states.PENDING
    assert {ad.name for ad in fd} == {"step1", "step2", "step3"}
    assert next(board.iterjobs()).flow_uuid == job.flow_uuid


def test_fetch_rejects_unknown_boards() -> None:
    with pytest.raises(ConfigurationError, match="zookeeper"):
        job_backends.fetch("b", {"board": "zookeeper", "url": "x"})
    with pytest.raises(ConfigurationError, match="redis://"):
        job_backends.fetch("b", {"board": "redis", "url": "postgresql://x"})
    with pytest.raises(ConfigurationError):
        job_backends.fetch("b", {"board": "sql", "url": "sqlite:///x.db", "claim_expiry": "soon"})


def test_priority_conversions() -> None:
    assert JobPriority.convert("very_low") is JobPriority.VERY_LOW
    assert JobPriority.convert(JobPriority.HIGH) is JobPriority.HIGH
    assert JobPriority.convert(None) is JobPriority.NORMAL
    assert [p.name for p in JobPriority] == ["VERY_HIGH", "HIGH", "NORMAL", "LOW", "VERY_LOW"]
    pairs = JobPriority.reorder((JobPriority.LOW, "a"), (JobPriority.VERY_HIGH, "b"), (JobPriority.LOW, "c"))
    assert [item for _, item in pairs] == ["b", "a", "c"]
