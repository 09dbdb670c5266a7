"""Create or upgrade celeryflow's logbook tables when they live in this Django database.

With ``CELERYFLOW_BACKEND = "django"`` (or ``"django:<alias>"``), ``manage.py migrate``
runs celeryflow's own Alembic migrations on that database (so the test runner's
database has the tables too). Otherwise it does nothing: ``celeryflow db upgrade``
(or the automatic first-use migration) takes care of a separate logbook.
"""

from __future__ import annotations

from typing import Any

from django.db import migrations


def upgrade_logbook(apps: Any, schema_editor: Any) -> None:
    from celeryflow.contrib.django import conf
    from celeryflow.persistence import migrate
    from celeryflow.persistence.backends import fetch

    alias = conf.database_alias()
    if alias is None or alias != schema_editor.connection.alias:
        return
    migrate.upgrade(fetch(conf.logbook_url_for(alias), auto_migrate=False))


class Migration(migrations.Migration):
    # Alembic uses its own connection: no Django transaction may hold the database meanwhile (SQLite).
    atomic = False
    dependencies: list[tuple[str, str]] = []
    operations = [migrations.RunPython(upgrade_logbook, migrations.RunPython.noop, elidable=False)]
