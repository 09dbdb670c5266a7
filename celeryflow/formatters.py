"""TaskFlow's ``formatters``: :class:`FailureFormatter`, the failure text the logging listener shows.

For a failed atom it gives the failure (with its traceback when the exception was
not captured in this process) and the atom's predecessors, most recent first, with
their intention, state, and (unless hidden) their results.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from celeryflow import states
from celeryflow.exceptions import NotFound, StorageFailure
from celeryflow.types.failure import Failure


class _Node:
    """What an ``atom_matcher`` is given: ``node.item`` is the compiled atom (``.name``)."""

    def __init__(self, item: Any) -> None:
        self.item = item


def _mask_keys(data: Any, mask_keys: frozenset[str]) -> Any:
    if isinstance(data, dict):
        return {k: "***" if k in mask_keys else _mask_keys(v, mask_keys) for k, v in data.items()}
    if isinstance(data, list):
        return [_mask_keys(item, mask_keys) for item in data]
    return data


class FailureFormatter:
    """Formats a failure and connects it to the atoms that ran before it.

    Args:
        engine: the engine the failure came from.
        hide_inputs_outputs_of: atom names whose results are not shown.
        mask_inputs_keys: keys shown as ``***`` in inputs.
        mask_outputs_keys: keys shown as ``***`` in results.
    """

    def __init__(
        self,
        engine: Any,
        hide_inputs_outputs_of: Iterable[str] = (),
        mask_inputs_keys: Iterable[str] = (),
        mask_outputs_keys: Iterable[str] = (),
    ) -> None:
        self._engine = engine
        self._hide = frozenset(hide_inputs_outputs_of)
        self._mask_inputs_keys = frozenset(mask_inputs_keys)
        self._mask_outputs_keys = frozenset(mask_outputs_keys)

    def _format_atom(self, storage: Any, name: str) -> str:
        attrs: dict[str, Any] = {}
        try:
            attrs["intention"] = storage.get_atom_intention(name)
            attrs["state"] = storage.get_atom_state(name)
            if name not in self._hide and attrs["state"] == states.SUCCESS:
                attrs["provides"] = _mask_keys(storage.get_execute_result(name), self._mask_outputs_keys)
        except (NotFound, StorageFailure):
            pass
        return f"Atom '{name}' {attrs}" if attrs else f"Atom '{name}'"

    def format(self, fail: Failure, atom_matcher: Callable[[Any], bool]) -> tuple[Any, str]:
        """``(exc_info, details)`` for ``fail``; ``atom_matcher(node)`` picks the failed atom."""
        lines: list[str] = []
        if fail.exc_info is None:
            lines.append(fail.pformat(traceback=True))
        try:
            comp = self._engine.compile()
            storage = self._engine.storage
        except Exception:
            return fail.exc_info, "\n".join(lines)
        atom = next((a for a in comp.atoms.values() if atom_matcher(_Node(a))), None)
        if atom is not None:
            preds: list[str] = []
            stack = list(atom.preds)
            while stack:
                name = stack.pop()
                if name not in preds:
                    preds.append(name)
                    stack.extend(comp.atoms[name].preds)
            lines.append(f"{len(preds)} predecessors (most recent first):")
            lines.extend(f"  {self._format_atom(storage, name)}" for name in preds)
        return fail.exc_info, "\n".join(lines)


__all__ = ["FailureFormatter"]
