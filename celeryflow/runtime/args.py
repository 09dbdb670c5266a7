"""Pure input resolution: which value each atom argument gets.

Precedence (DESIGN.md "Data flow"): the atom's own ``inject``, then the flow
store, then the output of the nearest upstream provider.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from celeryflow.exceptions import MissingDependencies, NotFound

_MISSING = object()


def extract(result: Any, index: int | str | None, provider: str, symbol: str) -> Any:
    """Pick ``symbol``'s value out of a provider's result according to its ``save_as`` entry."""
    if index is None:
        return result
    try:
        return result[index]
    except (KeyError, IndexError, TypeError) as exc:
        raise NotFound(
            f"Atom {provider!r} was declared to provide {symbol!r} at {index!r} but its result "
            f"{type(result).__name__} has no such item; fix its provides= or its return value"
        ) from exc


def resolve(
    atom_name: str,
    arg_map: Mapping[str, str],
    optional: frozenset[str] | set[str],
    inject: Mapping[str, Any],
    store: Mapping[str, Any],
    providers: Mapping[str, str],
    results: Mapping[str, Any],
    save_as: Mapping[str, Mapping[str, int | str | None]],
) -> dict[str, Any]:
    """Build the keyword arguments for one call of execute/revert.

    Args:
        atom_name: for error messages.
        arg_map: parameter name -> symbol name.
        optional: parameters that have defaults (left out when nothing provides them).
        inject: the atom's injected values (by symbol or parameter name).
        store: the flow store.
        providers: symbol -> name of the upstream atom that provides it.
        results: provider atom name -> its stored result.
        save_as: provider atom name -> its symbol -> index mapping.
    """
    kwargs: dict[str, Any] = {}
    missing: list[str] = []
    for param, symbol in arg_map.items():
        value: Any = _MISSING
        if symbol in inject:
            value = inject[symbol]
        elif param in inject:
            value = inject[param]
        elif symbol in store:
            value = store[symbol]
        elif symbol in providers and providers[symbol] in results:
            provider = providers[symbol]
            value = extract(results[provider], save_as.get(provider, {}).get(symbol), provider, symbol)
        if value is _MISSING:
            if param not in optional:
                missing.append(symbol)
            continue
        kwargs[param] = value
    if missing:
        raise MissingDependencies(atom_name, missing)
    return kwargs
