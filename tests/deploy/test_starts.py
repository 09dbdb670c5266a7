"""#12 (small): the "starts" column of ``flows show`` counts every execution of an atom,
across the rounds of a retry controller (it read 2 for an atom that ran 3 times: the
claims counter is reset by each round and also counts reverts)."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from celeryflow import engines, retry
from celeryflow.cli import cli
from celeryflow.patterns import linear_flow
from tests.deploy.atoms import FailsUntil


def test_starts_counts_every_execution_across_retry_rounds(tmp_path: Path) -> None:
    backend = f"sqlite:///{tmp_path / 'logbook.db'}"
    trace = str(tmp_path / "trace.log")
    flow = linear_flow.Flow("flaky", retry=retry.Times(3)).add(FailsUntil("flaky_step", trace, succeed_on=3))
    engine = engines.load(flow, backend=backend)
    engine.run()
    result = CliRunner().invoke(cli, ["flows", "show", engine.flow_uuid, "--json", "-b", backend],
                                catch_exceptions=False)
    assert result.exit_code == 0, result.output
    atoms = {a["name"]: a for a in json.loads(result.output)["atoms"]}
    assert atoms["flaky_step"]["state"] == "SUCCESS"
    assert atoms["flaky_step"]["starts"] == 3, atoms["flaky_step"]["attempts"]
    table = CliRunner().invoke(cli, ["flows", "show", engine.flow_uuid, "-b", backend], catch_exceptions=False)
    row = next(line for line in table.output.splitlines() if "flaky_step" in line)
    assert row.split("│")[5].strip() == "3", row
