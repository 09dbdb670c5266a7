"""User code's answers to the scheduler: deciders and retry controllers, asked outside every lock.

User code (a link's decider, a retry controller's ``on_failure``) never runs inside
a transaction that holds a flow's lock: a slow decider would stall every worker
finishing an atom of the flow, and a transaction retried after a deadlock or a
dropped connection would call it again. So:

* the worker that finished an atom asks the deciders on its outgoing links (they
  depend on its result only) *before* its finish transaction
  (:func:`decide_links`), and the transaction records the verdicts on the atom's
  row (the ``atoms.verdicts`` column, each with a digest of the input it answers);
* a transaction that needs an answer it does not have (a retry controller's verdict
  on a failure, a decider whose predecessor was ignored, a resume of a flow recorded
  before this) raises :class:`NeedsUserCode` and rolls back; :func:`asking` runs the
  calls outside it and runs the transaction again with the answers, which it records
  before they take effect. A recorded answer is reused for the same input, so a
  re-run after a crash does not ask again.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from celeryflow import serialization, states
from celeryflow.exceptions import InvalidState
from celeryflow.persistence.tables import AtomRow

if TYPE_CHECKING:
    from celeryflow.compiler import Compilation

LOG = logging.getLogger(__name__)

DeciderCall = Callable[[int, dict[str, Any]], bool]
#: user code's answers, by (kind, target, digest of its input): see :class:`NeedsUserCode`
Answers = dict[tuple[str, str, str], Any]
DECIDE = "decide"
#: a retry controller's ``on_failure`` (its answer is recorded in ``atoms.on_failure``)
ON_FAILURE = "on_failure"


def digest(text: str | None) -> str:
    """A short fingerprint of a user call's input (JSON text): a recorded answer is reused only for it."""
    return hashlib.blake2b((text or "null").encode(), digest_size=12).hexdigest()


@dataclass(frozen=True)
class UserCall:
    """A call of user code a transaction needs the answer of: ``kind`` on ``target`` with ``args``."""

    kind: str  # DECIDE (target: link id) | ON_FAILURE (target: controller name)
    target: str
    digest: str
    args: Any  # DECIDE: (pred, atom, decider ref, history); ON_FAILURE: (history, kwargs)

    @property
    def key(self) -> tuple[str, str, str]:
        return self.kind, self.target, self.digest


class NeedsUserCode(Exception):
    """Raised inside a transaction that cannot go on without user code's answers.

    User code (deciders, ``Retry.on_failure``) never runs while a flow's row is locked:
    the transaction rolls back, :func:`asking` runs the calls outside it and runs the
    transaction again with the answers, which it records before they take effect.
    Not a CeleryflowError: it never leaves :func:`asking`.
    """

    def __init__(self, calls: list[UserCall]) -> None:
        super().__init__(f"{len(calls)} user call(s) needed")
        self.calls = calls


T = TypeVar("T")
#: rounds of "roll back, ask, run again" before giving up: each adds answers for a moved state
ASK_ROUNDS = 8


def asking(run: Callable[[Answers], T], answer: Callable[[UserCall], Any], answers: Answers | None = None) -> T:
    """``run(answers)`` (a whole transaction), asking user code outside it whenever it needs an answer."""
    known: Answers = dict(answers or {})
    for _ in range(ASK_ROUNDS):
        try:
            return run(known)
        except NeedsUserCode as need:
            for call in need.calls:
                if call.key not in known:
                    known[call.key] = answer(call)
    raise InvalidState(f"The flow kept changing while its deciders and retry controllers were asked "
                       f"({ASK_ROUNDS} rounds); try again")


def decider_answer(decide: DeciderCall | None, call: UserCall) -> Any:
    """Run one decider (outside any transaction): True/False, or the failure dict of its error."""
    pred, name, ref, history = call.args
    if decide is None:
        raise InvalidState(f"Atom {name!r} has a decider but no decider callable is available")
    try:
        return bool(decide(int(call.target), history))
    except Exception as exc:
        return decider_failure(pred, name, ref, exc)


def decide_links(comp: Compilation, pred: str, result_json: str | None, decide: DeciderCall | None) -> Answers:
    """The verdicts of the deciders on ``pred``'s outgoing links, for its result (as the logbook stores it).

    The worker that finished ``pred`` runs this before its finish transaction; the
    verdicts are recorded on ``pred``'s row and used when each successor is ready.
    """
    if decide is None:
        return {}
    answers: Answers = {}
    value = serialization.loads(result_json) if result_json is not None else None
    for succ in comp.atoms[pred].succs:
        for decider in comp.atoms[succ].deciders:
            if decider.pred == pred:
                call = UserCall(DECIDE, str(decider.link_id), digest(result_json),
                                (pred, succ, decider.ref, {pred: value}))
                answers[call.key] = decider_answer(decide, call)
    return answers


def decider_failure(pred: str, name: str, ref: str | None, exc: Exception) -> dict[str, Any]:
    from celeryflow.exceptions import ExecutionFailure
    from celeryflow.types.failure import Failure

    LOG.warning("decider on %s -> %s raised %r", pred, name, exc)
    err = ExecutionFailure(
        f"The decider {ref or '(unregistered callable)'} on the link {pred!r} -> {name!r} raised "
        f"{type(exc).__name__}: {exc}. A decider must return True or False; the flow is reverted",
        exc,
    )
    return Failure.from_exception(err).to_dict()


def record_verdicts(session: Session, flow_uuid: str, pred: str, verdicts: Mapping[str, list[Any]]) -> None:
    """Merge ``{link id: [digest, verdict]}`` into ``pred``'s recorded verdicts (``atoms.verdicts``)."""
    if not verdicts:
        return
    where = (AtomRow.flow_uuid == flow_uuid, AtomRow.name == pred)
    recorded = serialization.loads(session.scalar(select(AtomRow.verdicts).where(*where)))
    merged = {**(recorded if isinstance(recorded, dict) else {}), **verdicts}
    session.execute(
        update(AtomRow).where(*where)
        .values(verdicts=serialization.dumps(merged, f"verdicts of {pred!r}"))
        .execution_options(synchronize_session=False)
    )


def record_own_verdicts(session: Session, flow_uuid: str, pred: str, answers: Answers | None) -> None:
    """Record the verdicts the finishing worker computed for ``pred``'s outgoing links."""
    own = {k[1]: [k[2], v] for k, v in (answers or {}).items() if k[0] == DECIDE}
    record_verdicts(session, flow_uuid, pred, own)


def verdicts_for(session: Session, flow_uuid: str, compiled: Any, answers: Answers | None) -> list[Any]:
    """Each incoming decider's verdict (recorded, or in ``answers``); NeedsUserCode for those missing."""
    preds = [d.pred for d in compiled.deciders]
    rows = {
        row.name: row for row in session.execute(
            select(AtomRow.name, AtomRow.state, AtomRow.result, AtomRow.verdicts)
            .where(AtomRow.flow_uuid == flow_uuid, AtomRow.name.in_(preds))
        )
    }
    verdicts: list[Any] = []
    missing: list[UserCall] = []
    for decider in compiled.deciders:
        row = rows[decider.pred]
        # what the decider is given: the predecessor's result, None when it has none (IGNORE)
        text = row.result if row.state in (states.SUCCESS, states.REVERTING, states.RETRYING) else None
        key = (DECIDE, str(decider.link_id), digest(text))
        recorded = (serialization.loads(row.verdicts) or {}).get(key[1]) if row.verdicts else None
        if recorded is not None and recorded[0] == key[2]:
            verdicts.append(recorded[1])
        elif answers is not None and key in answers:
            verdicts.append(answers[key])
            record_verdicts(session, flow_uuid, decider.pred, {key[1]: [key[2], answers[key]]})
        else:
            value = serialization.loads(text) if text is not None else None
            missing.append(UserCall(DECIDE, key[1], key[2],
                                    (decider.pred, compiled.name, decider.ref, {decider.pred: value})))
    if missing:
        raise NeedsUserCode(missing)
    return verdicts
