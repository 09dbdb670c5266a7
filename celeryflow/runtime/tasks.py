"""The Celery tasks a worker runs: execute one atom, revert one atom.

Messages carry ``(flow id, atom name, epoch, backend key)`` only. Inputs are
read from the logbook and results written to it; the task's own return value
is ignored (no result backend needed). A bad message (unknown flow, unknown
logbook, an atom class this worker does not have) is logged and dropped or
recorded as the atom's failure; it never kills the worker.
"""

from __future__ import annotations

import logging
import os
import socket
from typing import TYPE_CHECKING, Any

from celeryflow import atom as atommod
from celeryflow.exceptions import CeleryflowError, NotFound, NotRegistered, ResultTooLarge, StorageFailure
from celeryflow.runtime import backends, context, heartbeat, intercept, localbus, missing_code, outage, steps
from celeryflow.runtime.dispatch import EXECUTE_TASK, REVERT_TASK, chained_next, publish
from celeryflow.runtime.logbook import EXECUTE, REVERT, Dispatch
from celeryflow.runtime.settings import Settings
from celeryflow.runtime.verdicts import decide_links
from celeryflow.types.failure import Failure

if TYPE_CHECKING:
    from celery import Celery, Task

LOG = logging.getLogger("celeryflow.worker")

WORKER_ID = f"{socket.gethostname()}:{os.getpid()}"
_worker_init_connected = False


def worker_id() -> str:
    # Re-read the pid: prefork children inherit the module from their parent.
    return f"{socket.gethostname()}:{os.getpid()}"


def _call_atom(
    runtime: context.FlowRuntime, name: str, mode: str, begun: steps.Begun
) -> tuple[Any, dict[str, Any] | None]:
    if begun.input_error is not None:
        # Claimed, but its inputs cannot be resolved: that is the atom's failure, and the flow
        # compensates as for any other (the atom itself is never called).
        return None, begun.input_error
    kwargs = dict(begun.kwargs or {})
    try:
        atom = runtime.atom(name)
        if intercept.active():  # celeryflow.testing's failure and crash injection, in this process only
            return intercept.call(runtime.uuid, name, mode, lambda: _invoke(runtime, atom, name, mode, begun,
                                                                            kwargs)), None
        return _invoke(runtime, atom, name, mode, begun, kwargs), None
    except Exception as exc:
        LOG.info("atom %s of flow %s failed in %s: %r", name, runtime.uuid, mode, exc)
        return None, Failure.from_exception(exc).to_dict()
    except ATOM_ABORTS as exc:
        if _shutting_down():
            raise  # the worker itself is stopping (a signal): the message is redelivered elsewhere
        # Raised by the atom's own code: its failure, like any exception. Left to propagate, it
        # would end the pool child (prefork: redelivered until the atom counts as poison) or
        # leave the atom RUNNING with live heartbeats (thread pools, the embedded default).
        LOG.warning("atom %s of flow %s raised %r in %s; recorded as its failure", name, runtime.uuid, exc, mode)
        return None, Failure.from_exception(exc).to_dict()


def _invoke(runtime: context.FlowRuntime, atom: Any, name: str, mode: str, begun: steps.Begun,
            kwargs: dict[str, Any]) -> Any:
    """Call the atom's own ``execute`` or ``revert`` (a retry controller's with its history)."""
    is_retry = runtime.comp.atoms[name].kind == "retry"
    if mode == EXECUTE:
        if is_retry:
            from celeryflow.runtime.retries import call_retry_execute

            return call_retry_execute(atom, kwargs, begun.history)
        return atom.execute(**kwargs)
    flow_failures = {k: Failure.from_dict(v) for k, v in (begun.flow_failures or {}).items()}
    if is_retry:
        # A retry controller reverts with its history (TaskFlow's Retry.revert(history, ...)).
        from celeryflow.runtime.retries import call_retry_revert

        return call_retry_revert(atom, kwargs, begun.history, flow_failures)
    result = begun.result
    if begun.failure is not None:
        result = Failure.from_dict(begun.failure)
    return atom.revert(result=result, flow_failures=flow_failures, **kwargs)


#: BaseExceptions that are not Exceptions, raised by an atom's code
ATOM_ABORTS = (SystemExit, KeyboardInterrupt, GeneratorExit)


def _local_progress(runtime: context.FlowRuntime, name: str, value: float) -> None:
    """TaskFlow's progress 0.0 before and 1.0 after a task's code, to the task's own notifier only.

    Not written to the logbook (the atom's state says as much): no extra transaction per atom.
    """
    if runtime.comp.atoms[name].kind != "task":
        return
    try:
        atom = runtime.atom(name)
    except Exception:  # _call_atom reports why the atom cannot be built
        return
    atom._progress = value
    notifier = atom.__dict__.get("_notifier")
    if notifier is not None:
        from celeryflow.task import EVENT_UPDATE_PROGRESS

        notifier.notify(EVENT_UPDATE_PROGRESS, {"progress": value})


def _shutting_down() -> bool:
    """True when this process's own terminate handler fired (billiard sets it before raising SystemExit)."""
    try:
        from billiard.common import terminate_handler_fired
    except ImportError:  # older billiard: no way to tell, treat it as the atom's own
        return False
    return bool(terminate_handler_fired())


def _check_result(result: Any, name: str, settings: Settings) -> tuple[str | None, dict[str, Any] | None]:
    """The result as the logbook stores it (JSON), or the failure that replaces it (not JSON, too large)."""
    from celeryflow import serialization

    try:
        text = serialization.dumps_value(result, f"result of atom {name!r}")
    except CeleryflowError as exc:
        return None, Failure.from_exception(exc).to_dict()
    if len(text) > settings.max_result_bytes:
        too_large = ResultTooLarge(
            f"Result of atom {name!r} is {len(text)} bytes, over the limit of {settings.max_result_bytes} "
            "(CELERYFLOW_MAX_RESULT_BYTES); store large data elsewhere and return a reference"
        )
        return None, Failure.from_exception(too_large).to_dict()
    return text, None


def run_step(task: Task, flow_uuid: str, name: str, epoch: int, backend_key: str, mode: str) -> None:
    """Body of both Celery tasks."""
    app = task.app
    me = worker_id()
    try:
        backend = backends.resolve(backend_key, app)
        runtime = context.runtime_for(backend, flow_uuid)
    except StorageFailure as exc:
        outage.retry_later(task, exc, f"the {mode} message of {flow_uuid}/{name}")
        _stop_chain(task)
        return
    except (NotRegistered, NotFound) as exc:
        LOG.error("rejected %s message for flow %s atom %r: %s", mode, flow_uuid, name, exc)
        _stop_chain(task)
        return
    if name not in runtime.comp.atoms:
        LOG.error("rejected %s message: flow %s has no atom %r (forged or corrupt message)", mode, flow_uuid, name)
        _stop_chain(task)
        return
    settings = Settings.for_app(app)  # cached: this runs for every message
    if intercept.active() and not intercept.admit(flow_uuid, name, mode):
        LOG.warning("dropped the %s message of %s/%s (injected crash)", mode, flow_uuid, name)
        _stop_chain(task)
        return
    # a worker without the atom's code leaves it queued for one that has it (runtime.missing_code)
    preset: tuple[Any, dict[str, Any] | None] | None = None
    missing = missing_code.lacks_code(runtime, name)
    if missing is not None:
        try:
            held, gave_up = missing_code.hold(task, backend, runtime, name, epoch, mode, missing, settings, me)
        except StorageFailure as exc:
            outage.retry_later(task, exc, f"the {mode} message of {flow_uuid}/{name}")
            _stop_chain(task)
            return
        if held is missing_code.Hold.DROP:
            _stop_chain(task)
            return
        preset = (None, None if gave_up is None else Failure.from_exception(gave_up).to_dict())
    try:
        begun = steps.begin(backend, runtime.comp, flow_uuid, name, epoch, mode, me,
                            task_id=getattr(task.request, "id", None))
    except StorageFailure as exc:  # nothing ran yet: deliver the message again later
        outage.retry_later(task, exc, f"the {mode} message of {flow_uuid}/{name}")
        _stop_chain(task)
        return
    localbus.notify()
    if begun.verdict is steps.Verdict.SKIP:
        LOG.info("skipped %s of %s/%s: %s", mode, flow_uuid, name, begun.reason)
        _stop_chain(task)
        return
    if begun.verdict is steps.Verdict.REFUSE:
        _stop_chain(task)
        dispatch = outage.persist(lambda: steps.refuse(backend, runtime.comp, flow_uuid, name, epoch, me, mode,
                                                       runtime.comp.window(settings.dispatch_window)),
                                  f"the refusal of {flow_uuid}/{name}", max(settings.heartbeat_timeout * 3, 60.0))
        localbus.notify()
        _send(app, runtime, dispatch, backend_key, settings, task, epoch)
        return

    def progress(atom: Any, value: float, details: dict[str, Any] | None) -> None:
        try:
            steps.record_progress(backend, flow_uuid, name, epoch, value, details, me, token=begun.token)
        except StorageFailure as exc:  # progress is best effort: never fail the atom for it
            LOG.warning("progress of %s/%s not recorded: %s", flow_uuid, name, exc)
            return
        localbus.notify()

    # A caller following this flow in this process delivers the claim's notification first.
    localbus.barrier(flow_uuid)
    # the claim's token, not the worker id, fences this execution: this process may run others
    with heartbeat.beating(backend, flow_uuid, name, me, settings.heartbeat_interval, begun.token):
        if begun.input_error is None:
            _local_progress(runtime, name, 0.0)
        token = atommod.progress_sink.set(progress)
        try:
            if preset is None and mode == REVERT and missing_code.never_ran(begun.failure):
                preset = (None, None)  # it never ran (no worker had its code): nothing to undo
            result, failure = _call_atom(runtime, name, mode, begun) if preset is None else preset
        except intercept.Crash:
            # injected: the process "died" with the atom in its hands; its claim is left as it is
            LOG.warning("dropped the %s outcome of %s/%s (injected crash)", mode, flow_uuid, name)
            _stop_chain(task)
            return
        finally:
            atommod.progress_sink.reset(token)
        if failure is None:
            _local_progress(runtime, name, 1.0)
        result_json = None
        if failure is None:
            result_json, failure = _check_result(result, name, settings)
            if failure is not None:
                result = None
        decide = None if mode == REVERT else _decider(runtime)
        # The deciders on this atom's outgoing links depend on its result only: ask them now,
        # outside the finish transaction (user code never runs while the flow row is locked).
        answers = decide_links(runtime.comp, name, result_json, decide) if failure is None and decide else None
        dispatch = outage.persist(
            lambda: steps.finish(backend, runtime.comp, flow_uuid, name, epoch, mode, me, result=result,
                                 failure=failure, decide=decide, controller=runtime.atom,
                                 window=runtime.comp.window(settings.dispatch_window), result_json=result_json,
                                 answers=answers,
                                 token=begun.token),
            f"the {mode} outcome of {flow_uuid}/{name}", max(settings.heartbeat_timeout * 3, 60.0),
        )
    localbus.notify()
    if intercept.active() and not intercept.publish(flow_uuid, name, mode):
        LOG.warning("dropped what follows the %s of %s/%s (injected crash)", mode, flow_uuid, name)
        _stop_chain(task)
        return
    _send(app, runtime, dispatch, backend_key, settings, task, epoch)
    if failure is not None and dispatch is not None:
        _fail_celery_task(app, failure)


def _fail_celery_task(app: Celery, failure: dict[str, Any]) -> None:
    """End this Celery task FAILURE with the atom's exception (type and message), once recorded.

    Flower's Failed tab, ``task-failed`` events, Prometheus exporters and Sentry then see
    an atom that failed (execute or revert) as Celery users expect. The logbook already
    holds the outcome and what follows was published: raising changes nothing for the
    flow (the message is acknowledged; Celery sends no further chain step, and there was
    none). The embedded default keeps quiet: nobody watches its tasks, and Celery would
    print every atom failure of a script to its console.
    """
    from celeryflow.runtime.embedded import is_embedded

    if is_embedded(app):
        return
    Failure.from_dict(failure).reraise()  # the original type when loaded here, else WrappedFailure


def _decider(runtime: context.FlowRuntime) -> Any:
    # comp.deciders lists every link decider of the flow: O(1), not a walk over all atoms per message
    return runtime.decide if runtime.comp.deciders else None


def _stop_chain(task: Task) -> None:
    try:
        task.request.chain = None
    except AttributeError:
        pass


def _send(app: Celery, runtime: context.FlowRuntime, dispatch: Dispatch | None, backend_key: str,
          settings: Settings, task: Task | None, epoch: int | None = None) -> None:
    nxt = chained_next(task.request) if task is not None else None
    if dispatch is None:
        _stop_chain(task) if task is not None else None
        return
    if nxt is not None:
        # The rest of the chain carries this message's epoch: useless if a reclaim bumped it.
        if nxt in dispatch.execute and (epoch is None or epoch == dispatch.epoch):
            # The Celery chain this message belongs to sends it next.
            dispatch.execute.remove(nxt)
        elif task is not None:
            _stop_chain(task)
    try:
        publish(app, runtime.comp, dispatch, backend_key, settings.chain_max)
    except Exception:
        # Committed but not sent: the conductor's sweep finds queued atoms with no
        # message and sends them again. Never let this kill the worker.
        LOG.exception("could not publish the next atoms of flow %s; the sweep will re-dispatch them",
                      dispatch.flow_uuid)


def open_logbook_at_worker_start(sender: Any = None, **_: Any) -> None:
    """``worker_init``: open the worker's logbook and check its schema before the pool forks.

    The pool's children inherit a backend that is ready (schema checked or upgraded),
    so no child pays the Alembic check on its first message; and a worker pointed at a
    database that is down or has an old schema says so when it starts. Never fatal: a
    message that finds the logbook unreachable is retried later, as always.
    """
    app = getattr(sender, "app", None)
    if app is None or EXECUTE_TASK not in app.tasks:
        return
    from celeryflow.runtime.embedded import is_embedded

    if is_embedded(app):
        return  # its engines name their logbooks themselves; the configured default may be unused
    url = app.conf.get("celeryflow_backend")
    if not url:
        return
    from celeryflow.persistence.backends import fetch

    try:
        backend = fetch(url)
        backends.remember(backend)
        backend.validate()
    except CeleryflowError as exc:
        LOG.warning("celeryflow: the logbook is not usable at worker start (%s); atoms will wait for it", exc)


def register_tasks(app: Celery) -> None:
    """Register the worker tasks on ``app`` (idempotent)."""
    global _worker_init_connected
    if not _worker_init_connected:
        from celery import signals

        signals.worker_init.connect(open_logbook_at_worker_start, weak=False)
        _worker_init_connected = True
    if EXECUTE_TASK in app.tasks and REVERT_TASK in app.tasks:
        return
    common: dict[str, Any] = {
        "bind": True,
        "acks_late": True,
        "reject_on_worker_lost": True,
        "ignore_result": True,
        "serializer": "json",
        "shared": False,
        # checks each message before Celery unpacks it: no raw message can stop a worker
        "Strategy": "celeryflow.runtime.strategy:guarded",
    }

    @app.task(name=EXECUTE_TASK, **common)
    def execute_atom(self: Task, *args: Any, **kwargs: Any) -> None:
        checked = check_message(args, kwargs)
        if checked is not None:
            run_step(self, *checked, EXECUTE)

    @app.task(name=REVERT_TASK, **common)
    def revert_atom(self: Task, *args: Any, **kwargs: Any) -> None:
        checked = check_message(args, kwargs)
        if checked is not None:
            run_step(self, *checked, REVERT)


def check_message(args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[str, str, int, str] | None:
    """Validate a message's shape; a malformed or forged one is logged and dropped, never run."""
    if (
        len(args) == 4
        and not kwargs
        and isinstance(args[0], str)
        and isinstance(args[1], str)
        and isinstance(args[2], int)
        and not isinstance(args[2], bool)
        and isinstance(args[3], str)
    ):
        return args[0], args[1], args[2], args[3]
    LOG.error("rejected a malformed celeryflow message: args=%.200r kwargs=%.200r", args, kwargs)
    return None
