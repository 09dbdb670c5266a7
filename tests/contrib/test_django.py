"""Run the Django test project's own test suite (Django's runner and test client) on SQLite and PostgreSQL.

Each run is a subprocess (Django settings are process-wide): ``python manage.py test shop``
in tests/contrib/djproject, with a private working directory and test database name.
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from sqlalchemy.engine import make_url

from tests.fixtures_db import POSTGRES_BASE, require_service
from tests.support.procs import REPO_ROOT

PROJECT = Path(__file__).resolve().parent / "djproject"


def run_manage_test(tmp_path: Path, extra_env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(REPO_ROOT), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep),
        "DJANGO_SETTINGS_MODULE": "djproject.settings",
        "DJANGO_WORK_DIR": str(tmp_path),
        "XDG_DATA_HOME": str(tmp_path / "xdg"),
        "DJANGO_TEST_DB_NAME": f"test_cf_{uuid.uuid4().hex[:10]}",
        **extra_env,
    }
    for key in ("CELERYFLOW_BACKEND", "CELERYFLOW_BROKER_URL", "CELERYFLOW_APP"):
        env.pop(key, None)
    return subprocess.run(
        [sys.executable, "manage.py", "test", "shop", "--noinput", "-v", "2"],
        cwd=PROJECT, env=env, capture_output=True, text=True, timeout=240,
    )


def check(result: subprocess.CompletedProcess[str]) -> None:
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-6000:]
    assert "Ran 9 tests" in output and "\nOK" in output, output[-3000:]
    assert "Applying celeryflow.0001_logbook... OK" in output


def test_django_project_on_sqlite(tmp_path: Path) -> None:
    check(run_manage_test(tmp_path, {"DJANGO_DB": "sqlite"}))


@pytest.mark.services
def test_django_project_on_postgresql(tmp_path: Path) -> None:
    url = make_url(POSTGRES_BASE)
    require_service("PostgreSQL", url.host or "127.0.0.1", url.port or 5432)
    check(run_manage_test(tmp_path, {
        "DJANGO_DB": "postgresql",
        "DJANGO_PG_HOST": url.host or "127.0.0.1",
        "DJANGO_PG_PORT": str(url.port or 5432),
        "DJANGO_PG_USER": url.username or "postgres",
        "DJANGO_PG_PASSWORD": url.password or "",
    }))
