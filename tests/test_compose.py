"""The docker compose stack is well-formed (parsed with PyYAML; Docker is never run)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

yaml = pytest.importorskip("yaml")

REPO = Path(__file__).resolve().parents[1]
COMPOSE_DIR = REPO / "compose"
COMPOSE_FILE = COMPOSE_DIR / "docker-compose.yml"

CELERYFLOW_SERVICES = ("migrate", "worker1", "worker2", "conductor", "flower", "web", "flowview")


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    data = yaml.safe_load(COMPOSE_FILE.read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return data


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return compose["services"]


def _env_files(service: dict[str, Any]) -> list[str]:
    files = service.get("env_file", [])
    return [files] if isinstance(files, str) else list(files)


def _read_env(path: Path) -> dict[str, str]:
    env = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        assert "=" in line, f"{path.name}: not KEY=VALUE: {line!r}"
        key, _, value = line.partition("=")
        assert re.fullmatch(r"[A-Z_][A-Z0-9_]*", key), f"{path.name}: bad variable name {key!r}"
        env[key] = value
    return env


def test_expected_services(services: dict[str, dict[str, Any]]) -> None:
    assert set(services) >= {"redis", "postgres", *CELERYFLOW_SERVICES}


def test_images_and_builds(services: dict[str, dict[str, Any]]) -> None:
    assert services["redis"]["image"].startswith("redis:")
    assert services["postgres"]["image"].startswith("postgres:")
    for name in CELERYFLOW_SERVICES:
        build = services[name]["build"]
        context = (COMPOSE_DIR / build["context"]).resolve()
        assert context == REPO, f"{name}: build context must be the repository root"
        assert (context / build["dockerfile"]).is_file()


def test_dockerfile_installs_the_project() -> None:
    text = (COMPOSE_DIR / "Dockerfile").read_text(encoding="utf-8")
    assert re.search(r"^FROM python:3\.1\d", text, re.M)
    assert re.search(r'pip install "?\.\[', text), "the image installs the project with its extras"
    assert "USER " in text, "processes do not run as root"


def test_commands(services: dict[str, dict[str, Any]]) -> None:
    def cmd(name: str) -> list[str]:
        command = services[name]["command"]
        return command.split() if isinstance(command, str) else list(command)

    for name in ("worker1", "worker2"):
        argv = cmd(name)
        assert argv[:4] == ["celery", "-A", "celeryflow_tasks", "worker"]
        assert any(a.startswith(f"--hostname={name}@") for a in argv), "distinct worker node names"
    assert cmd("conductor") in (["python", "-m", "conductor"], ["celery", "-A", "conductor", "beat"])
    assert cmd("flower")[:4] == ["celery", "-A", "celeryflow_tasks", "flower"]
    assert cmd("web")[0] == "gunicorn" and cmd("web")[-1] == "webapp:app", "not Flask's development server"
    assert cmd("migrate") == ["celeryflow", "db", "upgrade"]
    assert services["migrate"]["restart"] == "no"


def test_env_files_exist_and_parse(services: dict[str, dict[str, Any]]) -> None:
    for name, service in services.items():
        for rel in _env_files(service):
            path = (COMPOSE_DIR / rel).resolve()
            assert path.is_file(), f"{name}: env file {rel} is missing"
            assert path.parent == REPO / "config", f"{name}: env files live in config/"
            _read_env(path)


def test_celeryflow_services_get_the_common_settings(services: dict[str, dict[str, Any]]) -> None:
    common = _read_env(REPO / "config" / "common.env")
    for key in ("CELERYFLOW_BROKER_URL", "CELERYFLOW_BACKEND", "CELERYFLOW_IMPORTS"):
        assert common.get(key), f"common.env sets {key}"
    assert common["CELERYFLOW_BROKER_URL"].startswith("redis://redis:")
    assert "@postgres:" in common["CELERYFLOW_BACKEND"]
    pg = _read_env(REPO / "config" / "postgres.env")
    assert f"{pg['POSTGRES_USER']}:{pg['POSTGRES_PASSWORD']}@postgres:5432/{pg['POSTGRES_DB']}" in (
        common["CELERYFLOW_BACKEND"]
    )
    for name in CELERYFLOW_SERVICES:
        assert "../config/common.env" in _env_files(services[name]), name


def test_flower_api_is_protected(services: dict[str, dict[str, Any]]) -> None:
    env: dict[str, str] = {}
    for rel in _env_files(services["flower"]):
        env.update(_read_env((COMPOSE_DIR / rel).resolve()))
    assert env.get("FLOWER_BASIC_AUTH") or env.get("FLOWER_UNAUTHENTICATED_API") == "true"


def test_ports(services: dict[str, dict[str, Any]]) -> None:
    assert "5555:5555" in services["flower"]["ports"]
    assert "8000:8000" in services["web"]["ports"]
    web_env = _read_env(REPO / "config" / "web.env")
    assert web_env["WEBAPP_PORT"] == "8000"


def test_healthchecks(services: dict[str, dict[str, Any]]) -> None:
    for name in ("redis", "postgres", "worker1", "worker2", "flower", "web"):
        check = services[name].get("healthcheck")
        assert check and check.get("test"), f"{name} has a healthcheck"


def test_depends_on_conditions(services: dict[str, dict[str, Any]]) -> None:
    valid = {"service_started", "service_healthy", "service_completed_successfully"}
    for name, service in services.items():
        for dep, spec in (service.get("depends_on") or {}).items():
            assert dep in services, f"{name} depends on unknown service {dep}"
            assert dep != name, f"{name} depends on itself"
            assert spec["condition"] in valid
            if spec["condition"] == "service_healthy":
                assert services[dep].get("healthcheck"), f"{name} waits for {dep}'s health: it has no check"
    for name in CELERYFLOW_SERVICES:
        deps = services[name]["depends_on"]
        assert deps["postgres"]["condition"] == "service_healthy", name
        if name != "migrate":
            assert deps["redis"]["condition"] == "service_healthy", name
            assert deps["migrate"]["condition"] == "service_completed_successfully", name


def test_volumes_declared(compose: dict[str, Any], services: dict[str, dict[str, Any]]) -> None:
    declared = set(compose.get("volumes") or {})
    for name, service in services.items():
        for volume in service.get("volumes", []):
            source = volume.split(":", 1)[0]
            if not source.startswith((".", "/")):
                assert source in declared, f"{name}: named volume {source} is not declared"


def test_env_variables_are_documented() -> None:
    """Every CELERYFLOW_* variable the config files set is described in docs/configuration.md."""
    docs = (REPO / "docs" / "configuration.md").read_text(encoding="utf-8")
    config = REPO / "config"
    for path in sorted([*config.glob("*.env"), config / ".env.example"]):
        for key in _read_env(path):
            if key.startswith("CELERYFLOW_"):
                assert f"`{key}`" in docs, f"{path.name}: {key} is not in docs/configuration.md"


def test_flow_view_service(services: dict[str, dict[str, Any]]) -> None:
    """``celeryflow web`` (the flow view, #14): reachable from the host, health-checked, image has its extra."""
    view = services["flowview"]
    argv = view["command"]
    assert argv[:2] == ["celeryflow", "web"] and "--address=0.0.0.0" in argv and "--port=5556" in argv
    assert "5556:5556" in view["ports"]
    assert "5556/healthcheck" in " ".join(view["healthcheck"]["test"])
    assert view["environment"]["CELERYFLOW_WEB_FLOWER_URL"].endswith(":5555")
    assert not str(view["environment"].get("CELERYFLOW_WEB_ACTIONS", "")).strip(), "read-only by default"
    dockerfile = (COMPOSE_DIR / "Dockerfile").read_text(encoding="utf-8")
    assert re.search(r'pip install "\.\[[^"]*\bweb\b', dockerfile), "the image installs the web extra"
    assert "graphviz" in dockerfile, "dot draws the flow graphs"


# Keys of the Compose specification (compose-spec.io) this stack may use: a typo such as
# "envfile" or "depend_on" is silently ignored by some compose versions.
TOP_LEVEL_KEYS = {"name", "services", "volumes", "networks", "configs", "secrets"}
SERVICE_KEYS = {
    "image", "build", "command", "entrypoint", "environment", "env_file", "ports", "volumes", "depends_on",
    "healthcheck", "restart", "stop_signal", "stop_grace_period", "networks", "user", "working_dir", "labels",
    "deploy", "logging", "profiles", "expose", "extra_hosts", "hostname", "init", "ulimits",
}


def test_compose_file_uses_only_specified_keys(compose: dict[str, Any], services: dict[str, dict[str, Any]]) -> None:
    assert {k for k in compose if not k.startswith("x-")} <= TOP_LEVEL_KEYS
    for name, service in services.items():
        unknown = {k for k in service if not k.startswith("x-")} - SERVICE_KEYS
        assert not unknown, f"{name}: keys outside the compose specification: {unknown}"
        assert "image" in service or "build" in service, name
        command = service.get("command", [])
        assert isinstance(command, (str, list)) and all(isinstance(a, str) for a in command), name
        for port in service.get("ports", []):
            assert re.fullmatch(r"\d+:\d+", str(port)), f"{name}: port {port!r}"


def test_no_result_backend_as_celeryconfig_says(services: dict[str, dict[str, Any]]) -> None:
    """config/celeryconfig.py runs without a result backend (the logbook keeps results): so does the stack."""
    assert "CELERYFLOW_RESULT_BACKEND" in (REPO / "config" / "celeryconfig.py").read_text(encoding="utf-8")
    for name in CELERYFLOW_SERVICES:
        for rel in _env_files(services[name]):
            env = _read_env((COMPOSE_DIR / rel).resolve())
            assert not env.get("CELERYFLOW_RESULT_BACKEND"), f"{name}: {rel} sets a result backend"


def test_web_service_runs_the_example_under_gunicorn(services: dict[str, dict[str, Any]], tmp_path: Path) -> None:
    """The web service's own argv (port changed), run here: gunicorn serves the example app."""
    import socket
    import subprocess
    import sys
    import urllib.request

    from tests.support.procs import ProcessGroup, wait_for

    dockerfile = (COMPOSE_DIR / "Dockerfile").read_text(encoding="utf-8")
    assert "gunicorn" in dockerfile.split("pip install", 1)[1].split("\n\n", 1)[0], "the image installs gunicorn"
    argv = list(services["web"]["command"])
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    argv[argv.index("--bind") + 1] = f"127.0.0.1:{port}"
    gunicorn = [sys.executable, "-m", "gunicorn", *argv[1:]]
    assert subprocess.run([sys.executable, "-m", "gunicorn", "--version"], capture_output=True).returncode == 0
    env = {"PYTHONPATH": str(REPO / "examples"), "WEB_CONCURRENCY": "1", "XDG_DATA_HOME": str(tmp_path),
           "CELERYFLOW_BACKEND": f"sqlite:///{tmp_path / 'web.db'}", "CELERYFLOW_BROKER_URL": None,
           "CELERYFLOW_IMPORTS": None, "CELERYFLOW_AUTO_MIGRATE": None}
    with ProcessGroup(tmp_path, env=env) as group:
        group.start("web", gunicorn)

        def page() -> int | None:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5) as response:
                return int(response.status)

        assert wait_for(page, timeout=60, ignore=OSError, message=lambda: group.dump()) == 200
        assert "Booting worker" in group.output("web")
