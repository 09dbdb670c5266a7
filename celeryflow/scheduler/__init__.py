"""The scheduler core: every rule that decides what happens to a flow, as pure functions.

Nothing in this package does I/O: no SQLAlchemy, no Celery, no clock, no logging. Each
function takes typed, frozen snapshots of the rows an event touches
(:mod:`~celeryflow.scheduler.snapshot`) and the flow's compilation, and returns a typed
decision; the transactions in :mod:`celeryflow.runtime` (workers' begin/finish, the
sweep, resume/suspend/revert, conductors, the embedded default) load the snapshot under
the locks they need, ask the core, and write what it decided as compare-and-set
statements, publishing only after the commit. A rule lives here once; the fast paths
and the general transactions apply the same decision.

Modules, one per concern:

* :mod:`~celeryflow.scheduler.claim` — may this message claim this atom (run, skip, refuse)?
* :mod:`~celeryflow.scheduler.admission` — which ready atoms to queue under the dispatch
  window, how many held ones to refill.
* :mod:`~celeryflow.scheduler.settle` — what a quiet flow does next (succeed, suspend,
  plan its compensation, end REVERTED/FAILURE).
* :mod:`~celeryflow.scheduler.liveness` — fresh and stale claims, judged by the
  database's clock; the sweep's cases.
* :mod:`~celeryflow.scheduler.recovery` — what a lost or stale claim becomes on resume and
  reclaim; what a flow's state means for start and revert requests.
* :mod:`~celeryflow.scheduler.compensation` — what must be reverted, in which order.
* :mod:`~celeryflow.scheduler.retry_scopes` — what a failure inside retry scopes leads to
  (RETRY / REVERT a subflow / REVERT_ALL), asking the controllers' verdicts one by one.
* :mod:`~celeryflow.scheduler.deciders` — what deciders' verdicts leave out (IGNORE).

``tests/unit/test_scheduler_core.py`` tests every rule as a table, with no database, and
checks that this package imports nothing that does I/O.
"""
