"""``Settings.for_app``: ``from_sources(app.conf)`` cached per app, never stale.

A worker reads its settings for every atom (runtime/tasks.run_step); the cache must see
every change ``from_sources`` would: ``app.conf.update``, item and attribute assignment,
defaults and config objects, a pending conf being finalized, and ``CELERYFLOW_*``
variables changed between in-process runs.
"""

from __future__ import annotations

import pytest
from celery import Celery

from celeryflow.exceptions import ConfigurationError
from celeryflow.runtime.settings import Settings


def _app(**conf: object) -> Celery:
    app = Celery("settings-cache", broker="memory://", set_as_current=False)
    app.conf.update(conf)
    return app


def _same(app: Celery) -> Settings:
    """for_app(app), checked against a fresh read."""
    cached = Settings.for_app(app)
    assert cached == Settings.from_sources(app.conf)
    return cached


def test_a_second_read_is_the_cached_object():
    app = _app(celeryflow_heartbeat_timeout=30)
    first = _same(app)
    assert first.heartbeat_timeout == 30.0
    assert Settings.for_app(app) is first


def test_conf_update_after_a_first_read_is_seen():
    app = _app()
    assert _same(app).dispatch_window == Settings().dispatch_window
    app.conf.update(celeryflow_dispatch_window=7, celeryflow_max_deliveries=2)
    now = _same(app)
    assert (now.dispatch_window, now.max_deliveries) == (7, 2)


def test_attribute_and_item_assignment_are_seen():
    app = _app()
    _same(app)
    app.conf.celeryflow_heartbeat_interval = 3
    assert _same(app).heartbeat_interval == 3.0
    app.conf["celeryflow_heartbeat_interval"] = 4
    assert _same(app).heartbeat_interval == 4.0
    app.conf.celeryflow_heartbeat_interval = 4.0  # equal value, other object: same answer
    assert _same(app).heartbeat_interval == 4.0
    del app.conf["celeryflow_heartbeat_interval"]
    assert _same(app).heartbeat_interval == Settings().heartbeat_interval


def test_a_setting_set_to_none_falls_back_to_the_environment(monkeypatch):
    monkeypatch.setenv("CELERYFLOW_CHAIN_MAX", "9")
    app = _app(celeryflow_chain_max=3)
    assert _same(app).chain_max == 3
    app.conf.celeryflow_chain_max = None
    assert _same(app).chain_max == 9


def test_environment_changes_are_seen(monkeypatch):
    monkeypatch.delenv("CELERYFLOW_NAMESPACE", raising=False)
    monkeypatch.delenv("CELERYFLOW_MAX_RESULT_BYTES", raising=False)
    app = _app()
    assert _same(app).namespace == "default"
    monkeypatch.setenv("CELERYFLOW_NAMESPACE", "blue")
    assert _same(app).namespace == "blue"
    monkeypatch.setenv("CELERYFLOW_MAX_RESULT_BYTES", "10")
    assert _same(app).max_result_bytes == 10
    monkeypatch.delenv("CELERYFLOW_NAMESPACE")
    assert _same(app).namespace == "default"
    # conf wins over the environment, cached or not
    app.conf.celeryflow_max_result_bytes = 20
    assert _same(app).max_result_bytes == 20


def test_the_cache_is_per_app():
    one, two = _app(celeryflow_chain_max=1), _app(celeryflow_chain_max=2)
    assert (_same(one).chain_max, _same(two).chain_max) == (1, 2)
    two.conf.celeryflow_chain_max = 5
    assert (_same(one).chain_max, _same(two).chain_max) == (1, 5)


def test_a_pending_conf_is_read_finalized():
    app = Celery("pending", broker="memory://", set_as_current=False)
    app.conf.celeryflow_retention_days = 2  # before anything finalized the conf
    assert _same(app).retention_days == 2.0
    app.conf.celeryflow_retention_days = 3
    assert _same(app).retention_days == 3.0


def test_defaults_and_config_objects_are_seen():
    class Config:
        celeryflow_embedded_concurrency = 2

    app = Celery("configured", broker="memory://", set_as_current=False)
    app.config_from_object(Config)
    assert _same(app).embedded_concurrency == 2
    Config.celeryflow_embedded_concurrency = 6  # the config object is read live by conf.get
    assert _same(app).embedded_concurrency == 6
    app.add_defaults({"celeryflow_sweep_interval": 5})
    assert _same(app).sweep_interval == 5.0

    class Other:
        celeryflow_embedded_concurrency = 8

    app.config_from_object(Other)
    assert _same(app).embedded_concurrency == 8


def test_a_namespaced_config_object_is_seen():
    class Config:
        CELERY_CELERYFLOW_NAMESPACE = "green"

    app = Celery("django-like", broker="memory://", set_as_current=False)
    app.config_from_object(Config, namespace="CELERY")
    assert _same(app).namespace == "green"
    Config.CELERY_CELERYFLOW_NAMESPACE = "red"
    assert _same(app).namespace == "red"


def test_a_bad_value_still_raises_on_every_read():
    app = _app()
    _same(app)
    app.conf.celeryflow_max_deliveries = "many"
    for _ in range(2):
        with pytest.raises(ConfigurationError, match="max_deliveries"):
            Settings.for_app(app)
    app.conf.celeryflow_max_deliveries = 3
    assert _same(app).max_deliveries == 3
