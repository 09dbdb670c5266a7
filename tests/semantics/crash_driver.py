"""The caller process the crash tests kill: ``python -m tests.semantics.crash_driver
<embedded|remote> <factory> <trace> <logbook url> <id file> <hang seconds>``.

It builds the flow with a registered factory (so any process rebuilds it from the
logbook alone), writes the flow id to ``<id file>`` and runs it with ``hang=True``
in the store; the test SIGKILLs it while an atom hangs.
"""

from __future__ import annotations

import sys
from pathlib import Path

from celeryflow import engines
from tests.semantics import atoms

FACTORIES = {"hanging_chain": atoms.hanging_chain, "reverting_chain": atoms.reverting_chain}


def main(argv: list[str]) -> None:
    kind, factory, trace, url, id_file, hang = argv
    app = None
    if kind == "remote":
        from celeryflow_tasks.app import make_app

        app = make_app("crash-driver")  # reads CELERYFLOW_BROKER_URL / CELERYFLOW_BACKEND
    engine = engines.load_from_factory(
        FACTORIES[factory], factory_kwargs={"trace": trace, "hang": float(hang)}, store={"hang": True},
        backend=url, app=app,
    )
    engine.prepare()
    Path(id_file).write_text(engine.flow_uuid)
    engine.run()


if __name__ == "__main__":
    main(sys.argv[1:])
