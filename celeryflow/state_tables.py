"""The state machines as Markdown tables, made from :mod:`celeryflow.states`' own data.

``python -m celeryflow.state_tables [page]`` rewrites the tables between the
``state-tables`` markers of docs/architecture.md (a test checks they agree).
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

from celeryflow import states


def transition_table(transitions: dict[tuple[str, str], str]) -> str:
    """A Markdown table of ``transitions`` (from, to, why), in a stable order."""
    order = {state: i for i, state in enumerate(
        (states.PENDING, states.RUNNING, states.SUCCESS, states.FAILURE, states.REVERTING, states.REVERTED,
         states.REVERT_FAILURE, states.RETRYING, states.IGNORE, states.SUSPENDING, states.SUSPENDED, states.RESUMING))}
    rows = sorted(transitions.items(), key=lambda kv: (order[kv[0][0]], order[kv[0][1]]))
    lines = ["| from | to | why |", "|---|---|---|"]
    lines += [f"| {old} | {new} | {why} |" for (old, new), why in rows]
    return "\n".join(lines)


def state_tables_markdown() -> str:
    """The atom and flow transition tables as docs/architecture.md shows them."""
    return (f"Atom transitions:\n\n{transition_table(states.ATOM_TRANSITIONS)}\n\n"
            f"Flow transitions:\n\n{transition_table(states.FLOW_TRANSITIONS)}")


def main(argv: list[str]) -> None:
    page = Path(argv[0] if argv else "docs/architecture.md")
    text = re.sub(r"(<!-- state-tables:begin -->\n).*?(\n<!-- state-tables:end -->)",
                  lambda m: m.group(1) + state_tables_markdown() + m.group(2), page.read_text(), flags=re.S)
    page.write_text(text)


if __name__ == "__main__":
    main(sys.argv[1:])
