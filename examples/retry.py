"""Retries: a flaky step inside a subflow guarded by ``retry.Times``.

    python examples/retry.py

When ``flaky_call`` fails, the controller reverts its subflow and runs it again, up to
three attempts. The retry history (each attempt's failure) stays in the logbook:
``celeryflow flows show <id>`` prints it.
"""

import os
import tempfile
from pathlib import Path

from celeryflow import engines, retry, states, task
from celeryflow.patterns import linear_flow


class FlakyCall(task.Task):
    """Fails the first two times (it counts attempts in a file, as a real service would fail)."""

    default_provides = "answer"

    def execute(self, counter_file: str) -> int:
        path = Path(counter_file)
        attempts = int(path.read_text() or 0) + 1 if path.exists() else 1
        path.write_text(str(attempts))
        if attempts < 3:
            raise ConnectionError(f"service unavailable (attempt {attempts})")
        return 42


def main() -> None:
    counter = Path(tempfile.mkdtemp()) / "attempts"
    guarded = linear_flow.Flow("call-service", retry=retry.Times(3, name="up_to_3")).add(FlakyCall("flaky_call"))
    flow = linear_flow.Flow("retrying").add(guarded)
    engine = engines.load(flow, store={"counter_file": os.fspath(counter)})
    engine.run(timeout=60)
    print("answer:", engine.storage.fetch("answer"), "after", counter.read_text(), "attempts")
    history = engine.storage.get_retry_history("up_to_3")
    print("retry history:", [str(failures.get("flaky_call")) for _, failures in history])
    assert engine.storage.get_flow_state() == states.SUCCESS


if __name__ == "__main__":
    main()
