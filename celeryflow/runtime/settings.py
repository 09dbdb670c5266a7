"""Runtime settings: ``app.conf`` keys ``celeryflow_*`` with ``CELERYFLOW_*`` environment fallbacks."""

from __future__ import annotations

import os
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from celery.utils.collections import DictAttribute

from celeryflow.exceptions import ConfigurationError
from celeryflow.masking import DEFAULT_MASK_KEYS, is_secret_name


def default_logbook_url() -> str:
    """The embedded default logbook: an SQLite file in the user's data directory."""
    base = Path(os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share")
    path = base / "celeryflow" / "logbook.sqlite"
    path.parent.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{path}"


#: most atoms of one flow queued or running at once (see logbook.admit)
DEFAULT_DISPATCH_WINDOW = 512

@dataclass(frozen=True)
class Settings:
    """All celeryflow settings (see docs/configuration.md)."""

    backend: str | None = None
    heartbeat_timeout: float = 60.0
    heartbeat_interval: float = 10.0
    sweep_interval: float = 15.0
    max_deliveries: int = 5
    max_result_bytes: int = 1024 * 1024
    mask_keys: tuple[str, ...] = DEFAULT_MASK_KEYS
    chain_max: int = 16
    dispatch_window: int = DEFAULT_DISPATCH_WINDOW
    embedded_concurrency: int = 4
    imports: tuple[str, ...] = field(default_factory=tuple)
    retention_days: float | None = None
    #: seconds an atom waits for a worker that has its code before it fails (None: for ever)
    missing_code_timeout: float | None = 600.0
    #: the deployment this process belongs to: its sweeps and conductors touch only its flows
    namespace: str = "default"

    @classmethod
    def from_sources(cls, conf: Any = None, overrides: dict[str, Any] | None = None) -> Settings:
        """Read settings: explicit overrides, then ``conf['celeryflow_<name>']``, then ``CELERYFLOW_<NAME>``."""
        values: dict[str, Any] = {}
        overrides = overrides or {}
        for f in fields(cls):
            raw: Any = None
            if f.name in overrides and overrides[f.name] is not None:
                raw = overrides[f.name]
            elif conf is not None and conf.get(f"celeryflow_{f.name}") is not None:
                raw = conf.get(f"celeryflow_{f.name}")
            elif os.environ.get(f"CELERYFLOW_{f.name.upper()}"):
                raw = os.environ[f"CELERYFLOW_{f.name.upper()}"]
            if raw is None:
                continue
            values[f.name] = _coerce(f.name, f.type, raw)
        if "namespace" in values:
            from celeryflow.namespaces import check

            values["namespace"] = check(values["namespace"])
        return cls(**values)

    @classmethod
    def for_app(cls, app: Any) -> Settings:
        """``from_sources(app.conf)``, cached on ``app`` until a setting it reads changes.

        For per-message paths (a worker reads its settings for every atom). The cache is
        checked on every call against everything ``from_sources`` reads: ``CELERYFLOW_*``
        variables and, in each of ``app.conf``'s maps, the keys ``app.conf.get`` would try
        for every ``celeryflow_<name>`` (see :class:`_ConfProbe`). ``conf.update(...)``,
        ``conf[key] = ...``, ``conf.celeryflow_x = ...``, ``add_defaults``,
        ``config_from_object`` and a changed variable are all seen by the next call.
        Not seen: a value mutated in place (``conf.celeryflow_imports.append(...)``).
        """
        conf = app.conf
        env = _env_values()
        probe: _ConfProbe | None = getattr(app, _CACHE_ATTR, None)
        if probe is not None and probe.env == env and probe.matches(conf):
            return probe.settings
        settings = cls.from_sources(conf)
        probe = _ConfProbe.take(conf, env, settings, probe)
        if probe is not None:
            try:
                setattr(app, _CACHE_ATTR, probe)
            except AttributeError:  # an app object without a __dict__: no cache
                pass
        return settings

    def is_masked(self, key: str) -> bool:
        """True if ``key`` looks secret under ``mask_keys`` (rules: celeryflow/masking.py)."""
        return is_secret_name(key, self.mask_keys)


def _coerce(name: str, type_name: Any, raw: Any) -> Any:
    text = str(type_name)
    try:
        if text.startswith("tuple"):
            if isinstance(raw, str):
                return tuple(part.strip() for part in raw.split(",") if part.strip())
            return tuple(raw)
        if text.startswith("float"):
            return None if raw in ("", "none", "None") else float(raw)
        if text.startswith("int"):
            return int(raw)
        return raw if raw != "" else None
    except (TypeError, ValueError) as exc:
        raise ConfigurationError(
            f"Setting {name} (CELERYFLOW_{name.upper()} / celeryflow_{name}) must be a {text}, got {raw!r}"
        ) from exc


_CONF_KEYS: tuple[str, ...] = tuple(f"celeryflow_{f.name}" for f in fields(Settings))
_ENV_NAMES: tuple[str, ...] = tuple(f"CELERYFLOW_{f.name.upper()}" for f in fields(Settings))
_CACHE_ATTR = "_celeryflow_settings_cache"
_ABSENT = object()


def _env_values() -> tuple[Any, ...]:
    """The ``CELERYFLOW_*`` variables ``from_sources`` reads, as comparable raw values.

    ``os.environ.get`` raises and catches a KeyError for every unset name (most of them);
    the raw (encoded) table of ``os._Environ``, which every ``os.environ[...] = `` and
    ``del`` updates, answers the same question ten times faster. Anything else standing
    in for ``os.environ`` is read through ``get``.
    """
    environ = os.environ
    data = getattr(environ, "_data", None)
    encode = getattr(environ, "encodekey", None)
    if type(data) is dict and encode is not None:
        keys = _ENV_KEYS.get(encode)
        if keys is None:
            keys = _ENV_KEYS[encode] = tuple(encode(name) for name in _ENV_NAMES)
        get = data.get
        return tuple([get(key) for key in keys])
    return tuple([environ.get(name) for name in _ENV_NAMES])


_ENV_KEYS: dict[Any, tuple[Any, ...]] = {}


class _ConfProbe:
    """What ``Settings.from_sources(conf)`` read, cheap to compare with ``conf`` now.

    ``conf.get(key)`` (celery.utils.collections.ConfigurationView) tries, in each map of
    ``conf.maps`` in turn, the keys ``conf._key(k) for k in conf._to_keys(key)`` (the
    namespace prefix, old/new key names), first found wins. Its answer for our keys is
    thus a function of ``prefix``/``key_t``/``_keys`` (which decide the tried keys) and of
    the value of every tried key in every map, which is what the probe records and compares:
    ``conf.update``, ``conf[k] = v``, ``conf.k = v``, ``add_defaults``, a config object's
    attribute, finalizing a pending conf (``swap_with`` gives the same object new maps)
    all change it. Celery's own change tracking cannot stand in: ``conf.changes`` is a
    plain dict, and observers (``bind_to``) hear only ``update()``, not ``conf[k] = v``
    nor ``conf.k = v``. ``mapping.get`` raises no KeyError per miss, which is most of
    what ``conf.get`` costs.
    """

    __slots__ = ("conf", "env", "lookup", "settings", "tried", "values")

    def __init__(self, conf: Any, env: tuple[Any, ...], settings: Settings,
                 lookup: tuple[Any, ...], tried: tuple[Any, ...]) -> None:
        self.conf = conf
        self.env = env
        self.settings = settings
        self.lookup = lookup
        #: every key conf.get tries for ours; values: each one's value (or _ABSENT) in each map
        self.tried = tried
        self.values = _read(conf.maps, tried)

    @classmethod
    def take(cls, conf: Any, env: tuple[Any, ...], settings: Settings,
             previous: _ConfProbe | None = None) -> _ConfProbe | None:
        """The probe of ``conf``, or None if it is no ConfigurationView (then no caching)."""
        try:
            lookup = _lookup(conf)
            if previous is not None and previous.lookup == lookup:
                tried = previous.tried  # the same prefix and key functions try the same keys
            else:
                tried = tuple(dict.fromkeys(conf._key(k) for key in _CONF_KEYS for k in conf._to_keys(key)))
            return cls(conf, env, settings, lookup, tried)
        except (AttributeError, TypeError):
            return None

    def matches(self, conf: Any) -> bool:
        """True if ``conf.get`` would answer as it did for every key ``from_sources`` reads."""
        return conf is self.conf and _lookup(conf) == self.lookup and _read(conf.maps, self.tried) == self.values


def _lookup(conf: Any) -> tuple[Any, ...]:
    state = conf.__dict__  # not getattr: AttributeDictMixin would look a missing one up as a setting
    return state.get("prefix"), state.get("key_t"), state.get("_keys")


def _read(maps: Any, keys: tuple[Any, ...]) -> tuple[Any, ...]:
    return tuple([get(k, _ABSENT) for get in map(_getter, maps) for k in keys])


def _getter(mapping: Any) -> Any:
    if isinstance(mapping, DictAttribute):  # a config object: its get() raises and catches per miss
        obj = mapping.obj
        return lambda key, default: getattr(obj, key, default)
    return mapping.get
