"""Loading a claimed job's flows into engines, each checked to be runnable by this conductor.

A job that can never run here raises :class:`Unloadable` (the conductor trashes it
with the reason); a job whose flow belongs to another deployment raises
:class:`Foreign` (the conductor abandons it and never claims it again).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from celeryflow import namespaces
from celeryflow.exceptions import NotFound, NotRegistered

if TYPE_CHECKING:
    from celeryflow.engines.engine import CeleryEngine
    from celeryflow.jobs.job import Job


class Unloadable(Exception):
    """The job cannot be loaded: trash it with this reason."""


class Foreign(Exception):
    """The job's flow belongs to another deployment (namespace): abandon it, never claim it again."""


def load_engines(
    job: Job,
    *,
    engine: str,
    persistence: Callable[[], Any],
    app: Any,
    engine_options: Mapping[str, Any],
) -> list[CeleryEngine]:
    """Engines for the job's flows, each checked to be rebuildable here.

    Args:
        job: the claimed job.
        engine: the engine kind (``"celery"``).
        persistence: returns the logbook (URL or backend) of the job's flows; called
            only once the job is known to name flows.
        app: the Celery app the flows run on.
        engine_options: extra ``load_from_detail`` options.

    Raises:
        Unloadable: the job names no flow, or a flow that is missing, corrupt or not rebuildable here.
        Foreign: a flow of the job belongs to another deployment.
    """
    from celeryflow import engines as engines_mod
    from celeryflow.runtime import context

    details = job.details
    flow_uuids: list[str] = []
    if job.flow_uuid:
        flow_uuids = [job.flow_uuid]
    elif job.book_uuid:
        book = job.book
        if book is None:
            raise Unloadable(f"its logbook {job.book_uuid} is not in the logbook database")
        flow_uuids = [str(fd.uuid) for fd in book]
    if not flow_uuids:
        raise Unloadable("it names no flow: post it with post_flow(), or with details={'flow_uuid': ...} "
                         "or a book holding flows")
    store = details.get("store")
    if store is not None and not isinstance(store, Mapping):
        raise Unloadable(f"details['store'] is a {type(store).__name__}, not a dict")
    backend = persistence()
    out = []
    for flow_uuid in flow_uuids:
        try:
            loaded = engines_mod.load_from_detail(
                flow_uuid, store=store, engine=engine, backend=backend, app=app, **engine_options
            )
        except NotFound as exc:
            raise Unloadable(f"its flow {flow_uuid} is not in the logbook ({exc})") from None
        except (NotRegistered, KeyError, TypeError, ValueError) as exc:  # NotRegistered: CorruptSpec
            raise Unloadable(f"its flow {flow_uuid} has a corrupt spec: {type(exc).__name__}: {exc}") from None
        theirs = namespaces.of_flow(loaded.backend, flow_uuid)
        if theirs is not None and theirs != loaded.settings.namespace:
            raise Foreign(f"its flow {flow_uuid} belongs to the deployment {theirs!r}, this conductor's is "
                          f"{loaded.settings.namespace!r} (CELERYFLOW_NAMESPACE): left to its conductors")
        runtime = context.runtime_for(loaded.backend, flow_uuid)
        if runtime.atoms is None:  # not submitted by this process: it must be rebuildable from its spec
            try:
                context.rebuild_flow(runtime.spec)
            except NotRegistered as exc:
                raise Unloadable(f"its flow cannot be rebuilt here: {exc}") from None
            except Exception as exc:
                raise Unloadable(
                    f"its flow cannot be rebuilt here: the factory or spec failed: {type(exc).__name__}: {exc}"
                ) from None
        out.append(loaded)
    return out


__all__ = ["Foreign", "Unloadable", "load_engines"]
