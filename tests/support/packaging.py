"""What setup.py declares, read without building anything."""

from __future__ import annotations

import runpy
from typing import Any

from tests.support.procs import REPO_ROOT


def setup_arguments() -> dict[str, Any]:
    """The keyword arguments setup.py passes to setuptools.setup (not run)."""
    import setuptools

    captured: dict[str, Any] = {}
    real = setuptools.setup
    setattr(setuptools, "setup", lambda **kw: captured.update(kw))  # noqa: B010
    try:
        runpy.run_path(str(REPO_ROOT / "setup.py"), run_name="__main__")
    finally:
        setattr(setuptools, "setup", real)  # noqa: B010
    assert captured, "setup.py did not call setuptools.setup"
    return captured
