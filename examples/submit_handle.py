"""Non-blocking use: ``submit()`` returns a handle at once; re-attach from anywhere with its id.

    python examples/submit_handle.py

This is what a web view does: submit, return the id, and let another request (or
another process) ask ``FlowHandle(id).state``. Here the same script also suspends a
flow half-way and resumes it: finished steps are not run again.
"""

import time

import celeryflow
from celeryflow import registry, states, task
from celeryflow.patterns import linear_flow


class Step(task.Task):
    def execute(self, pause: float) -> str:
        time.sleep(pause)
        return f"{self.name} done"


@registry.register
def report_flow(steps: int = 4) -> linear_flow.Flow:
    """A registered factory: workers (and resumes) rebuild the flow from its name and arguments."""
    return linear_flow.Flow("report").add(*(Step(f"step_{i}", provides=f"step_{i}") for i in range(steps)))


def main() -> None:
    handle = celeryflow.submit(report_flow, store={"pause": 0.2}, factory_kwargs={"steps": 4})
    print(f"submitted {handle.id}: {handle.state}")

    again = celeryflow.FlowHandle(handle.id)  # e.g. in another request
    time.sleep(0.3)
    again.suspend()
    while again.state not in (states.SUSPENDED, states.SUCCESS):
        time.sleep(0.05)
    done = [n for n, v in again.results().items() if n.startswith("step_")]
    print(f"{again.state} after {len(done)} step(s): {sorted(done)}")

    if again.state == states.SUSPENDED:
        again.resume()
    results = again.wait(timeout=60)
    print(f"{again.state}: {[results[f'step_{i}'] for i in range(4)]}")
    assert again.state == states.SUCCESS


if __name__ == "__main__":
    # Run the module under its importable name, not as __main__: flow factories and atoms
    # are named "module:function" in the logbook, and a worker (CELERYFLOW_IMPORTS=submit_handle,
    # with examples/ on PYTHONPATH) can import "submit_handle", never your __main__.
    import submit_handle

    submit_handle.main()
