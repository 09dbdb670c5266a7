"""Adopt an existing ``@app.task`` as an atom, without rewriting it (issue #12, item 9).

``CeleryTask(charge_card, revert=refund_card, provides="charge_id")`` is an atom whose
execute runs the Celery task's body in the worker that runs the atom (one Celery task
per atom, as always: ``celeryflow.execute`` calls the body in-process, it does not send
a second message), with the inputs its signature names. Its revert is another Celery
task, or a function; it gets the same inputs plus whatever it names of ``result`` and
``flow_failures``.

The spec stores the tasks by their Celery *names*; a worker finds them among the tasks
registered on the Celery apps of its own process (the modules it imported at start),
never by importing anything a logbook row names.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from celeryflow.atom import callable_params
from celeryflow.exceptions import NotRegistered
from celeryflow.task import FunctorTask


def find_celery_task(name: str) -> Any:
    """The Celery task called ``name`` on one of this process's Celery apps, else NotRegistered."""
    from celery import _state

    for app in list(_state._get_active_apps()):
        if name in app.tasks:
            return app.tasks[name]
    raise NotRegistered(
        f"No Celery app in this process has a task named {name!r}; import the module that defines it "
        "on every worker (CELERYFLOW_IMPORTS or Celery's imports/include)"
    )


def _resolve(task: Any) -> Any:
    return find_celery_task(task) if isinstance(task, str) else task


def _task_name(task: Any) -> str:
    name = getattr(task, "name", None)
    if not isinstance(name, str) or not callable(getattr(task, "run", None)):
        raise TypeError(f"CeleryTask wraps a Celery task (an @app.task) or its name, not {task!r}")
    return name


def _body(task: Any) -> Callable[..., Any]:
    """The task's ``run`` as a plain function of its own parameters (``self`` of a bound task removed)."""
    return task.run  # a bound method: callable_params() leaves out ``self``


class CeleryTask(FunctorTask):
    """An atom that runs an existing Celery task's body.

    Args:
        task: an ``@app.task`` (or its registered name).
        revert: another Celery task (or its name) or a function to compensate it; optional.
        name: the atom's name (default: the Celery task's name).
        provides, requires, rebind, inject, revert_rebind, revert_requires: as for
            :class:`~celeryflow.task.Task`; ``requires`` is inferred from the task's signature.
    """

    def __init__(
        self,
        task: Any,
        revert: Any = None,
        name: str | None = None,
        provides: Any = None,
        requires: Any = None,
        rebind: Any = None,
        inject: Mapping[str, Any] | None = None,
        revert_rebind: Any = None,
        revert_requires: Any = None,
    ) -> None:
        celery_task = _resolve(task)
        task_name = _task_name(celery_task)
        revert_fn: Callable[..., Any] | None = None
        revert_ref: Any = revert
        if revert is not None and (isinstance(revert, str) or hasattr(revert, "run")):
            revert_task = _resolve(revert)
            revert_ref = _task_name(revert_task)
            revert_fn = _body(revert_task)
            self._revert_task: Any = revert_task
        else:
            revert_fn = revert
            self._revert_task = None
        self._celery_task = celery_task
        super().__init__(
            _body(celery_task), name=name or task_name, provides=provides, requires=requires, rebind=rebind,
            revert=revert_fn, inject=inject, revert_rebind=revert_rebind, revert_requires=revert_requires,
        )
        # What a worker needs to rebuild it: task *names* (JSON), not task objects.
        self._ctor_args = (task_name,)
        self._ctor_kwargs = {
            k: v for k, v in {
                "revert": revert_ref, "name": name, "provides": provides, "requires": requires,
                "rebind": rebind, "inject": dict(inject) if inject else None,
                "revert_rebind": revert_rebind, "revert_requires": revert_requires,
            }.items() if v is not None
        }

    @property
    def celery_task(self) -> Any:
        """The wrapped Celery task."""
        return self._celery_task

    def execute(self, *args: Any, **kwargs: Any) -> Any:
        # Calling the task object runs its body here, with Celery's request context set up
        # (a bound task's ``self.request`` works), exactly as ``task(...)`` does in Celery.
        return self._celery_task(*args, **kwargs)

    def revert(self, *args: Any, **kwargs: Any) -> Any:
        if self._revert_task is None:
            return super().revert(*args, **kwargs)
        names, _, var_kw = callable_params(self._revert_task.run)
        if not var_kw:
            kwargs = {k: v for k, v in kwargs.items() if k in set(names)}
        return self._revert_task(*args, **kwargs)


__all__ = ["CeleryTask", "find_celery_task"]
