"""docs/testing.md's copy-paste tests run as a user's project would run them, with pytest-celery loaded.

The files the guide marks ``<!-- file: NAME -->`` are written to a scratch project and
run by a separate pytest (its own rootdir and ini: pytest-celery's ``pytest11`` plugin is
*not* disabled there, unlike in this repository's suite), first on the defaults (SQLite
logbook, memory:// broker), then with the app on Redis and the logbook on PostgreSQL.
"""

from __future__ import annotations

import importlib.metadata as md
import os
import re
import subprocess
import sys
from pathlib import Path

from tests.fixtures_db import POSTGRES_BASE
from tests.support.packaging import setup_arguments
from tests.support.procs import REPO_ROOT

GUIDE = REPO_ROOT / "docs" / "testing.md"
FILE_BLOCK = re.compile(r"<!-- file: (?P<name>[\w.]+) -->\n```python\n(?P<body>.*?)```", re.S)
CONSOLE_BLOCK = re.compile(r"```console\n\$ (?P<cmd>celeryflow graph [^\n]+)\n(?P<out>.*?)```", re.S)

#: checks of the scratch run itself (not part of the guide)
PLUGINS_LOADED = '''
import os


def test_both_plugins_are_loaded(request, celeryflow_logbook_url):
    assert request.config.pluginmanager.has_plugin("celery")  # pytest-celery's entry point
    assert request.config.pluginmanager.has_plugin("celeryflow.testing.plugin")
    assert celeryflow_logbook_url.startswith(os.environ["EXPECT_LOGBOOK"])
'''


def guide_files() -> dict[str, str]:
    return {m["name"]: m["body"] for m in FILE_BLOCK.finditer(GUIDE.read_text(encoding="utf-8"))}


def scratch_project(tmp_path: Path, *, plugin_line: bool = True) -> Path:
    project = tmp_path / "project"
    project.mkdir()
    for name, body in guide_files().items():
        if not plugin_line and name == "conftest.py":
            body = body.replace('pytest_plugins = ["celeryflow.testing.plugin"]\n', "")
        (project / name).write_text(body, encoding="utf-8")
    (project / "test_plugins_loaded.py").write_text(PLUGINS_LOADED, encoding="utf-8")
    (project / "pytest.ini").write_text("[pytest]\naddopts = -p no:cacheprovider\ntimeout = 240\n", encoding="utf-8")
    return project


def run_pytest(project: Path, *args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("CELERYFLOW_", "PYTEST_"))}
    base.update(PYTHONPATH=str(REPO_ROOT), XDG_DATA_HOME=str(project / "xdg"), PYTHONUNBUFFERED="1")
    base.update(env)
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-rs", *args], cwd=project, env=base,
                          capture_output=True, text=True, timeout=600, stdin=subprocess.DEVNULL)


def passed(result: subprocess.CompletedProcess[str]) -> int:
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-3000:]
    match = re.search(r"(\d+) passed", result.stdout)
    assert match and "skipped" not in result.stdout.splitlines()[-1], result.stdout[-3000:]
    return int(match[1])


def test_the_guide_has_its_files() -> None:
    assert set(guide_files()) == {"shop.py", "conftest.py", "test_order.py", "test_compensation.py",
                                  "test_crash.py", "test_on_a_worker.py", "test_explain.py"}


def test_the_guides_tests_pass_with_pytest_celery_loaded(tmp_path: Path) -> None:
    project = scratch_project(tmp_path)
    assert passed(run_pytest(project, env={"EXPECT_LOGBOOK": "sqlite:///"})) == 11


def test_the_guides_tests_pass_on_redis_and_postgresql(tmp_path: Path, redis_url: str,
                                                       postgres_available: str) -> None:
    project = scratch_project(tmp_path)
    server = POSTGRES_BASE.replace("postgresql+psycopg://", "postgresql://")
    result = run_pytest(project, "--celeryflow-logbook", server,
                        env={"SHOP_BROKER_URL": redis_url, "EXPECT_LOGBOOK": "postgresql://"})
    assert passed(result) == 11


def declared_entry_point() -> str:
    """The ``pytest11`` entry point setup.py declares."""
    (line,) = setup_arguments()["entry_points"]["pytest11"]
    return str(line)


def test_the_entry_point_activates_the_plugin(tmp_path: Path) -> None:
    """``pip install`` registers the opt-in pytest11 entry point; it activates on --celeryflow or the ini flag.

    Where this tree is not the installed celeryflow (the shared development venv), the
    declared entry point is installed for the scratch run as a bare distribution on its path.
    """
    declared = declared_entry_point()
    assert declared == "celeryflow=celeryflow.testing.entry"
    found = [ep for ep in md.entry_points(group="pytest11") if ep.name == "celeryflow"]
    paths = str(REPO_ROOT)
    if not found:
        site = tmp_path / "site"
        info = site / "celeryflow_entry-0.0.dist-info"
        info.mkdir(parents=True)
        (info / "METADATA").write_text("Metadata-Version: 2.1\nName: celeryflow-entry\nVersion: 0.0\n")
        (info / "entry_points.txt").write_text(f"[pytest11]\n{declared.replace('=', ' = ')}\n")
        paths = os.pathsep.join([str(site), paths])
    else:
        assert found[0].value == "celeryflow.testing.entry"
    project = scratch_project(tmp_path, plugin_line=False)
    env = {"EXPECT_LOGBOOK": "sqlite:///", "PYTHONPATH": paths}
    # not opted in: the options exist, no fixture does
    off = run_pytest(project, "test_explain.py", "test_order.py", env=env)
    assert off.returncode != 0 and "fixture 'celeryflow_runner' not found" in off.stdout, off.stdout[-3000:]
    assert passed(run_pytest(project, "--celeryflow", "test_order.py", "test_plugins_loaded.py", env=env)) == 5
    (project / "pytest.ini").write_text("[pytest]\nceleryflow = true\n", encoding="utf-8")
    assert passed(run_pytest(project, "test_order.py", env=env)) == 4


def test_the_guides_explain_output(tmp_path: Path) -> None:
    project = scratch_project(tmp_path)
    block = CONSOLE_BLOCK.search(GUIDE.read_text(encoding="utf-8"))
    assert block is not None
    argv = block["cmd"].split()[1:]
    env = {k: v for k, v in os.environ.items() if not k.startswith("CELERYFLOW_")}
    env["PYTHONPATH"] = str(REPO_ROOT)
    result = subprocess.run([sys.executable, "-m", "celeryflow", *argv], cwd=project, env=env,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout == block["out"]
