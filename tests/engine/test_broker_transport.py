"""A broker transport whose Python dependencies are not installed is reported as such.

A fresh ``pip install`` that misses kombu's own ``redis`` extra cannot import kombu's
Redis transport (``No module named 'packaging'``); the submitter used to call that
"broker ... is unreachable". The real cause, the missing module and the extra to
install, must reach the caller. Each case runs in a fresh interpreter in which the
module is made unimportable (``sys.modules[name] = None``, what Python itself does for
a blocked import): the test process has already imported the transport.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

SCRIPT = textwrap.dedent(
    """
    import json, sys
    sys.modules[{blocked!r}] = None     # not installed, as on a fresh machine
    from celery import Celery
    import celeryflow
    from celeryflow import exceptions, task
    from celeryflow.patterns import linear_flow

    class Nothing(task.Task):
        def execute(self):
            return None

    app = Celery("fresh", broker={broker!r}, set_as_current=False)
    app.conf.broker_connection_timeout = 2
    celeryflow.install(app, backend={backend!r})
    try:
        celeryflow.submit(linear_flow.Flow("f").add(Nothing()), app=app)
    except exceptions.CeleryflowError as exc:
        print(json.dumps({{"type": type(exc).__name__, "message": str(exc),
                          "module": getattr(exc, "module", None), "extra": getattr(exc, "extra", None),
                          "unavailable": isinstance(exc, exceptions.BrokerUnavailable)}}))
    else:
        print(json.dumps({{"type": None}}))
    """
)


def _submit_without(blocked: str, broker: str, backend: str) -> dict[str, object]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    for name in ("CELERYFLOW_BROKER_URL", "CELERYFLOW_BACKEND", "CELERYFLOW_APP"):
        env.pop(name, None)
    proc = subprocess.run([sys.executable, "-c", SCRIPT.format(blocked=blocked, broker=broker, backend=backend)],
                          env=env, capture_output=True, text=True, timeout=60, cwd=REPO)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("blocked", ["packaging", "redis"])
def test_missing_redis_transport_dependency_names_the_module_and_the_extra(blocked, db_url):
    got = _submit_without(blocked, "redis://127.0.0.1:6379/15", db_url)
    assert got["type"] == "TransportNotInstalled", got
    assert got["module"] == blocked
    assert got["extra"] == "celeryflow[redis]"
    assert not got["unavailable"], "a missing package is not an unreachable broker"
    message = str(got["message"])
    assert "unreachable" not in message
    assert repr(blocked) in message and "pip install 'celeryflow[redis]'" in message


def test_missing_transport_dependency_writes_nothing(db_url):
    from sqlalchemy import func, select

    from celeryflow.persistence.backends import fetch
    from celeryflow.persistence.tables import FlowRow

    _submit_without("packaging", "redis://127.0.0.1:6379/15", db_url)
    assert fetch(db_url).run(lambda s: s.scalar(select(func.count()).select_from(FlowRow))) == 0
