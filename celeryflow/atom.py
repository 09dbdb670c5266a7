"""The unit of work: :class:`Atom`, the base of tasks and retry controllers (TaskFlow's ``atom``).

An atom declares what it needs and what it gives:

* requirements are inferred from ``execute``'s (and ``revert``'s) signature:
  parameters without defaults are required, parameters with defaults optional;
  ``rebind`` renames them onto other symbols; ``requires`` adds extra ones
  (passed as keyword arguments, so ``execute`` must accept ``**kwargs``);
* ``provides`` names its result: a str names the whole result, a tuple/list
  maps it by index, a set maps a dict result by key (``save_as``).

Every atom records the arguments it was constructed with (``_ctor_args``,
``_ctor_kwargs``) so :mod:`celeryflow.spec` can describe it to a worker, which
rebuilds it by class reference (see :mod:`celeryflow.registry`).
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Iterable, Iterator, Mapping, Set
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any, ClassVar

from celeryflow import registry

if TYPE_CHECKING:
    from typing import Self  # 3.11+; annotations only (python_requires >= 3.10)

#: Set by the engine runtime while an atom runs: receives ``(atom, progress, details)``.
progress_sink: ContextVar[Callable[[Atom, float, dict[str, Any] | None], None] | None] = ContextVar(
    "celeryflow_progress_sink", default=None
)

# Arguments the engine itself passes to revert(); never requirements.
REVERT_RESULT = "result"
REVERT_FLOW_FAILURES = "flow_failures"
_DEFAULT_REVERT_ARGS = (REVERT_RESULT, REVERT_FLOW_FAILURES)


class OrderedSet(Set[str]):
    """An immutable insertion-ordered set of names (compares equal to ``set``/``frozenset``)."""

    __slots__ = ("_items",)

    def __init__(self, items: Iterable[str] = ()) -> None:
        self._items: dict[str, None] = dict.fromkeys(items)

    def __contains__(self, item: object) -> bool:
        return item in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def __hash__(self) -> int:
        return self._hash()

    @classmethod
    def _from_iterable(cls, it: Iterable[Any]) -> OrderedSet:  # type: ignore[override]
        return cls(it)

    def union(self, *others: Iterable[str]) -> OrderedSet:
        items = dict(self._items)
        for other in others:
            items.update(dict.fromkeys(other))
        return OrderedSet(items)

    def __repr__(self) -> str:
        return f"OrderedSet({list(self._items)!r})"


def callable_params(function: Callable[..., Any]) -> tuple[list[str], list[str], bool]:
    """Named parameters of ``function``: (all, required only, accepts ``**kwargs``).

    ``self``/``cls`` of bound methods, ``*args`` and ``**kwargs`` are skipped.
    """
    if inspect.ismethod(function):
        all_args, required, var_kw = _params_of(function.__func__, True)
    else:
        try:
            all_args, required, var_kw = _params_of(function, False)
        except TypeError:  # unhashable callable object
            all_args, required, var_kw = _inspect_params(function, False)
    return list(all_args), list(required), var_kw


_Params = tuple[tuple[str, ...], tuple[str, ...], bool]


@functools.lru_cache(maxsize=4096)
def _params_of(function: Callable[..., Any], bound: bool) -> _Params:
    # inspect.signature costs ~40 µs; atoms of one class share their methods' analysis.
    return _inspect_params(function, bound)


def _inspect_params(function: Callable[..., Any], bound: bool) -> _Params:
    params = list(inspect.signature(function).parameters.values())
    if bound and params and params[0].kind in (
        inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD
    ):
        params = params[1:]  # self / cls
    all_args: list[str] = []
    required: list[str] = []
    var_kw = False
    for param in params:
        if param.kind is inspect.Parameter.VAR_KEYWORD:
            var_kw = True
            continue
        if param.kind is inspect.Parameter.VAR_POSITIONAL:
            continue
        all_args.append(param.name)
        if param.default is inspect.Parameter.empty:
            required.append(param.name)
    return tuple(all_args), tuple(required), var_kw


def save_as_mapping(provides: Any) -> dict[str, int | str | None]:
    """``provides`` -> ``{symbol: None (whole result) | index | key}``."""
    if provides is None:
        return {}
    if isinstance(provides, str):
        return {provides: None}
    if isinstance(provides, (list, tuple)):
        return {str(name): index for index, name in enumerate(provides)}
    if isinstance(provides, (set, frozenset)):
        return {str(name): str(name) for name in sorted(provides)}
    raise TypeError(f"provides must be a str, tuple/list or set of str, not {type(provides).__name__}")


def build_arg_mapping(
    atom_name: str | None,
    function: Callable[..., Any],
    requires: Any,
    rebind: Any,
    auto_extract: bool,
    ignore: Iterable[str] = (),
) -> tuple[dict[str, str], set[str]]:
    """Map ``function``'s parameters to symbols.

    Returns:
        ``({param: symbol}, {params that have defaults})``. Required parameters come
        first in the mapping, then optional ones, each in signature order.

    Raises:
        ValueError: extra requirements the function cannot accept, or required
            parameters left unmapped (``auto_extract=False``).
        TypeError: ``rebind`` or ``requires`` has the wrong type.
    """
    ignored = set(ignore)
    all_args, req_args, var_kw = callable_params(function)
    all_args = [a for a in all_args if a not in ignored]
    req_args = [a for a in req_args if a not in ignored]
    opt_args = [a for a in all_args if a not in req_args]
    required: dict[str, str] = {}
    if auto_extract:
        required.update((a, a) for a in req_args)
    if requires:
        if isinstance(requires, str):
            requires = [requires]
        elif not isinstance(requires, Iterable):
            raise TypeError(f"requires must be a str or an iterable of str, not {type(requires).__name__}")
        required.update((str(a), str(a)) for a in requires)
    optional: dict[str, str] = {a: a for a in opt_args if a not in required} if auto_extract else {}
    if rebind is not None:
        if isinstance(rebind, (list, tuple)):
            # Positional rebind: onto the parameters in signature order (required first,
            # as TaskFlow does); names beyond them are passed 1:1 as keyword arguments.
            params = [*req_args, *opt_args]
            pairs = dict(zip(params, rebind, strict=False))
            pairs.update((str(a), str(a)) for a in rebind[len(params) :])
        elif isinstance(rebind, Mapping):
            pairs = {str(k): str(v) for k, v in rebind.items()}
        else:
            raise TypeError(f"rebind must be a list/tuple or a dict, not {type(rebind).__name__}")
        for param, symbol in pairs.items():
            if param in optional:
                optional[param] = symbol
            else:
                required[param] = symbol
    if not var_kw:
        extra = [a for a in required if a not in all_args]
        if extra:
            raise ValueError(f"Extra arguments given to atom {atom_name!r}: {extra}")
    missing = [a for a in req_args if a not in required]
    if missing:
        raise ValueError(f"Missing arguments for atom {atom_name!r}: {missing}")
    mapping = {**required, **optional}
    return mapping, set(optional)


class Atom:
    """Base of :class:`~celeryflow.task.Task` and :class:`~celeryflow.retry.Retry`.

    Args:
        name: unique name of the atom within its flow.
        provides: a str (whole result), tuple/list (result by index) or set (dict
            result by key); defaults to the class attribute ``default_provides``.
        requires: extra required symbols, passed as keyword arguments.
        auto_extract: infer requirements from the signature (default True).
        rebind: rename parameters: a list (positional) or a ``{param: symbol}`` dict.
        inject: ``{symbol or param: value}`` given to this atom only (JSON values).
        ignore_list: parameters that are never requirements (e.g. ``history``).
        revert_rebind: like ``rebind`` for ``revert``; by default revert inherits execute's
            renames (for the parameters it has); a dict is merged over them.
        revert_requires: like ``requires`` for ``revert`` (defaults to ``requires``).

    Attributes:
        rebind: ``{execute param: symbol}`` for every named parameter.
        requires: required symbols of execute and revert (not injected), ordered.
        optional: symbols of execute parameters that have defaults.
        provides: symbols this atom's result provides.
        save_as: ``{symbol: None | index | key}``.
        revert_rebind / revert_requires / revert_optional: the same for ``revert``
            (``result`` and ``flow_failures`` excluded: the engine passes them).
        optional_params / revert_optional_params: parameter names with defaults.
    """

    default_provides: Any = None
    priority: ClassVar[int] = 0
    #: Celery options of the message that executes / reverts this atom (celeryflow.celery_options)
    celery_options: Mapping[str, Any] = {}
    revert_celery_options: Mapping[str, Any] = {}

    _ctor_args: tuple[Any, ...]
    _ctor_kwargs: dict[str, Any]

    def __new__(cls, *args: Any, **kwargs: Any) -> Self:
        # Record how the atom was built so a worker can build the same one (spec).
        self = super().__new__(cls)
        self._ctor_args = args
        self._ctor_kwargs = dict(kwargs)
        return self

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        registry._register_class(cls)

    def __init__(
        self,
        name: str | None = None,
        provides: Any = None,
        requires: Any = None,
        auto_extract: bool = True,
        rebind: Any = None,
        inject: Mapping[str, Any] | None = None,
        ignore_list: Iterable[str] | None = None,
        revert_rebind: Any = None,
        revert_requires: Any = None,
    ) -> None:
        if provides is None:
            provides = self.default_provides
        self.name: str | None = name
        self.version: tuple[int, ...] = getattr(self, "version", (1, 0))
        self.inject: dict[str, Any] = dict(inject or {})
        self.save_as: dict[str, int | str | None] = save_as_mapping(provides)
        self.provides = OrderedSet(self.save_as)
        self._progress = 0.0
        self._set_mappings(
            self.execute, self.revert, requires, rebind, auto_extract, list(ignore_list or ()),
            revert_requires, revert_rebind,
        )

    def with_celery_options(self, *, revert: bool = False, **options: Any) -> Self:
        """Set Celery options (queue, routing_key, exchange, priority, expires, soft_time_limit,
        time_limit) on this atom's execute message, or with ``revert=True`` on its revert
        message; returns the atom, for ``flow.add(Atom().with_celery_options(queue="gpu"))``."""
        from celeryflow import celery_options

        who = f"atom {self.name!r}"
        if revert:
            self.revert_celery_options = {**self.revert_celery_options, **celery_options.check(options, who)}
        else:
            self.celery_options = {**self.celery_options, **celery_options.check(options, who)}
        return self

    def _set_mappings(
        self,
        execute: Callable[..., Any],
        revert: Callable[..., Any] | None,
        requires: Any,
        rebind: Any,
        auto_extract: bool,
        ignore: list[str],
        revert_requires: Any = None,
        revert_rebind: Any = None,
    ) -> None:
        """(Re)compute the execute and revert argument mappings.

        When ``revert_rebind``/``revert_requires`` are not given, revert inherits the
        renames and extra requirements of execute, limited to the parameters revert
        names (all of them when it takes ``**kwargs``). TaskFlow applies them verbatim,
        which fails for a revert that lacks one of execute's parameters.
        """
        self.rebind, self.optional_params = build_arg_mapping(
            self.name, execute, requires, rebind, auto_extract, ignore
        )
        self.revert_rebind: dict[str, str]
        self.revert_optional_params: set[str]
        if revert is None:
            self.revert_rebind, self.revert_optional_params = {}, set()
        else:
            revert_ignore = [*ignore, *_DEFAULT_REVERT_ARGS]
            names, _, var_kw = callable_params(revert)
            accepted = set(names) - set(revert_ignore)
            if revert_rebind is None or isinstance(revert_rebind, Mapping):
                # execute's renames carry over; an explicit revert_rebind dict overrides them
                renamed = {p: s for p, s in self.rebind.items() if p != s}
                inherited = renamed if var_kw else {p: s for p, s in renamed.items() if p in accepted}
                revert_rebind = {**inherited, **(revert_rebind or {})}
            if revert_requires is None and requires:
                extra = [requires] if isinstance(requires, str) else [str(r) for r in requires]
                revert_requires = extra if var_kw else [r for r in extra if r in accepted]
            self.revert_rebind, self.revert_optional_params = build_arg_mapping(
                self.name, revert, revert_requires, revert_rebind, auto_extract, revert_ignore
            )
            # A parameter revert only takes through **kwargs keeps execute's optionality.
            self.revert_optional_params |= {
                p for p in self.revert_rebind if p not in accepted and p in self.optional_params
            }
        injected = set(self.inject)

        def needed(mapping: dict[str, str], optional: set[str], want_optional: bool) -> OrderedSet:
            return OrderedSet(
                symbol
                for param, symbol in mapping.items()
                if (param in optional) == want_optional and symbol not in injected and param not in injected
            )

        exec_requires = needed(self.rebind, self.optional_params, False)
        self.optional = needed(self.rebind, self.optional_params, True)
        self.revert_requires = needed(self.revert_rebind, self.revert_optional_params, False)
        self.revert_optional = needed(self.revert_rebind, self.revert_optional_params, True)
        self.requires = exec_requires.union(self.revert_requires)

    def execute(self, *args: Any, **kwargs: Any) -> Any:
        """Do the work; the return value is stored under ``provides``."""
        raise NotImplementedError(f"{type(self).__qualname__} must define execute()")

    def revert(self, *args: Any, **kwargs: Any) -> Any:
        """Undo the work (receives ``result`` and ``flow_failures`` as keyword arguments)."""

    def pre_execute(self) -> None:
        """Hook run before :meth:`execute` (TaskFlow compatibility)."""

    def post_execute(self) -> None:
        """Hook run after :meth:`execute`."""

    def pre_revert(self) -> None:
        """Hook run before :meth:`revert`."""

    def post_revert(self) -> None:
        """Hook run after :meth:`revert`."""

    def _report_progress(self, progress: float, details: dict[str, Any] | None) -> float:
        # Clamp rather than raise: progress is advisory (TaskFlow clamps and warns too).
        value = min(1.0, max(0.0, float(progress)))
        self._progress = value
        sink = progress_sink.get()
        if sink is not None:
            sink(self, value, details)
        return value

    @property
    def progress(self) -> float:
        """The last progress reported in this process (0.0 to 1.0)."""
        return self._progress

    def __str__(self) -> str:
        version = ".".join(str(p) for p in self.version) if isinstance(self.version, tuple) else self.version
        return f'"{self.name}=={version}"'  # TaskFlow's form

    def __repr__(self) -> str:
        return f"<{type(self).__module__}.{type(self).__qualname__} {self}>"


def class_name(obj: Any) -> str:
    """``module.QualName`` of an object's class (TaskFlow's ``reflection.get_class_name``)."""
    cls = obj if isinstance(obj, type) else type(obj)
    if cls.__module__ == "builtins":
        return cls.__qualname__
    return f"{cls.__module__}.{cls.__qualname__}"


def callable_name(function: Callable[..., Any]) -> str:
    """``module.qualname`` of a function or method (TaskFlow's ``reflection.get_callable_name``)."""
    if inspect.ismethod(function):
        owner = function.__self__
        owner_cls = owner if isinstance(owner, type) else type(owner)
        return f"{owner_cls.__module__}.{owner_cls.__qualname__}.{function.__name__}"
    qualname = getattr(function, "__qualname__", None) or getattr(function, "__name__", None)
    if qualname is None:
        return class_name(function)
    module = getattr(function, "__module__", None)
    return f"{module}.{qualname}" if module and module != "builtins" else str(qualname)


__all__ = ["Atom", "OrderedSet", "callable_name", "class_name", "progress_sink"]
