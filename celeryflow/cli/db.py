"""``celeryflow db``: the logbook schema (Alembic migrations)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from celeryflow.cli.common import backend_option, guarded, resolve_backend_url

if TYPE_CHECKING:
    from celeryflow.persistence.backends.base import Backend


@click.group()
def db() -> None:
    """The logbook database schema."""


def _backend(backend_url: str | None) -> Backend:
    from celeryflow.persistence.backends import fetch

    return fetch(resolve_backend_url(backend_url), auto_migrate=False)


@db.command()
@backend_option
@click.option("--revision", default="head", show_default=True, help="Target schema revision.")
@guarded
def upgrade(backend_url: str | None, revision: str) -> None:
    """Create or upgrade the logbook schema (safe while other processes start)."""
    from celeryflow.persistence import migrate

    backend = _backend(backend_url)
    before = migrate.current(backend)
    migrate.upgrade(backend, revision)
    after = migrate.current(backend)
    if before == after:
        click.echo(f"{backend.url.masked}: schema already at {after}")
    else:
        click.echo(f"{backend.url.masked}: schema upgraded {before or '(empty)'} -> {after}")


@db.command()
@backend_option
@guarded
def current(backend_url: str | None) -> None:
    """Show the schema revision of the logbook and the newest this celeryflow knows."""
    from celeryflow.persistence import migrate

    backend = _backend(backend_url)
    revision = migrate.current(backend)
    head = migrate.head()
    status = "up to date" if revision == head else ("no schema yet" if revision is None else "needs upgrade")
    click.echo(f"{backend.url.masked}: {revision or '-'} (head {head}: {status})")
    if revision != head:
        raise SystemExit(1)
