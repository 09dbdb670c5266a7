"""``celeryflow flows …`` against real SQLite and PostgreSQL logbooks."""

from __future__ import annotations

import datetime as dt
import json

import pytest
from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from celeryflow import engines, states
from celeryflow.persistence.backends import fetch
from celeryflow.persistence.tables import AtomRow, EventRow, FlowRow, utcnow
from tests.cli.conftest import Populated, invoke
from tests.contrib.atoms import SECRET, nap_flow, order_flow, order_store


def test_list_filters_by_state_and_age(populated: Populated) -> None:
    url = populated.url
    everything = json.loads(invoke("flows", "list", "--json", "--backend", url).stdout)
    assert {f["id"] for f in everything} == {*populated.ok, populated.declined}
    assert all(f["name"] == "place-order" for f in everything)

    reverted = json.loads(invoke("flows", "list", "--json", "-s", "reverted", "-b", url).stdout)
    assert [f["id"] for f in reverted] == [populated.declined]
    # the atom that failed is named though the flow was compensated (it is REVERTED now)
    assert reverted[0]["failed"] == ["charge_card"] and reverted[0]["atoms"] == 3

    ok = json.loads(invoke("flows", "list", "--json", "-s", "SUCCESS", "-b", url).stdout)
    assert sorted(f["id"] for f in ok) == sorted(populated.ok)
    assert all(f["atoms_done"] == f["atoms"] == 3 for f in ok)

    assert json.loads(invoke("flows", "list", "--json", "--older-than", "1h", "-b", url).stdout) == []
    assert len(json.loads(invoke("flows", "list", "--json", "--newer-than", "1h", "-b", url).stdout)) == 3
    assert len(json.loads(invoke("flows", "list", "--json", "-n", "2", "-b", url).stdout)) == 2

    table = invoke("flows", "list", "-b", url, env={"CELERYFLOW_BACKEND": url})
    assert table.exit_code == 0
    for flow_id in (*populated.ok, populated.declined):
        assert flow_id in table.stdout
    # the environment variable works as well as the option
    assert populated.declined in invoke("flows", "list", env={"CELERYFLOW_BACKEND": url}).stdout


def test_show_atoms_timings_failures_and_compensation_order(populated: Populated) -> None:
    result = invoke("flows", "show", populated.declined, "-b", populated.url, "--events", "50")
    assert result.exit_code == 0, result.output
    out = result.stdout
    for text in ("place-order", "REVERTED", "reserve_stock", "charge_card", "notify", "compensation order:",
                 "PaymentDeclined: card declined for order B-1", "last 50 events"):
        assert text in out, text
    assert SECRET not in out and "api_token=***" in out

    doc = json.loads(invoke("flows", "show", populated.declined[:8], "-b", populated.url, "--json").stdout)
    assert doc["id"] == populated.declined and doc["state"] == states.REVERTED
    atoms = {a["name"]: a for a in doc["atoms"]}
    assert atoms["notify"]["state"] == states.PENDING  # never ran, never reverted
    assert atoms["charge_card"]["state"] == states.REVERTED
    assert atoms["charge_card"]["failure"].endswith("card declined for order B-1")
    assert atoms["reserve_stock"]["worker"] and atoms["reserve_stock"]["seconds"] is not None
    assert sorted(doc["reverted_order"]) == ["charge_card", "reserve_stock"]
    assert doc["store"]["api_token"] == "***" and doc["store"]["order_id"] == "B-1"
    assert SECRET not in json.dumps(doc)
    assert "PaymentDeclined" in invoke("flows", "show", populated.declined, "-b", populated.url, "-t").stdout


def test_show_retry_history(sqlite_url: str) -> None:
    from celeryflow import retry
    from celeryflow.patterns import linear_flow
    from tests.contrib.atoms import ChargeCard

    flow = linear_flow.Flow("retrying", retry=retry.Times(3, name="three_times")).add(ChargeCard("charge_card"))
    with pytest.raises(Exception, match="card declined"):
        engines.run(flow, store={**order_store("R-1", decline=True), "reservation": "res-R-1"}, backend=sqlite_url)
    flow_id = json.loads(invoke("flows", "list", "--json", "-b", sqlite_url).stdout)[0]["id"]
    doc = json.loads(invoke("flows", "show", flow_id, "-b", sqlite_url, "--json").stdout)
    controller = next(a for a in doc["atoms"] if a["name"] == "three_times")
    assert len(controller["history"]) == 3
    assert all("card declined" in h["failures"]["charge_card"] for h in controller["history"])
    out = invoke("flows", "show", flow_id, "-b", sqlite_url).stdout
    assert "retry history of three_times" in out


@pytest.mark.parametrize("command", [["show"], ["resume"], ["suspend"], ["revert"]])
def test_unknown_flow_id_exits_2(sqlite_url: str, command: list[str]) -> None:
    invoke("db", "upgrade", "-b", sqlite_url)
    result = invoke("flows", *command, "0000dead-beef-0000-0000-000000000000", "-b", sqlite_url)
    assert result.exit_code == 2
    assert "No flow '0000dead-beef-0000-0000-000000000000'" in result.stderr
    assert "Traceback" not in result.output


def test_unreachable_database_exits_3() -> None:
    result = invoke("flows", "list", "-b", "postgresql://nobody@127.0.0.1:1/nothing")
    assert result.exit_code == 3
    assert "unreachable" in result.stderr and "127.0.0.1:1" in result.stderr


def test_bad_duration_is_a_usage_error(sqlite_url: str) -> None:
    result = invoke("flows", "list", "--older-than", "7 days", "-b", sqlite_url)
    assert result.exit_code == 2 and "not a duration" in result.output


def test_suspend_resume_revert_on_the_embedded_worker(logbook_url: str) -> None:
    engine = engines.load_from_factory(nap_flow, factory_kwargs={"count": 3}, store={"seconds": 0.05},
                                       backend=logbook_url)
    engine.prepare()  # persisted, PENDING, nothing sent
    flow_id = engine.flow_uuid
    url = logbook_url

    suspended = invoke("flows", "suspend", flow_id, "-b", url)
    assert suspended.exit_code == 0, suspended.output
    assert "PENDING → SUSPENDED" in suspended.stdout

    resumed = invoke("flows", "resume", flow_id, "-b", url)  # no broker: runs here and waits
    assert resumed.exit_code == 0, resumed.output
    assert f"flow {flow_id}: SUCCESS" in resumed.stdout
    again = invoke("flows", "resume", flow_id, "-b", url)
    assert again.exit_code == 4 and "nothing to resume" in again.stderr

    reverted = invoke("flows", "revert", flow_id[:10], "-b", url)
    assert reverted.exit_code == 0, reverted.output
    assert f"flow {flow_id}: REVERTED" in reverted.stdout
    doc = json.loads(invoke("flows", "show", flow_id, "-b", url, "--json").stdout)
    assert doc["reverted_order"] == ["nap_2", "nap_1", "nap_0"]
    assert invoke("flows", "revert", flow_id, "-b", url).exit_code == 4
    assert invoke("flows", "suspend", flow_id, "-b", url).exit_code == 4


def test_resume_of_a_reverted_flow_reports_the_failure(sqlite_url: str) -> None:
    engine = engines.load_from_factory(order_flow, store=order_store("C-1", decline=True), backend=sqlite_url)
    with pytest.raises(Exception, match="card declined"):
        engine.run(timeout=30)
    result = invoke("flows", "resume", engine.flow_uuid, "-b", sqlite_url)
    assert result.exit_code == 1
    assert "REVERTED" in result.stdout and "card declined" in result.stdout


def test_prune_deletes_old_finished_flows_only(populated: Populated) -> None:
    url = populated.url
    backend = fetch(url)
    old = [populated.ok[0], populated.declined]
    running = engines.load_from_factory(nap_flow, store={"seconds": 0}, backend=url)
    running.prepare()

    def age(session: Session) -> None:
        long_ago = utcnow() - dt.timedelta(days=10)
        session.execute(update(FlowRow).where(FlowRow.uuid.in_([*old, running.flow_uuid]))
                        .values(progress_at=long_ago, created_at=long_ago))

    backend.run(age)
    dry = invoke("flows", "prune", "--older-than", "7d", "--dry-run", "-b", url)
    assert dry.exit_code == 0 and "would delete 2 flow(s)" in dry.stdout
    assert invoke("flows", "prune", "--older-than", "7d", "-b", url, input="n\n").exit_code == 1
    assert invoke("flows", "prune", "--older-than", "7d", "-s", "RUNNING", "--yes", "-b", url).exit_code == 2
    assert invoke("flows", "prune", "--dry-run", "-b", url).exit_code == 2  # no age, no retention setting
    retention = invoke("flows", "prune", "--dry-run", "-b", url, env={"CELERYFLOW_RETENTION_DAYS": "9"})
    assert "would delete 2 flow(s)" in retention.stdout

    result = invoke("flows", "prune", "--older-than", "7d", "--yes", "--batch-size", "1", "-b", url)
    assert result.exit_code == 0, result.output
    assert "deleted 2 flow(s)" in result.stdout
    left = {f["id"] for f in json.loads(invoke("flows", "list", "--json", "-b", url).stdout)}
    assert left == {populated.ok[1], running.flow_uuid}  # the PENDING one is never pruned

    def leftovers(session: Session) -> tuple[int | None, int | None]:
        atoms = session.scalar(select(func.count()).select_from(AtomRow).where(AtomRow.flow_uuid.in_(old)))
        events = session.scalar(select(func.count()).select_from(EventRow).where(EventRow.flow_uuid.in_(old)))
        return atoms, events

    assert backend.run(leftovers) == (0, 0)
    assert "nothing to prune" in invoke("flows", "prune", "--older-than", "7d", "-y", "-b", url).stdout
