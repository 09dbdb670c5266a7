"""Secret-looking names are masked wherever a flow's data is shown.

The project's own example (examples/compensation.py) stores a card number under
``card``; ``celeryflow flows show`` printed it. The default list covers payment and
identity data and HTTP credentials; it stays configurable (``CELERYFLOW_MASK_KEYS``).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from celeryflow import task
from celeryflow.contrib.snapshot import MASK
from celeryflow.masking import DEFAULT_MASK_KEYS, is_secret_name, mask_value
from celeryflow.runtime.settings import Settings
from tests.support.procs import REPO_ROOT

CARD = "4111111111111111"


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CELERYFLOW_")}
    env.update(CELERYFLOW_BACKEND=f"sqlite:///{tmp_path / 'logbook.db'}", XDG_DATA_HOME=str(tmp_path / "xdg"),
               PYTHONPATH=str(REPO_ROOT), **extra)
    return env


def _cli(env: dict[str, str], cwd: Path, *args: str) -> str:
    done = subprocess.run([sys.executable, "-m", "celeryflow", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=60, stdin=subprocess.DEVNULL)
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.fixture
def compensation_flow(tmp_path: Path) -> tuple[dict[str, str], str]:
    """Run examples/compensation.py (as test_examples does) and return its flow id."""
    env = _env(tmp_path)
    done = subprocess.run([sys.executable, str(REPO_ROOT / "examples" / "compensation.py")], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)
    assert done.returncode == 0, done.stdout + done.stderr
    listed = json.loads(_cli(env, tmp_path, "flows", "list", "--json"))
    return env, listed[0]["id"]


def test_flows_show_masks_the_example_card_number(compensation_flow, tmp_path):
    env, flow_id = compensation_flow
    shown = _cli(env, tmp_path, "flows", "show", flow_id)
    as_json = json.loads(_cli(env, tmp_path, "flows", "show", flow_id, "--json"))
    assert CARD not in shown and CARD not in json.dumps(as_json)
    assert as_json["store"]["card"] == MASK
    assert as_json["store"]["traveller"] == "Ada"  # not everything is masked


def test_mask_keys_stay_configurable(compensation_flow, tmp_path):
    env, flow_id = compensation_flow
    env = {**env, "CELERYFLOW_MASK_KEYS": "traveller"}
    as_json = json.loads(_cli(env, tmp_path, "flows", "show", flow_id, "--json"))
    assert as_json["store"]["traveller"] == MASK
    assert as_json["store"]["card"] == CARD  # the list replaces the default


@pytest.mark.parametrize("name", [
    "card", "card_number", "cardNumber", "credit_card", "cvv", "card_cvv", "CVV2", "pan", "card_pan", "panNumber",
    "iban", "payee_IBAN", "ssn", "customer_ssn", "authorization", "Authorization", "cookie", "set-cookie",
    "session", "session_id", "sessionid", "password", "api_key", "apikey", "access_token", "client_secret",
])
def test_secret_looking_names_are_masked(name):
    assert is_secret_name(name, DEFAULT_MASK_KEYS)
    assert Settings().is_masked(name)


@pytest.mark.parametrize("name", ["company", "span", "expand", "lesson", "traveller", "flight", "hotel", "size_gb"])
def test_ordinary_names_are_not_masked(name):
    assert not is_secret_name(name, DEFAULT_MASK_KEYS)


def test_nested_secrets_are_masked():
    value = {"payment": {"card": CARD, "amount": 3}, "headers": [{"Authorization": "Bearer x", "accept": "*/*"}]}
    masked = mask_value(value, Settings().is_masked, MASK)
    assert masked == {"payment": {"card": MASK, "amount": 3}, "headers": [{"Authorization": MASK, "accept": "*/*"}]}


class Tokenize(task.Task):
    """A payment step whose result is itself the card number, and one that nests it."""

    def execute(self, card_number: str) -> str:
        return card_number


class Receipt(task.Task):
    def execute(self, card_number: str) -> dict[str, object]:
        return {"amount": 3, "payment": {"card": card_number}}


def test_results_that_are_secrets_are_masked_in_show_and_status(tmp_path, db_url):
    from celeryflow import engines
    from celeryflow.contrib import snapshot
    from celeryflow.patterns import linear_flow
    from celeryflow.persistence.backends import fetch

    url = db_url
    flow = linear_flow.Flow("pay").add(Tokenize("tokenize", provides="card"), Receipt("receipt", provides="receipt"))
    engine = engines.load(flow, store={"card_number": CARD, "traveller": "Ada"}, backend=url)
    engine.run(timeout=30)
    shown = _cli({**_env(tmp_path), "CELERYFLOW_BACKEND": url}, tmp_path, "flows", "show", engine.flow_uuid)
    assert CARD not in shown
    doc = snapshot.status(snapshot.load_flow(fetch(url), engine.flow_uuid), results=True)
    assert doc["results"] == {"card": MASK, "receipt": {"amount": 3, "payment": {"card": MASK}}}
