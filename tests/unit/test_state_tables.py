"""The state machines in docs/architecture.md are the code's own tables, not a copy."""

from __future__ import annotations

import re
from pathlib import Path

from celeryflow import state_tables, states

PAGE = Path(__file__).resolve().parents[2] / "docs" / "architecture.md"


def test_the_architecture_page_shows_the_code_s_transition_tables():
    text = PAGE.read_text()
    shown = re.search(r"<!-- state-tables:begin -->\n(.*?)\n<!-- state-tables:end -->", text, re.S)
    assert shown is not None, "docs/architecture.md lost its state-tables markers"
    assert shown.group(1) == state_tables.state_tables_markdown(), "run: python -m celeryflow.state_tables"


def test_every_transition_says_why_and_names_known_states():
    for table, known in ((states.ATOM_TRANSITIONS, states.ATOM_STATES), (states.FLOW_TRANSITIONS, states.FLOW_STATES)):
        for (old, new), why in table.items():
            assert old in known and new in known, (old, new)
            assert why.strip(), (old, new)
