"""What a worker may rebuild from a logbook row: registered atom classes, functions and factories.

A spec or a message names things by reference, ``"module:QualName"``. A worker
resolves a reference *only* when it is registered:

* explicitly: :func:`register` (usable as a decorator); every
  :class:`~celeryflow.atom.Atom` subclass registers itself when its class
  statement runs, i.e. when the module defining it is imported;
* implicitly: the object is defined (``obj.__module__ == module``) in a module
  that is already imported *and* was allowed with :func:`allow_module` (the
  runtime allows each module listed in ``CELERYFLOW_IMPORTS`` / Celery
  ``imports``).

:func:`lookup` never imports anything: a forged or stale row naming a module
the worker does not have is refused with :class:`NotRegistered`.
"""

from __future__ import annotations

import inspect
import sys
import threading
import types
from collections.abc import Callable
from typing import Any, TypeVar, overload

from celeryflow.exceptions import NotRegistered

T = TypeVar("T")

_lock = threading.RLock()
_by_ref: dict[str, Any] = {}
# Explicit names given with register(obj, ref=...), so ref_of() answers them.
_ref_by_id: dict[int, str] = {}
_allowed_modules: set[str] = set()

_HINT = (
    "list its module in CELERYFLOW_IMPORTS (or the Celery app's `imports`) so workers import it "
    "at start, or decorate it with @celeryflow.registry.register"
)


def _split(ref: str) -> tuple[str, str]:
    module, sep, qualname = ref.partition(":")
    if not sep or not module or not qualname:
        raise NotRegistered(f"{ref!r} is not a reference of the form 'module:QualName'")
    return module, qualname


def _default_ref(obj: Any) -> str | None:
    """``module:qualname`` of a module-level class or function, without checking reachability."""
    if isinstance(obj, (types.BuiltinFunctionType, types.BuiltinMethodType)):
        return None
    module = getattr(obj, "__module__", None)
    qualname = getattr(obj, "__qualname__", None)
    if not isinstance(module, str) or not isinstance(qualname, str):
        return None
    if "<" in qualname or module == "builtins":  # <lambda>, <locals>, <genexpr>
        return None
    return f"{module}:{qualname}"


def _walk(module: types.ModuleType, qualname: str) -> Any:
    obj: Any = module
    for part in qualname.split("."):
        # Dunder attributes would let a reference reach interpreter internals.
        if not part or part.startswith("__"):
            return None
        obj = getattr(obj, part, None)
        if obj is None:
            return None
    return obj


@overload
def register(obj: T, *, ref: str | None = None) -> T: ...


@overload
def register(obj: None = None, *, ref: str | None = None) -> Callable[[T], T]: ...


def register(obj: Any = None, *, ref: str | None = None) -> Any:
    """Register a function, class or flow factory so workers may rebuild it by reference.

    Usable as ``@register``, ``@register(ref="pkg.mod:name")`` or ``register(fn)``.

    Args:
        obj: the object to register.
        ref: the reference to register it under; defaults to ``"module:QualName"``.
            An explicit ``ref`` also makes lambdas and nested functions registrable.

    Returns:
        ``obj`` unchanged (or a decorator when ``obj`` is omitted).

    Raises:
        ValueError: ``obj`` has no usable default reference and no ``ref`` was given.
    """
    if obj is None:
        return lambda target: register(target, ref=ref)
    name = ref if ref is not None else _default_ref(obj)
    if name is None:
        raise ValueError(
            f"{obj!r} has no module-level name (a lambda, nested function or builtin); "
            "define it at module level or pass register(obj, ref='module:name')"
        )
    _split(name)
    with _lock:
        _by_ref[name] = obj
        if ref is not None:
            _ref_by_id[id(obj)] = name
    return obj


def _register_class(cls: type) -> None:
    """Called by ``Atom.__init_subclass__``: module-level atom classes register themselves."""
    name = _default_ref(cls)
    if name is not None:
        with _lock:
            _by_ref[name] = cls


def unregister(ref: str) -> bool:
    """Remove an explicit registration; True if there was one."""
    with _lock:
        obj = _by_ref.pop(ref, None)
        if obj is not None and _ref_by_id.get(id(obj)) == ref:
            del _ref_by_id[id(obj)]
    return obj is not None


def allow_module(name: str) -> None:
    """Allow references to objects defined in module ``name`` (once it is imported)."""
    with _lock:
        _allowed_modules.add(name)


def disallow_module(name: str) -> None:
    """Undo :func:`allow_module` (for tests)."""
    with _lock:
        _allowed_modules.discard(name)


def allowed_modules() -> frozenset[str]:
    """The modules allowed with :func:`allow_module`."""
    with _lock:
        return frozenset(_allowed_modules)


def is_registered(ref: str) -> bool:
    """True when :func:`lookup` would resolve ``ref`` (of any kind)."""
    try:
        lookup(ref, "object")
    except NotRegistered:
        return False
    return True


def _check_kind(obj: Any, ref: str, kind: str) -> Any:
    if kind == "atom":
        from celeryflow.atom import Atom

        if not (isinstance(obj, type) and issubclass(obj, Atom)):
            raise NotRegistered(f"{ref!r} is registered but is not an atom class (Task/Retry subclass)")
    elif kind != "object" and not callable(obj):
        raise NotRegistered(f"{ref!r} is registered but is not callable, so it cannot be used as a {kind}")
    return obj


def lookup(ref: str, kind: str = "object") -> Any:
    """Resolve a reference without importing anything.

    Args:
        ref: ``"module:QualName"``.
        kind: what the caller expects, for checks and messages: ``"atom"`` (an Atom
            subclass), ``"function"``, ``"decider"``, ``"factory"`` (callables) or
            ``"object"`` (anything).

    Raises:
        NotRegistered: the reference is unknown here (the message says how to register it).
    """
    if not isinstance(ref, str):
        raise NotRegistered(f"{ref!r} is not a reference of the form 'module:QualName'")
    module_name, qualname = _split(ref)
    with _lock:
        obj = _by_ref.get(ref)
        allowed = module_name in _allowed_modules
    if obj is not None:
        return _check_kind(obj, ref, kind)
    module = sys.modules.get(module_name) if allowed else None
    if module is not None:
        found = _walk(module, qualname)
        if found is not None and getattr(found, "__module__", None) == module_name:
            return _check_kind(found, ref, kind)
    raise NotRegistered(f"The {kind} {ref!r} is not registered in this process; {_HINT}")


def ref_of(obj: Any) -> str | None:
    """The reference a worker can resolve ``obj`` by, or None when it has none.

    None for lambdas, nested (``<locals>``) functions and classes, builtins,
    ``functools.partial`` objects, methods bound to instances, and anything
    that is not reachable under its own ``module:qualname``.
    """
    with _lock:
        explicit = _ref_by_id.get(id(obj))
        if explicit is not None and _by_ref.get(explicit) is obj:
            return explicit
    if inspect.ismethod(obj) and not isinstance(obj.__self__, type):
        return None  # bound to an instance: the instance's state cannot be rebuilt
    name = _default_ref(obj)
    if name is None:
        return None
    module_name, qualname = _split(name)
    module = sys.modules.get(module_name)
    if module is None:
        return None
    found = _walk(module, qualname)
    if found is None:
        return None
    try:
        same = found is obj or bool(found == obj)
    except Exception:
        same = False
    return name if same else None


__all__ = [
    "allow_module",
    "allowed_modules",
    "disallow_module",
    "is_registered",
    "lookup",
    "ref_of",
    "register",
    "unregister",
]
