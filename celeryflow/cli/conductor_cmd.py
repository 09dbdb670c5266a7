"""``celeryflow conductor``: the recovery sweep and job conductor (``python -m conductor``)."""

from __future__ import annotations

import sys

import click

from celeryflow.cli.common import backend_option, imports_option
from celeryflow.cli.worker import exec_or_print, settings_env


@click.command(context_settings={"ignore_unknown_options": True, "allow_extra_args": True})
@click.option("--broker", envvar="CELERYFLOW_BROKER_URL", default=None, metavar="URL",
              help="Broker URL (env CELERYFLOW_BROKER_URL).")
@backend_option
@imports_option
@click.option("--sweep-interval", type=float, default=None, help="Seconds between sweeps (CELERYFLOW_SWEEP_INTERVAL).")
@click.option("--heartbeat-timeout", type=float, default=None,
              help="Seconds without a heartbeat before a running atom is orphaned (CELERYFLOW_HEARTBEAT_TIMEOUT).")
@click.option("--beat", is_flag=True, help="Run `celery -A conductor beat` instead of the standalone loop.")
@click.option("--loglevel", "-l", default="INFO", show_default=True, help="With --beat.")
@click.option("--dry-run", is_flag=True, help="Print the environment and command instead of running it.")
@click.pass_context
def conductor(ctx: click.Context, broker: str | None, backend_url: str | None, imports: str | None,
              sweep_interval: float | None, heartbeat_timeout: float | None, beat: bool, loglevel: str,
              dry_run: bool) -> None:
    """Run the conductor: re-drives orphaned and stalled flows, runs posted jobs.

    Extra arguments go to `python -m conductor` (or to `celery beat` with --beat).
    Run one or more per deployment; concurrent sweeps are safe.
    """
    env = settings_env(broker, backend_url, imports, None)
    if sweep_interval is not None:
        env["CELERYFLOW_SWEEP_INTERVAL"] = str(sweep_interval)
    if heartbeat_timeout is not None:
        env["CELERYFLOW_HEARTBEAT_TIMEOUT"] = str(heartbeat_timeout)
    if beat:
        argv = [sys.executable, "-m", "celery", "-A", "conductor", "beat", "--loglevel", loglevel, *ctx.args]
    else:
        argv = [sys.executable, "-m", "conductor", *ctx.args]
    exec_or_print(argv, env, dry_run)
