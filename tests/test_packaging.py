"""Packaging checks that need no build: setup.py's metadata, package list and data
globs, requirements importable, the console script, and the pytest plugin set-up."""

from __future__ import annotations

import glob
import importlib
import importlib.metadata as md
import re
from pathlib import Path
from typing import Any

import pytest

from tests.support.packaging import setup_arguments

REPO = Path(__file__).resolve().parents[1]

# distribution name -> top-level module, where they differ
MODULE_OF = {
    "sqlalchemy": "sqlalchemy",
    "pyyaml": "yaml",
    "pymysql": "pymysql",
    "psycopg": "psycopg",
    "pytest-celery": "pytest_celery",
    "pytest-timeout": "pytest_timeout",
    "django": "django",
    "flask": "flask",
    "psycopg2-binary": "psycopg2",
    "flask-sqlalchemy": "flask_sqlalchemy",
}


@pytest.fixture(scope="module")
def setup_kwargs() -> dict[str, Any]:
    """The keyword arguments setup.py passes to setuptools.setup (not run)."""
    return setup_arguments()


def _split(req: str) -> tuple[str, str | None]:
    """'psycopg[binary]>=3.1' -> ('psycopg', '3.1')"""
    m = re.fullmatch(r"([A-Za-z0-9_.-]+)(?:\[[^\]]*\])?\s*(?:>=\s*([0-9.]+))?.*", req)
    assert m, f"unparsable requirement {req!r}"
    return m.group(1), m.group(2)


def _version_tuple(text: str) -> tuple[int, ...]:
    return tuple(int(p) for p in re.findall(r"\d+", text)[:3])


def test_metadata(setup_kwargs: dict[str, Any]) -> None:
    assert setup_kwargs["name"] == "celeryflow"
    assert setup_kwargs["version"] == "0.1.0"
    assert setup_kwargs["python_requires"] == ">=3.10"
    assert "celeryflow=celeryflow.cli:main" in setup_kwargs["entry_points"]["console_scripts"]


def test_packages(setup_kwargs: dict[str, Any]) -> None:
    packages = set(setup_kwargs["packages"])
    assert {"celeryflow", "celeryflow_tasks", "conductor"} <= packages
    for pkg in packages:
        top = pkg.split(".")[0]
        assert top in {"celeryflow", "celeryflow_tasks", "conductor"}, f"{pkg} must not be installed"


def test_every_code_directory_is_a_package(setup_kwargs: dict[str, Any]) -> None:
    """A sub-directory with modules but no __init__.py would silently be left out of
    the wheel (find_packages skips it)."""
    packages = set(setup_kwargs["packages"])
    for top in ("celeryflow", "celeryflow_tasks", "conductor"):
        for path in sorted((REPO / top).rglob("*.py")):
            rel = path.parent.relative_to(REPO)
            if "migrations" in rel.parts or "__pycache__" in rel.parts:
                continue  # alembic's directory is package data, not a package
            assert ".".join(rel.parts) in packages, f"{rel} has modules but is not a package"


def test_config_is_not_a_package() -> None:
    assert not (REPO / "config" / "__init__.py").exists(), "config/ must not be a Python package"


def test_py_typed() -> None:
    assert (REPO / "celeryflow" / "py.typed").is_file()


def test_package_data_globs_match(setup_kwargs: dict[str, Any]) -> None:
    for pkg, patterns in setup_kwargs["package_data"].items():
        base = REPO / pkg.replace(".", "/")
        for pattern in patterns:
            assert glob.glob(str(base / pattern)), f"package_data {pkg}:{pattern} matches no file"


def test_manifest_ships_package_data(setup_kwargs: dict[str, Any]) -> None:
    manifest = (REPO / "MANIFEST.in").read_text(encoding="utf-8")
    assert "celeryflow/py.typed" in manifest
    assert re.search(r"recursive-include celeryflow/persistence/migrations .*\*\.mako", manifest)


def test_migrations_are_complete() -> None:
    mig = REPO / "celeryflow" / "persistence" / "migrations"
    assert (mig / "env.py").is_file()
    assert (mig / "script.py.mako").is_file()
    assert list((mig / "versions").glob("*.py")), "at least one alembic revision"


def test_install_requires_importable_and_new_enough(setup_kwargs: dict[str, Any]) -> None:
    for req in setup_kwargs["install_requires"]:
        dist, minimum = _split(req)
        module = MODULE_OF.get(dist.lower(), dist.lower().replace("-", "_"))
        importlib.import_module(module)
        if minimum:
            installed = md.version(dist)
            assert _version_tuple(installed) >= _version_tuple(minimum), f"{dist} {installed} < {minimum}"


def test_test_extra_importable(setup_kwargs: dict[str, Any]) -> None:
    for req in setup_kwargs["extras_require"]["test"]:
        dist, _ = _split(req)
        importlib.import_module(MODULE_OF.get(dist.lower(), dist.lower().replace("-", "_")))


def test_dev_extra_contains_test(setup_kwargs: dict[str, Any]) -> None:
    extras = setup_kwargs["extras_require"]
    assert set(extras["test"]) <= set(extras["dev"])
    assert {_split(r)[0] for r in extras["dev"]} >= {"mypy", "ruff"}


def test_console_script_resolves() -> None:
    module = importlib.import_module("celeryflow.cli")
    assert callable(module.main)


def test_pytest_celery_docker_plugin_disabled(request: pytest.FixtureRequest) -> None:
    """pytest-celery's Docker fixtures would shadow celery.contrib.pytest's classic ones:
    every pytest11 entry point it ships must be disabled with -p no:<name>."""
    addopts = " ".join(request.config.getini("addopts"))
    disabled = set(re.findall(r"-p\s+no:(\S+)", addopts))
    shipped = [ep for ep in md.entry_points(group="pytest11") if ep.value.startswith("pytest_celery")]
    if not shipped:
        pytest.skip("pytest-celery is not installed")
    for ep in shipped:
        assert ep.name in disabled, f"pytest-celery plugin {ep.name!r} is not disabled in addopts"


def test_classic_celery_worker_fixture_wins(request: pytest.FixtureRequest) -> None:
    defs = request._fixturemanager.getfixturedefs("celery_worker", request.node)
    assert defs, "celery_worker fixture missing"
    assert defs[-1].func.__module__ == "celery.contrib.pytest"


def test_redis_extra_depends_on_celerys_redis_extra(setup_kwargs: dict[str, Any]) -> None:
    """kombu's Redis transport imports ``packaging`` (and ``redis``) through kombu's own
    ``redis`` extra, which only ``celery[redis]`` brings: a bare ``redis`` requirement
    gave a worker that died with No module named 'packaging'."""
    extras = setup_kwargs["extras_require"]
    assert any(re.match(r"celery\[[^\]]*\bredis\b[^\]]*\]", req) for req in extras["redis"]), extras["redis"]


def test_no_broker_client_in_the_core_install(setup_kwargs: dict[str, Any]) -> None:
    """The embedded default needs no broker client; a half-installed Redis client in the
    core (``redis`` without kombu's extra) is what hid the missing extra."""
    assert "redis" not in {_split(r)[0].lower() for r in setup_kwargs["install_requires"]}


def _extras_in(text: str, pattern: str) -> set[str]:
    m = re.search(pattern, text)
    assert m, f"no match for {pattern!r}"
    return set(m.group(1).split(","))


def test_production_extras_agree_everywhere(setup_kwargs: dict[str, Any]) -> None:
    """The README's production install, docs/operations.md, the CI job that installs
    only those extras, and the compose image all name the same extras (the image more)."""
    production = _extras_in((REPO / "README.md").read_text(encoding="utf-8"),
                            r"## Production[^\n]*\n+```bash\npip install -e '\.\[([a-z,]+)\]'")
    assert production >= {"redis", "postgres"}
    assert production <= set(setup_kwargs["extras_require"])
    operations = _extras_in((REPO / "docs" / "operations.md").read_text(encoding="utf-8"),
                            r"pip install '\.\[([a-z,]+)\]'")
    assert operations == production
    script = _extras_in((REPO / ".ci" / "production-install.sh").read_text(encoding="utf-8"),
                        r'EXTRAS="([a-z,]+)"')
    assert script == production
    image = _extras_in((REPO / "compose" / "Dockerfile").read_text(encoding="utf-8"),
                       r"""pip install (?:--no-cache-dir )?["']\.\[([a-z,]+)\]["']""")
    assert image >= production
    assert re.search(r"^bash \S*\.ci/production-install\.sh", (REPO / ".ci" / "run").read_text(encoding="utf-8"), re.M)
