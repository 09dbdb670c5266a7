"""`celeryflow demo` (the README's first command) runs on the embedded default."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def test_demo_compensates_then_succeeds(tmp_path: Path) -> None:
    env = {**os.environ, "XDG_DATA_HOME": str(tmp_path), "CELERYFLOW_BACKEND": f"sqlite:///{tmp_path / 'demo.db'}"}
    done = subprocess.run(
        [sys.executable, "-m", "celeryflow", "demo"], env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    assert "VolumeAttachError" in out
    first, second = out.split("2. the same flow without the failure")
    assert ": REVERTED" in first and ": SUCCESS" in second
    # compensation in reverse: attach, then boot, then the two parallel first steps
    lines = [line.split() for line in first.splitlines() if line.strip().endswith("REVERTED") and "s " in line]
    order = [parts[1] for parts in lines if len(parts) == 3]
    assert order[:2] == ["attach_volume", "boot_server"]
    assert sorted(order[2:]) == ["allocate_network", "create_volume"]


def test_piped_demo_puts_the_first_event_on_its_own_line(tmp_path: Path) -> None:
    env = {**os.environ, "XDG_DATA_HOME": str(tmp_path), "CELERYFLOW_BACKEND": f"sqlite:///{tmp_path / 'demo.db'}"}
    done = subprocess.run(
        [sys.executable, "-m", "celeryflow", "demo"], env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stdout + done.stderr
    borders = [line for line in done.stdout.splitlines() if line.startswith("└")]
    assert len(borders) == 2  # one table per run, printed once (no live frames when piped)
    assert all(line.rstrip().endswith("┘") for line in borders), borders
