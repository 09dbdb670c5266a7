"""Hello, celeryflow: a linear flow of three tasks, on the embedded default.

    python examples/hello.py

Nothing to configure: an in-process Celery worker and an SQLite logbook
(~/.local/share/celeryflow/logbook.sqlite, or $CELERYFLOW_BACKEND). Then look at it:

    celeryflow flows list
    celeryflow flows show <id>
"""

from celeryflow import engines, task
from celeryflow.patterns import linear_flow


class Greet(task.Task):
    default_provides = "greeting"

    def execute(self, name: str) -> str:
        return f"Hello, {name}"


class Shout(task.Task):
    default_provides = "shout"

    def execute(self, greeting: str) -> str:
        return greeting.upper() + "!"


class Count(task.Task):
    default_provides = "letters"

    def execute(self, shout: str) -> int:
        return sum(c.isalpha() for c in shout)


def main() -> None:
    flow = linear_flow.Flow("hello").add(Greet(), Shout(), Count())
    engine = engines.load(flow, store={"name": "celeryflow"})
    engine.run(timeout=60)
    results = engine.storage.fetch_all()
    print(results["shout"], f"({results['letters']} letters)")
    print(f"flow {engine.flow_uuid}: {engine.storage.get_flow_state()}")
    assert results["shout"] == "HELLO, CELERYFLOW!"


if __name__ == "__main__":
    main()
