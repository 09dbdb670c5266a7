"""TaskFlow's own examples, renamed as the porting guide says, give TaskFlow's output (#13).

The examples come from the **installed** ``taskflow`` package at test time (nothing of
TaskFlow is copied into this repository; CI installs the ``taskflow`` extra). Each runnable
one is renamed (docs/porting-from-taskflow.md, section 1), run in a subprocess on the
embedded default with a private HOME and logbook, and its output compared with TaskFlow's
own run of the original, in substance (ids, timings, addresses, paths, the order of
parallel work and of result dicts aside: see tests/porting/harness.py).

Examples that cannot run here are listed in :data:`NOT_RUNNABLE` with the reason (they need
ZooKeeper or etcd, TaskFlow's private modules, or behaviour celeryflow refuses by design).
An example that would fail only for want of public API still to come goes in
:data:`PENDING` (strict=False xfail naming the missing API); it is empty.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.porting import harness

EXAMPLES = harness.examples_dir()
pytestmark = pytest.mark.skipif(EXAMPLES is None, reason="taskflow is not installed (pip install -e '.[taskflow]')")

#: example -> why it is not run
NOT_RUNNABLE = {
    "99_bottles.py": "needs ZooKeeper (kazoo) and TaskFlow's private taskflow.utils",
    "jobboard_produce_consume_colors.py": "needs ZooKeeper (zake/kazoo) and TaskFlow's private taskflow.utils",
    "tox_conductor.py": "needs ZooKeeper (taskflow.utils.kazoo_utils), a private module",
    "share_engine_thread.py": "imports TaskFlow's private taskflow.utils.threading_utils",
    "wbe_mandelbrot.py": "imports TaskFlow's private taskflow.utils.threading_utils "
                         "(the worker-based engine itself: tests/porting/test_engine_options.py)",
    "wbe_event_sender.py": "imports TaskFlow's private taskflow.utils.threading_utils",
    "wbe_simple_linear.py": "imports TaskFlow's private taskflow.tests.utils and taskflow.utils (and TaskFlow's "
                            "own run needs etcd3gw)",
    "wrapped_exception.py": "imports TaskFlow's private taskflow.tests.utils (TaskFlow's own run needs etcd3gw)",
    "dump_memory_backend.py": "reads the in-memory backend's internals (backend.memory)",
    "switch_graph_flow.py": "reads the in-memory backend's internals (backend.memory)",
    "fake_billing.py": "imports TaskFlow's private taskflow.utils (misc.as_int)",
    "distance_calculator.py": "stores namedtuples, which celeryflow refuses at submit with SerializationError "
                              "by design (#13 item 8: a namedtuple would come back as a list)",
    "resume_many_flows.py": "its task raises SystemExit to crash the engine's process mid-flow and leave the flow "
                            "RUNNING for resume_all.py; celeryflow records an atom's SystemExit as its failure "
                            "and compensates the flow (#12 item 11, docs/operations.md), so there is nothing to "
                            "resume (the run without BOOM and load_from_factory/storage.flow_name work)",
}

#: example -> the missing API: xfail until it is added (empty: every runnable example passes)
PENDING: dict[str, str] = {}

#: what ``random`` is seeded with in both runs of an example (the same choices, the same output)
SEED = 13

#: examples whose TaskFlow 6.5 run fails by itself (executor='processes' was removed from
#: TaskFlow): the port must finish, printing what TaskFlow printed before it stopped
TASKFLOW_FAILS = {
    "hello_world.py": "TaskFlow 6.5 no longer accepts executor='processes'",
    "alphabet_soup.py": "TaskFlow 6.5 no longer accepts executor='processes'",
}


def _all_examples() -> list[str]:
    if EXAMPLES is None:
        return []
    return sorted(p.name for p in EXAMPLES.glob("*.py") if p.name != "example_utils.py")


def _params() -> list[object]:
    out: list[object] = []
    for name in _all_examples():
        marks = []
        if name in NOT_RUNNABLE:
            marks = [pytest.mark.skip(reason=f"not runnable here: {NOT_RUNNABLE[name]}")]
        elif name in PENDING:
            marks = [pytest.mark.xfail(reason=f"needs {PENDING[name]}", strict=False)]
        out.append(pytest.param(name, marks=marks, id=name))
    return out


@pytest.fixture(scope="module")
def ported(tmp_path_factory: pytest.TempPathFactory) -> Path:
    assert EXAMPLES is not None
    dest = tmp_path_factory.mktemp("ported")
    harness.port(EXAMPLES, dest)
    return dest


def test_every_example_is_classified() -> None:
    known = set(NOT_RUNNABLE) | set(PENDING) | set(TASKFLOW_FAILS)
    listed = set(_all_examples())
    assert known <= listed, f"no such example: {sorted(known - listed)}"
    assert set(NOT_RUNNABLE).isdisjoint(PENDING)


@pytest.mark.slow
@pytest.mark.parametrize("name", _params())
def test_ported_example_gives_taskflows_output(name: str, ported: Path, tmp_path: Path) -> None:
    assert EXAMPLES is not None
    # both runs seed ``random`` alike: resume_volume_create prints a random number of volumes
    original = harness.run_script(EXAMPLES / name, tmp_path / "taskflow", seed=SEED)
    port = harness.run_script(ported / name, tmp_path / "celeryflow", seed=SEED)
    detail = f"\n--- taskflow ---\n{original.stdout}\n{original.stderr[-3000:]}\n--- celeryflow ---\n" \
             f"{port.stdout}\n{port.stderr[-3000:]}"
    if name in TASKFLOW_FAILS:
        assert original.returncode != 0, f"TaskFlow runs {name} now: compare it like the others{detail}"
        assert port.returncode == 0, detail
        expected = harness.normalise(original.stdout)
        # what TaskFlow printed before it stopped comes first (parallel work in any order)
        assert sorted(harness.normalise(port.stdout)[: len(expected)]) == sorted(expected), detail
        return
    assert original.returncode == 0, f"TaskFlow's own run failed{detail}"
    assert port.returncode == 0, detail
    assert harness.same_substance(original.stdout, port.stdout), detail


def test_the_rename_leaves_no_taskflow_import(ported: Path) -> None:
    for path in ported.rglob("*.py"):
        assert not re.search(r"^\s*(from|import)\s+taskflow\b", path.read_text(), re.M), path
