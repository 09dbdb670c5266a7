"""A small Django project using celeryflow: orders placed by a view run as flows.

``DJANGO_DB`` picks the database: ``sqlite`` (default) or ``postgresql``
(``DJANGO_PG_HOST``/``DJANGO_PG_PORT``/``DJANGO_PG_USER``/``DJANGO_PG_PASSWORD``;
the test runner creates ``DJANGO_TEST_DB_NAME``). The celeryflow logbook lives in
the same database (``CELERYFLOW_BACKEND = "django"``), so submits join the request's
transaction (``ATOMIC_REQUESTS``).
"""

import os
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent
SECRET_KEY = "celeryflow-test-project-not-secret"
DEBUG = False
ALLOWED_HOSTS = ["*"]
USE_TZ = True
TIME_ZONE = "UTC"

INSTALLED_APPS = [
    "django.contrib.contenttypes",
    "celeryflow.contrib.django",
    "shop",
]
MIDDLEWARE: list[str] = []
ROOT_URLCONF = "djproject.urls"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

_DB = os.environ.get("DJANGO_DB", "sqlite")
_WORK = Path(os.environ.get("DJANGO_WORK_DIR", BASE_DIR))
if _DB == "sqlite":
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": str(_WORK / "db.sqlite3"),
            # a file, not Django's in-memory test database: celeryflow's own connections must see it
            "TEST": {"NAME": str(_WORK / os.environ.get("DJANGO_TEST_DB_NAME", "test_db.sqlite3"))},
            "ATOMIC_REQUESTS": True,
            "OPTIONS": {"timeout": 30},
        }
    }
elif _DB == "postgresql":
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.postgresql",
            "NAME": os.environ.get("DJANGO_PG_NAME", "djproject"),
            "USER": os.environ.get("DJANGO_PG_USER", "postgres"),
            "PASSWORD": os.environ.get("DJANGO_PG_PASSWORD", ""),
            "HOST": os.environ.get("DJANGO_PG_HOST", "127.0.0.1"),
            "PORT": os.environ.get("DJANGO_PG_PORT", "5432"),
            "TEST": {"NAME": os.environ.get("DJANGO_TEST_DB_NAME", "test_djproject")},
            "ATOMIC_REQUESTS": True,
        }
    }
else:
    raise RuntimeError(f"DJANGO_DB={_DB!r}: use sqlite or postgresql")

# --- celeryflow ------------------------------------------------------------------------
CELERYFLOW_BACKEND = "django"  # the logbook lives in DATABASES["default"]
# CELERYFLOW_APP = "djproject.celery:app"   # production: your Celery app; unset = embedded worker
CELERYFLOW_IMPORTS = "shop.flows"
