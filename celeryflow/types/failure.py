"""A captured failure that survives a process hop (TaskFlow's ``Failure``).

A :class:`Failure` keeps the exception's type names (most derived first), its
args, message and traceback text. It is stored in the logbook as JSON, and
:meth:`Failure.reraise` raises the original exception type again in the
caller's process when that type is available there *without importing
anything*: only modules already loaded in the process are consulted, so a
logbook row can never make a process import code.
"""

from __future__ import annotations

import sys
import traceback
from collections.abc import Iterable
from typing import Any, NoReturn

from celeryflow import serialization
from celeryflow.exceptions import WrappedFailure


def _type_names(exc_type: type[BaseException]) -> list[str]:
    names = []
    for cls in exc_type.__mro__:
        if cls is object:
            break
        names.append(f"{cls.__module__}.{cls.__qualname__}")
    return names


def _jsonable_args(args: Iterable[Any]) -> list[Any]:
    out: list[Any] = []
    for arg in args:
        try:
            out.append(serialization.roundtrip(arg))
        except Exception:
            out.append(repr(arg))
    return out


def _resolve_loaded_type(name: str) -> type[Exception] | None:
    """Find an exception class by dotted name among already-imported modules.

    The name comes from a logbook row, which is data (anyone who can write the database
    can forge it), so the lookup runs no code and reaches no internals:

    * only ``vars()`` of the module and of the classes on the way are read, never
      ``getattr``: a module's lazy ``__getattr__`` (PEP 562) may import modules, and a
      class's descriptors or metaclass ``__getattr__`` may run anything;
    * no part of the name may start with an underscore (``__class__``,
      ``__builtins__``, private helpers);
    * the result must be an :class:`Exception` subclass: a forged ``SystemExit``,
      ``KeyboardInterrupt`` or ``GeneratorExit`` would pass ``except Exception`` in a
      conductor or a view and stop the process.
    """
    module_name, _, qualname = name.rpartition(".")
    while module_name:
        module = sys.modules.get(module_name)
        if module is not None:
            obj: Any = module
            for part in qualname.split("."):
                if not part or part.startswith("_"):
                    return None
                try:
                    namespace = vars(obj)
                except TypeError:  # no __dict__: nothing to look in
                    return None
                obj = namespace.get(part)
                if obj is None:
                    return None
            if isinstance(obj, type) and issubclass(obj, Exception):
                return obj
            return None
        # nested class: "pkg.mod.Outer.Inner" -> try "pkg.mod" with "Outer.Inner"
        module_name, _, head = module_name.rpartition(".")
        qualname = f"{head}.{qualname}"
    return None


class Failure:
    """An exception captured with enough detail to inspect or re-raise it anywhere.

    Build one with ``Failure()`` inside an ``except`` block, ``Failure(exc_info)``,
    ``Failure.from_exception(exc)`` or ``Failure.from_dict(data)``.
    """

    def __init__(
        self,
        exc_info: tuple[Any, Any, Any] | None = None,
        *,
        exception_str: str | None = None,
        traceback_str: str | None = None,
        exc_type_names: Iterable[str] | None = None,
        exc_args: Iterable[Any] | None = None,
        causes: Iterable[Failure] = (),
    ) -> None:
        self._exception: BaseException | None = None
        if exc_type_names is None:
            if exc_info is None:
                exc_info = sys.exc_info()
            exc_type, exc_value, exc_tb = exc_info
            if exc_value is None:
                raise ValueError("Failure() needs an exception: call it in an except block or pass exc_info")
            self._exception = exc_value
            self._type_names = _type_names(type(exc_value))
            self._args = _jsonable_args(exc_value.args)
            self._exception_str = str(exc_value)
            self._traceback_str = "".join(traceback.format_exception(exc_type, exc_value, exc_tb))
            cause = exc_value.__cause__ or (None if exc_value.__suppress_context__ else exc_value.__context__)
            self._causes: tuple[Failure, ...] = (
                (Failure((type(cause), cause, cause.__traceback__)),) if cause is not None else ()
            )
        else:
            self._type_names = list(exc_type_names)
            self._args = list(exc_args or ())
            self._exception_str = exception_str or ""
            self._traceback_str = traceback_str or ""
            self._causes = tuple(causes)

    @classmethod
    def from_exception(cls, exception: BaseException) -> Failure:
        """Capture an exception object (its traceback, if it has one)."""
        return cls((type(exception), exception, exception.__traceback__))

    @property
    def exception(self) -> BaseException | None:
        """The live exception, when this failure was captured in this process."""
        return self._exception

    @property
    def exc_info(self) -> tuple[type[BaseException], BaseException, Any] | None:
        """``(type, value, traceback)`` when captured live in this process, else None (as TaskFlow)."""
        if self._exception is None:
            return None
        return type(self._exception), self._exception, self._exception.__traceback__

    @property
    def exception_str(self) -> str:
        return self._exception_str

    @property
    def exception_args(self) -> tuple[Any, ...]:
        return tuple(self._args)

    @property
    def exception_type_names(self) -> tuple[str, ...]:
        """Dotted type names, most derived first."""
        return tuple(self._type_names)

    @property
    def traceback_str(self) -> str:
        return self._traceback_str

    @property
    def causes(self) -> tuple[Failure, ...]:
        return self._causes

    def check(self, *exc_classes: type[BaseException] | str) -> type[BaseException] | str | None:
        """Return the first of ``exc_classes`` this failure is an instance of (class or dotted name)."""
        for cls in exc_classes:
            if isinstance(cls, type):
                name = f"{cls.__module__}.{cls.__qualname__}"
            else:
                name = cls
            if name in self._type_names:
                return cls
        return None

    def matches(self, other: Failure) -> bool:
        return (
            self._type_names == other._type_names
            and self._exception_str == other._exception_str
            and self._traceback_str == other._traceback_str
        )

    def recreate(self) -> BaseException | None:
        """Rebuild the original exception in this process, if its type is already loaded.

        Only :class:`Exception` subclasses are rebuilt from stored data, found without
        running code (see ``_resolve_loaded_type``); anything else gives None, and
        :meth:`reraise` raises a :class:`WrappedFailure` instead. A failure captured
        live in this process returns its own exception object, whatever its type.
        """
        if self._exception is not None:
            return self._exception
        if not self._type_names:
            return None
        exc_type = _resolve_loaded_type(self._type_names[0])
        if exc_type is None:
            return None
        try:
            exc = exc_type(*self._args)
        except Exception:
            try:
                exc = exc_type(self._exception_str)
            except Exception:
                return None
        if str(exc) != self._exception_str:
            # The type's __init__ shapes its message differently; keep the original text.
            try:
                exc.args = (self._exception_str,) if not self._args else tuple(self._args)
            except Exception:
                return None
        return exc

    def reraise(self) -> NoReturn:
        """Raise the original exception (same type and message), else a :class:`WrappedFailure`."""
        exc = self.recreate()
        if exc is None:
            raise WrappedFailure([self])
        if self._exception is None and self._traceback_str:
            # Keep the remote traceback visible to whoever catches it.
            exc.__notes__ = [*getattr(exc, "__notes__", []), "Remote traceback:\n" + self._traceback_str]
        raise exc

    @staticmethod
    def reraise_if_any(failures: Iterable[Failure]) -> None:
        """Raise the single failure's exception, or a WrappedFailure of several; no-op if none."""
        failures = list(failures)
        if len(failures) == 1:
            failures[0].reraise()
        if failures:
            raise WrappedFailure(failures)

    def to_dict(self) -> dict[str, Any]:
        return {
            "exc_type_names": list(self._type_names),
            "exc_args": list(self._args),
            "exception_str": self._exception_str,
            "traceback_str": self._traceback_str,
            "causes": [c.to_dict() for c in self._causes],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Failure:
        return cls(
            exc_type_names=data.get("exc_type_names", []),
            exc_args=data.get("exc_args", []),
            exception_str=data.get("exception_str", ""),
            traceback_str=data.get("traceback_str", ""),
            causes=[cls.from_dict(c) for c in data.get("causes", [])],
        )

    def pformat(self, traceback: bool = False) -> str:
        text = f"{self._type_names[0] if self._type_names else 'Failure'}: {self._exception_str}"
        if traceback and self._traceback_str:
            text += "\n" + self._traceback_str
        return text

    def __str__(self) -> str:
        return self.pformat()

    def __repr__(self) -> str:
        return f"Failure({self.pformat()!r})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Failure):
            return NotImplemented
        return self.matches(other)

    __hash__ = None  # type: ignore[assignment]
