"""The example web app: provision tenants with a flow started from a Flask view.

    python examples/webapp.py              # http://127.0.0.1:8000 (WEBAPP_HOST / WEBAPP_PORT)

* ``GET /``                 a page listing recent flows, with a form to start one
* ``POST /tenants``         start provisioning (form or JSON ``{"tenant": "acme", "fail": false}``) → 202
* ``GET /flows/<id>``       the flow's state as JSON (the ``CeleryFlow`` extension's view)

With nothing configured it runs flows on the embedded worker (in this process). In the
compose stack (compose/docker-compose.yml) it talks to Redis and PostgreSQL and the
workers run the atoms: they import this module (``CELERYFLOW_IMPORTS=webapp`` with
``examples/`` on ``PYTHONPATH``), which is why the atoms and the factory live here.

Provisioning: a database and a bucket in parallel, then configuration, then a
welcome mail. ``fail`` makes configuration fail, so you can watch the compensation
in Flower (``celeryflow: provision-tenant / create_bucket (revert)``…) and in
``celeryflow top``.
"""

from __future__ import annotations

import html
import os
import time
from typing import Any

from flask import Flask, redirect, request

from celeryflow import registry, task
from celeryflow.contrib import snapshot
from celeryflow.contrib.flask import CeleryFlow
from celeryflow.patterns import graph_flow, linear_flow

STEP_SECONDS = float(os.environ.get("WEBAPP_STEP_SECONDS", "0.5"))


class ConfigurationFailed(RuntimeError):
    """The injected failure (``fail=true``)."""


class CreateDatabase(task.Task):
    default_provides = "database"

    def execute(self, tenant: str) -> str:
        time.sleep(STEP_SECONDS)
        return f"db_{tenant}"

    def revert(self, tenant: str, result: Any, flow_failures: Any, **kwargs: Any) -> None:
        time.sleep(STEP_SECONDS / 2)  # drop the database


class CreateBucket(task.Task):
    default_provides = "bucket"

    def execute(self, tenant: str) -> str:
        time.sleep(STEP_SECONDS)
        return f"s3://tenants/{tenant}"

    def revert(self, tenant: str, result: Any, flow_failures: Any, **kwargs: Any) -> None:
        time.sleep(STEP_SECONDS / 2)  # delete the bucket


class Configure(task.Task):
    default_provides = "config"

    def execute(self, tenant: str, database: str, bucket: str, fail: bool = False) -> dict[str, str]:
        time.sleep(STEP_SECONDS)
        if fail:
            raise ConfigurationFailed(f"could not configure {tenant}: quota exceeded")
        return {"database": database, "bucket": bucket}

    def revert(self, tenant: str, result: Any, flow_failures: Any, **kwargs: Any) -> None:
        pass


class SendWelcome(task.Task):
    default_provides = "welcomed"

    def execute(self, tenant: str, config: dict[str, str]) -> bool:
        time.sleep(STEP_SECONDS / 2)
        return True


@registry.register
def provision_tenant() -> linear_flow.Flow:
    resources = graph_flow.Flow("resources").add(CreateDatabase("create_database"), CreateBucket("create_bucket"))
    return linear_flow.Flow("provision-tenant").add(resources, Configure("configure"), SendWelcome("send_welcome"))


def create_app(config: dict[str, Any] | None = None) -> Flask:
    app = Flask(__name__)
    app.config["CELERYFLOW_STATUS_RESULTS"] = True
    app.config.update(config or {})
    flows = CeleryFlow(app)

    @app.get("/")
    def index() -> str:
        recent = snapshot.list_flows(flows.backend, limit=20, name="provision-tenant")
        rows = "".join(
            f"<tr><td><a href='/flows/{f.uuid}'>{f.uuid[:8]}</a></td><td>{html.escape(f.state)}</td>"
            f"<td>{f.done}/{f.total}</td><td>{html.escape(', '.join(f.running))}</td></tr>"
            for f in recent
        )
        return (
            "<!doctype html><title>celeryflow example</title><h1>Provision a tenant</h1>"
            "<form method=post action=/tenants><input name=tenant value=acme> "
            "<label><input type=checkbox name=fail value=1> make configuration fail</label> "
            "<button>start</button></form>"
            f"<h2>recent flows</h2><table><tr><th>id</th><th>state</th><th>atoms</th><th>running</th></tr>{rows}"
            "</table><p>Also: <code>celeryflow top</code>, Flower on :5555.</p>"
        )

    @app.post("/tenants")
    def start() -> Any:
        data = request.get_json(silent=True) or request.form
        tenant = str(data.get("tenant") or "acme")
        fail = str(data.get("fail", "")).lower() in ("1", "true", "yes", "on")
        handle = flows.submit(provision_tenant, store={"tenant": tenant, "fail": fail})
        if request.is_json:
            return {"flow": handle.id, "status": f"/flows/{handle.id}"}, 202
        return redirect(f"/flows/{handle.id}", code=303)

    return app


app = create_app()


def main() -> None:
    app.run(host=os.environ.get("WEBAPP_HOST", "127.0.0.1"), port=int(os.environ.get("WEBAPP_PORT", "8000")),
            debug=os.environ.get("FLASK_DEBUG") == "1", use_reloader=False)


if __name__ == "__main__":
    # Serve the module imported under its own name ("webapp"), the name workers import it by:
    # atoms and the factory are recorded as "webapp:…", never "__main__:…".
    import webapp

    webapp.main()
