"""``celeryflow graph``: Graphviz renders of flows from the logbook and from factories."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from tests.cli.conftest import Populated, invoke

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"

# Skipped locally without Graphviz; in CI (CI=true) a missing `dot` must fail, not hide.
needs_dot = pytest.mark.skipif(
    shutil.which("dot") is None and os.environ.get("CI") != "true",
    reason="Graphviz `dot` is not installed "
                               "(apt-get install graphviz; CI installs it)")


@needs_dot
def test_png_of_a_compensated_flow(populated: Populated, tmp_path: Path) -> None:
    out = tmp_path / "flow.png"
    result = invoke("graph", populated.declined, "-o", str(out), "-b", populated.url)
    assert result.exit_code == 0, result.output
    data = out.read_bytes()
    assert data.startswith(PNG_SIGNATURE)
    assert len(data) > 10_000  # three labelled nodes, a cluster and a legend: not an empty canvas
    width, height = int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    assert width > 300 and height > 200
    assert f"wrote {out}" in result.stdout and "3 atoms" in result.stdout


@needs_dot
def test_svg_shows_states_and_compensation_order(populated: Populated, tmp_path: Path) -> None:
    out = tmp_path / "flow.svg"
    assert invoke("graph", populated.declined[:8], "-o", str(out), "-b", populated.url).exit_code == 0
    svg = out.read_text()
    for text in ("reserve_stock", "charge_card", "notify", "REVERTED", "PENDING", "failed: PaymentDeclined",
                 "↩ 1", "↩ 2", "prepare", "compensation order"):
        assert text in svg, text
    assert "#a9d6e5" in svg  # REVERTED fill


def test_dot_to_stdout_and_file_need_no_graphviz(populated: Populated, tmp_path: Path) -> None:
    result = invoke("graph", populated.ok[0], "-b", populated.url)
    assert result.exit_code == 0
    assert result.stdout.startswith("digraph") and "reserve_stock" in result.stdout and "SUCCESS" in result.stdout
    # execution order: reserve_stock -> notify and charge_card -> notify
    assert result.stdout.count("->") == 2
    out = tmp_path / "flow.dot"
    assert invoke("graph", populated.ok[0], "-o", str(out), "-b", populated.url).exit_code == 0
    assert out.read_text().startswith("digraph")


@needs_dot
def test_graph_of_a_factory_before_it_ran(tmp_path: Path) -> None:
    out = tmp_path / "naps.svg"
    result = invoke("graph", "tests.contrib.atoms:nap_flow", "--kwargs", '{"count": 4}', "-o", str(out))
    assert result.exit_code == 0, result.output
    svg = out.read_text()
    assert all(f"nap_{i}" in svg for i in range(4))
    assert "↩ 1" in svg and "↩ 4" in svg  # planned compensation: the last nap first


def test_graph_errors(populated: Populated, tmp_path: Path) -> None:
    bad_id = invoke("graph", "ffffffff-0000-0000-0000-000000000000", "-b", populated.url)
    assert bad_id.exit_code == 2 and "No flow" in bad_id.stderr
    bad_format = invoke("graph", populated.ok[0], "-o", str(tmp_path / "x.jpg"), "-b", populated.url)
    assert bad_format.exit_code == 2 and "Unknown graph format 'jpg'" in bad_format.stderr
    bad_factory = invoke("graph", "tests.contrib.nowhere:flow")
    assert bad_factory.exit_code == 2 and "Cannot import 'tests.contrib.nowhere'" in bad_factory.stderr
    image_to_stdout = invoke("graph", populated.ok[0], "-T", "png", "-b", populated.url)
    assert image_to_stdout.exit_code == 2


@needs_dot
@pytest.mark.parametrize("name", ["<b>bold</b>", "<script>alert(1)</script>", "a<b", "<>"])
def test_a_flow_name_that_looks_like_html_is_text(name: str, tmp_path: Path) -> None:
    """graphviz emits "<...>" unquoted (an HTML-like label): the DOT was invalid for such names."""
    from celeryflow import graphing
    from celeryflow.compiler import compile as compile_flow
    from celeryflow.patterns import linear_flow
    from celeryflow.task import FunctorTask

    comp = compile_flow(linear_flow.Flow(name).add(FunctorTask(lambda: None, name="step")))
    svg = graphing.flow_graph(comp).pipe(format="svg").decode("utf-8")
    assert "step" in svg
    escaped = name.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    assert escaped in svg  # drawn as the text it is, not as markup
