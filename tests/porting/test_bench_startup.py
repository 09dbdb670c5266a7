"""bench/startup.py runs end to end and its section survives ``python -m bench`` rewriting the file."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench import startup
from tests.porting import harness


@pytest.mark.skipif(harness.examples_dir() is None, reason="taskflow is not installed")
def test_one_round_renders_every_case() -> None:
    section = startup.render(startup.measure(1))
    for case in ("taskflow script", "celeryflow script", "celeryflow --help", "python -c pass"):
        assert f"| {case} |" in section
    assert section.startswith(startup.BEGIN) and section.rstrip().endswith(startup.END)


def test_the_section_is_kept_when_the_report_is_rewritten(tmp_path: Path) -> None:
    doc = tmp_path / "benchmarks.md"
    doc.write_text("# Benchmarks\n\nold report\n")
    section = f"{startup.BEGIN}\n## Start-up (issue 13)\nfigures\n{startup.END}\n"
    startup.write(section, doc)
    assert doc.read_text().count(startup.BEGIN) == 1
    rewritten = startup.keep_section(doc, "# Benchmarks\n\nnew report\n")
    assert "new report" in rewritten and "figures" in rewritten and "old report" not in rewritten
    startup.write(section.replace("figures", "newer"), doc)
    assert "newer" in doc.read_text() and "figures" not in doc.read_text()
