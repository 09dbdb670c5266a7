"""A graph flow: independent steps run in parallel, a join waits for both, a decider skips a step.

    python examples/graph_flow.py [output.svg]

Dependencies come from the data (``requires``/``provides``); ``link(..., decider=...)``
adds a condition. The flow's graph is written with Graphviz (.svg/.png need the
``dot`` program; the .dot source is always written).
"""

import shutil
import sys
from pathlib import Path

from celeryflow import engines, graphing, states, task
from celeryflow.contrib import snapshot
from celeryflow.patterns import graph_flow


class FetchUser(task.Task):
    default_provides = "user"

    def execute(self, user_id: int) -> dict:
        return {"id": user_id, "email": f"user{user_id}@example.com", "vip": user_id % 2 == 0}


class FetchOrders(task.Task):
    default_provides = "orders"

    def execute(self, user_id: int) -> list:
        return [{"id": i, "total": 10 * i} for i in range(1, 4)]


class Summarise(task.Task):
    default_provides = "summary"

    def execute(self, user: dict, orders: list) -> dict:
        return {"email": user["email"], "orders": len(orders), "spent": sum(o["total"] for o in orders)}


class VipGift(task.Task):
    default_provides = "gift"

    def execute(self, summary: dict) -> str:
        return f"gift card for {summary['email']}"


def is_vip(history: dict) -> bool:
    """Decider on summarise -> vip_gift: ``history`` maps the upstream atom's name to its result."""
    return any(result["spent"] > 50 for result in history.values())


def main(output: str = "graph_flow.svg") -> None:
    summarise, gift = Summarise("summarise"), VipGift("vip_gift")
    flow = graph_flow.Flow("user-report").add(FetchUser("fetch_user"), FetchOrders("fetch_orders"), summarise, gift)
    flow.link(summarise, gift, decider=is_vip)
    engine = engines.load(flow, store={"user_id": 7})
    engine.run(timeout=60)
    results = engine.storage.fetch_all()
    print("summary:", results["summary"])
    print("vip_gift:", engine.storage.get_atom_state("vip_gift"), results.get("gift", "(skipped)"))
    assert engine.storage.get_flow_state() == states.SUCCESS

    view = snapshot.load_flow(engine.backend, engine.flow_uuid)
    dot = graphing.flow_graph(engine.compile(), view)
    out = Path(output)
    graphing.render(dot, out.with_suffix(".dot"))
    print("wrote", out.with_suffix(".dot"))
    if out.suffix != ".dot" and shutil.which("dot"):
        graphing.render(dot, out)
        print("wrote", out)


if __name__ == "__main__":
    main(*sys.argv[1:2])
