"""Packaging for celeryflow.

Metadata lives here; tool configuration (ruff, mypy, pytest) and the build-system
table live in ``pyproject.toml``. ``config/``, ``compose/``, ``tests/``, ``bench/``
and ``examples/`` are not installed: ``config/`` in particular must never become a
top-level ``config`` package (it would shadow a Django project's ``config``).
"""

from __future__ import annotations

from pathlib import Path

from setuptools import find_packages, setup

HERE = Path(__file__).resolve().parent

README = HERE / "README.md"
LONG_DESCRIPTION = README.read_text(encoding="utf-8") if README.exists() else ""

INSTALL_REQUIRES = [
    "celery>=5.7",
    "kombu>=5.7",
    "SQLAlchemy>=2.0",
    "alembic>=1.13",
    "click>=8.1",
    "rich>=13",
    "networkx>=3.0",
]

# Broker transports come through Celery's own extras, as Celery documents them:
# ``celery[redis]`` brings kombu's ``redis`` extra (redis *and* packaging, which kombu's
# Redis transport imports). A bare ``redis`` requirement left ``packaging`` out and gave a
# worker that died on start. RabbitMQ needs no extra: py-amqp is a dependency of kombu.
# ``redis`` is also named directly because the Redis jobboard imports it itself.
EXTRAS: dict[str, list[str]] = {
    "redis": ["celery[redis]>=5.7", "redis>=5"],
    "postgres": ["psycopg[binary]>=3.1"],
    "mysql": ["PyMySQL>=1.1"],
    "flower": ["flower>=2.0"],
    "django": ["celery[django]>=5.7", "Django>=4.2"],
    # Flask-SQLAlchemy: celeryflow.contrib.flask_sqlalchemy's transactional submit
    "flask": ["Flask>=3.0", "Flask-SQLAlchemy>=3.1"],
    "graph": ["graphviz>=0.20"],
    # test-only: the porting tests compare with TaskFlow itself (never a runtime dependency)
    "taskflow": ["taskflow>=6.5"],
    # the flow web view and its metrics (celeryflow web / celeryflow flower, celeryflow.web)
    "web": ["tornado>=6.1", "prometheus_client>=0.16", "graphviz>=0.20"],
}
EXTRAS["test"] = sorted(
    {
        "hypothesis>=6.100",
        "pytest>=8",
        "pytest-celery>=1.1",
        "pytest-timeout>=2.3",
        "PyYAML>=6.0",
        "selenium>=4.15",  # tests/web: a real browser (Debian's chromium + chromium-driver)
        # postgresql:// with only psycopg2 installed (SQLAlchemy's default driver) is tested too
        "psycopg2-binary>=2.9",
        # the compose stack's web service runs the example app under gunicorn (tested)
        "gunicorn>=22",
        *(req for name in ("redis", "postgres", "mysql", "flower", "django", "flask", "graph", "web")
          for req in EXTRAS[name]),
    }
)
EXTRAS["dev"] = sorted(
    {
        *EXTRAS["test"],
        "mypy>=1.10",
        "ruff>=0.5",
        "types-PyYAML",
    }
)
EXTRAS["all"] = sorted(
    {req for name in ("redis", "postgres", "mysql", "flower", "django", "flask", "graph", "web")
     for req in EXTRAS[name]}
)

PACKAGE_INCLUDE = [
    "celeryflow",
    "celeryflow.*",
    "celeryflow_tasks",
    "celeryflow_tasks.*",
    "conductor",
    "conductor.*",
]
PACKAGE_EXCLUDE = [
    "tests",
    "tests.*",
    "bench",
    "bench.*",
    "examples",
    "examples.*",
    "config",
    "config.*",
    "compose",
    "compose.*",
]

# Alembic's directories hold modules but no __init__.py (alembic loads them by path):
# they are listed as data-carrying packages so setuptools ships them whole.
MIGRATION_PACKAGES = [
    "celeryflow.persistence.migrations",
    "celeryflow.persistence.migrations.versions",
]

# Non-Python files shipped inside the packages (also listed in MANIFEST.in for the
# sdist). tests/test_packaging.py checks each glob matches an existing file.
PACKAGE_DATA = {
    "celeryflow": ["py.typed"],
    "celeryflow.persistence.migrations": ["*.py", "*.mako"],
    "celeryflow.persistence.migrations.versions": ["*.py"],
}

setup(
    name="celeryflow",
    version="0.1.0",
    description=(
        "OpenStack TaskFlow's model (tasks, flows, engines, persistence, jobboards, "
        "conductors, retries) on Celery: compensating, resumable workflows."
    ),
    long_description=LONG_DESCRIPTION,
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    python_requires=">=3.10",
    packages=find_packages(include=PACKAGE_INCLUDE, exclude=PACKAGE_EXCLUDE) + [
        pkg for pkg in MIGRATION_PACKAGES if (HERE / pkg.replace(".", "/")).is_dir()
    ],
    package_data=PACKAGE_DATA,
    include_package_data=True,
    zip_safe=False,
    install_requires=INSTALL_REQUIRES,
    extras_require=EXTRAS,
    entry_points={
        "console_scripts": [
            "celeryflow=celeryflow.cli:main",
        ],
        # opt-in: only adds options unless the run says --celeryflow / ini celeryflow = true
        "pytest11": [
            "celeryflow=celeryflow.testing.entry",
        ],
    },
    classifiers=[
        "Development Status :: 3 - Alpha",
        "Framework :: Celery",
        "Framework :: Django",
        "Framework :: Flask",
        "Intended Audience :: Developers",
        "Programming Language :: Python :: 3",
        "Programming Language :: Python :: 3 :: Only",
        "Programming Language :: Python :: 3.10",
        "Programming Language :: Python :: 3.11",
        "Programming Language :: Python :: 3.12",
        "Topic :: System :: Distributed Computing",
        "Typing :: Typed",
    ],
)
