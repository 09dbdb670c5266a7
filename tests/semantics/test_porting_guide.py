"""The converted example in docs/porting-from-taskflow.md runs as a script, as printed."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from tests.support.procs import REPO_ROOT

GUIDE = REPO_ROOT / "docs" / "porting-from-taskflow.md"


def _block(marker: str) -> str:
    blocks = re.findall(r"```python\n(.*?)```", GUIDE.read_text(), re.S)
    found = [b for b in blocks if b.startswith(marker)]
    assert len(found) == 1, f"expected one python block starting with {marker!r}"
    return found[0]


def test_converted_example_runs(tmp_path: Path) -> None:
    script = tmp_path / "boot_vm.py"
    script.write_text(_block("# celeryflow version"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("CELERYFLOW_")}
    env["PYTHONPATH"] = os.pathsep.join([str(REPO_ROOT), env.get("PYTHONPATH", "")])
    env["XDG_DATA_HOME"] = str(tmp_path / "data")
    done = subprocess.run([sys.executable, str(script)], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "{'volume': 'vol-1', 'ip': '10.0.0.7'}" in done.stdout


def test_taskflow_version_differs_only_where_the_guide_says() -> None:
    before = _block("# taskflow version").splitlines()
    after = _block("# celeryflow version").splitlines()
    # the task classes are the same, line for line
    start_b = before.index("class CreateVolume(task.Task):")
    start_a = after.index("class CreateVolume(task.Task):")
    end_b = before.index("def make_flow():")
    end_a = after.index("def make_flow():")
    assert before[start_b:end_b] == after[start_a:end_a]
