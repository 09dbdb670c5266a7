"""Runtime settings: ``app.conf`` keys ``celeryflow_*`` with ``CELERYFLOW_*`` environment fallbacks."""

from __future__ import annotations

import os
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

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
