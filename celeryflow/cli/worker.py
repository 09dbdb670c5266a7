"""``celeryflow worker``: ``celery -A celeryflow_tasks worker`` with celeryflow's settings."""

from __future__ import annotations

import os
import shlex
import sys
from collections.abc import Sequence

import click

from celeryflow.cli.common import backend_option, imports_option


def worker_argv(
    app: str, concurrency: int | None, pool: str | None, queues: str | None, loglevel: str, hostname: str | None,
    extra: Sequence[str],
) -> list[str]:
    argv = [sys.executable, "-m", "celery", "-A", app, "worker", "--loglevel", loglevel,
            "-E"]  # task events: Flower and `celeryflow top --inspect`
    if concurrency:
        argv += ["--concurrency", str(concurrency)]
    if pool:
        argv += ["--pool", pool]
    if queues:
        argv += ["--queues", queues]
    if hostname:
        argv += ["--hostname", hostname]
    return argv + list(extra)


def settings_env(broker: str | None, backend_url: str | None, imports: str | None,
                 result_backend: str | None) -> dict[str, str]:
    env: dict[str, str] = {}
    if broker:
        env["CELERYFLOW_BROKER_URL"] = broker
    if result_backend:
        env["CELERYFLOW_RESULT_BACKEND"] = result_backend
    if backend_url:
        env["CELERYFLOW_BACKEND"] = backend_url
    if imports:
        env["CELERYFLOW_IMPORTS"] = imports
    return env


def exec_or_print(argv: list[str], env: dict[str, str], dry_run: bool) -> None:
    if dry_run:
        for key, value in sorted(env.items()):
            click.echo(f"{key}={shlex.quote(value)}")
        click.echo(shlex.join(argv))
        return
    os.environ.update(env)
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(argv[0], argv)  # the worker replaces this process: signals reach Celery directly


@click.command(context_settings={"ignore_unknown_options": True, "allow_extra_args": True})
@click.option("--app", "-A", "app", envvar="CELERYFLOW_APP", default="celeryflow_tasks", show_default=True,
              help="Celery app module (yours, with celeryflow.install(app), or the stock one).")
@click.option("--broker", envvar="CELERYFLOW_BROKER_URL", default=None, metavar="URL",
              help="Broker URL (env CELERYFLOW_BROKER_URL).")
@click.option("--result-backend", envvar="CELERYFLOW_RESULT_BACKEND", default=None, metavar="URL",
              help="Celery result backend (optional; celeryflow keeps results in its logbook).")
@backend_option
@imports_option
@click.option("--concurrency", "-c", type=int, default=None, help="Pool size (default: CPUs).")
@click.option("--pool", "-P", default=None, help="prefork (default), threads, solo, gevent…")
@click.option("--queues", "-Q", default=None, help="Comma-separated queues to consume.")
@click.option("--loglevel", "-l", default="INFO", show_default=True)
@click.option("--hostname", "-n", default=None, help="Worker node name, e.g. worker1@%h.")
@click.option("--dry-run", is_flag=True, help="Print the environment and command instead of running it.")
@click.pass_context
def worker(ctx: click.Context, app: str, broker: str | None, result_backend: str | None, backend_url: str | None,
           imports: str | None, concurrency: int | None, pool: str | None, queues: str | None, loglevel: str,
           hostname: str | None, dry_run: bool) -> None:
    """Run a Celery worker for celeryflow (extra arguments go to `celery worker`).

    celeryflow's tasks carry late acks, reject-on-worker-lost and JSON only; the stock
    app adds prefetch 1; task events (-E) are on so Flower sees the flows.
    """
    env = settings_env(broker, backend_url, imports, result_backend)
    exec_or_print(worker_argv(app, concurrency, pool, queues, loglevel, hostname, ctx.args), env, dry_run)
