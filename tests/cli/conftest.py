"""CLI test helpers: a clean environment, a logbook per backend, and a few flows in it."""

from __future__ import annotations

import importlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from click.testing import CliRunner, Result

from celeryflow import engines
from celeryflow.cli import cli
from tests.contrib.atoms import order_flow, order_store

ENV_KEYS = ("CELERYFLOW_BACKEND", "CELERYFLOW_BROKER_URL", "CELERYFLOW_APP", "CELERYFLOW_IMPORTS",
            "CELERYFLOW_RESULT_BACKEND")


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for key in ENV_KEYS:
        monkeypatch.delenv(key, raising=False)
    install_module: Any = importlib.import_module("celeryflow.install")
    previous = install_module._installed
    yield
    install_module._installed = previous


def invoke(*args: str, env: dict[str, str] | None = None, input: str | None = None) -> Result:
    """Run ``celeryflow <args>`` in-process and return the result (exit code, stdout, stderr)."""
    return CliRunner().invoke(cli, list(args), env=env, input=input, catch_exceptions=False)


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.services)])
def logbook_url(request: pytest.FixtureRequest) -> str:
    url: str = request.getfixturevalue("sqlite_url" if request.param == "sqlite" else "postgres_url")
    return url


@dataclass
class Populated:
    url: str
    ok: list[str]
    declined: str


@pytest.fixture
def populated(logbook_url: str) -> Populated:
    """Two orders that succeed and one whose card is declined (compensated), on the embedded worker."""
    ok = []
    for order in ("A-1", "A-2"):
        engine = engines.load_from_factory(order_flow, store=order_store(order), backend=logbook_url)
        engine.run(timeout=30)
        ok.append(engine.flow_uuid)
    engine = engines.load_from_factory(order_flow, store=order_store("B-1", decline=True), backend=logbook_url)
    with pytest.raises(Exception, match="card declined"):
        engine.run(timeout=30)
    return Populated(logbook_url, ok, engine.flow_uuid)
