"""The Redis jobboard.

Keys (``<ns>`` is ``celeryflow:jobs:<namespace>``; the namespace defaults to the board's name, as
on the SQL board, so the same name or namespace is the same board whichever process opens it):

* ``<ns>:jobs``: a sorted set of job ids, score ``priority rank * 2**40 + seq``
  (priority first, FIFO within a priority);
* ``<ns>:job:<id>``: a hash (uuid, name, details JSON, priority, flow_uuid, book,
  created_on, seq);
* ``<ns>:owner:<id>``: the claim: the owner's name, with a ``PX`` expiry;
* ``<ns>:seq``: the posting counter; ``<ns>:trash``: a list of JSON records of
  trashed jobs (with ``reason``); ``<ns>:events``: the pub/sub channel
  ``wait()`` listens on.

Every ownership change is one Lua script (atomic on the server; see ``redis_scripts``):
claims expire by the server's clock, so conductor hosts' clocks do not matter. A job
whose hash is missing or cannot be decoded is moved to the trash with the reason by
the first reader that meets it (stored values are turned into records in ``redis_records``).
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping
from typing import Any

from celeryflow import states
from celeryflow.exceptions import ConfigurationError, NotFound, StorageFailure
from celeryflow.jobs.backends.base import JobBoard, JobRef
from celeryflow.jobs.backends.redis_records import as_record, text, trashed_job
from celeryflow.jobs.backends.redis_scripts import SCRIPTS
from celeryflow.jobs.job import Job, JobPriority, TrashedJob
from celeryflow.persistence.tables import utcnow

PAGE = 500
SEQ_SPAN = 2**40
#: most recent trashed jobs kept (oldest dropped first)
DEFAULT_TRASH_LIMIT = 10000


class RedisJobBoard(JobBoard):
    """Jobs in Redis. ``conf``: ``url`` (``redis://host:port/db``), ``namespace``, ``claim_expiry``,
    ``trash_limit`` (default 10000), ``redis_options`` (extra ``redis.Redis`` keyword arguments)."""

    kind = "redis"

    def __init__(self, name: str, conf: Mapping[str, Any], persistence: Any = None) -> None:
        super().__init__(name, conf, persistence)
        url = self.conf.get("url")
        if not isinstance(url, str) or not url.startswith(("redis://", "rediss://", "unix://")):
            raise ConfigurationError(
                f"The Redis jobboard {name!r} needs conf['url'] like redis://host:6379/0, not {url!r}"
            )
        self.url = url
        self.namespace = str(self.conf.get("namespace") or name)
        #: every key of the board starts with this
        self.prefix = f"celeryflow:jobs:{self.namespace}"
        self.trash_limit = int(self.conf.get("trash_limit", DEFAULT_TRASH_LIMIT))
        self._options = dict(self.conf.get("redis_options") or {})
        self._client: Any = None
        self._scripts: dict[str, Any] = {}

    # ------------------------------------------------------------------ keys

    @property
    def _jobs_key(self) -> str:
        return f"{self.prefix}:jobs"

    def _job_key(self, uuid: str) -> str:
        return f"{self.prefix}:job:{uuid}"

    def _owner_key(self, uuid: str) -> str:
        return f"{self.prefix}:owner:{uuid}"

    @property
    def _trash_key(self) -> str:
        return f"{self.prefix}:trash"

    @property
    def _events_key(self) -> str:
        return f"{self.prefix}:events"

    def _identity(self) -> tuple[str, ...]:
        return (self.url, self.namespace)

    # ------------------------------------------------------------------ lifecycle

    def connect(self) -> None:
        if self._connected:
            return
        import redis

        options = {"socket_timeout": 30, "socket_connect_timeout": 10, "health_check_interval": 30}
        options.update(self._options)
        client = redis.Redis.from_url(self.url, **options)
        try:
            client.ping()
        except redis.RedisError as exc:
            client.close()
            raise StorageFailure(f"Cannot reach the Redis jobboard at {_masked(self.url)}: {exc}", exc) from exc
        self._client = client
        self._scripts = {name: client.register_script(body) for name, body in SCRIPTS.items()}
        self._connected = True

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
        self._client = None
        self._connected = False

    @property
    def client(self) -> Any:
        """The ``redis.Redis`` client."""
        self._check_connected()
        return self._client

    def _run(self, script: str, keys: list[str], args: list[Any]) -> tuple[str, str | None]:
        import redis

        try:
            status, owner = self._scripts[script](keys=keys, args=args)
        except redis.RedisError as exc:
            raise StorageFailure(f"The Redis jobboard {self.name!r} failed ({script}): {exc}", exc) from exc
        return text(status) or "", text(owner) or None

    # ------------------------------------------------------------------ posting

    def _insert(self, fields: Mapping[str, Any]) -> Job:
        self._check_connected()
        import redis

        created = utcnow()
        priority: JobPriority = fields["priority"]
        try:
            seq = self._scripts["post"](
                keys=[self._jobs_key, self._job_key(fields["uuid"]), f"{self.prefix}:seq", self._events_key],
                args=[fields["uuid"], fields["name"], fields["details_text"], priority.rank, fields["flow_uuid"] or "",
                      fields["book_uuid"] or "", fields["book_name"] or "", created.isoformat()],
            )
        except redis.RedisError as exc:
            raise StorageFailure(f"Could not post to the Redis jobboard {self.name!r}: {exc}", exc) from exc
        return self._make_job(fields, created, int(seq))

    # ------------------------------------------------------------------ reading

    def _as_record(self, uuid: str, raw: Mapping[bytes, bytes]) -> dict[str, Any]:
        return as_record(uuid, raw)

    def _page(self, after: float | None) -> list[tuple[str, float]]:
        low = "-inf" if after is None else f"({after!r}"
        return [(text(m) or "", float(score)) for m, score in
                self.client.zrangebyscore(self._jobs_key, low, "+inf", start=0, num=PAGE, withscores=True)]

    def _records(self, only_unclaimed: bool) -> Iterator[Mapping[str, Any]]:
        client = self.client
        after: float | None = None
        while True:
            page = self._page(after)  # keyset paging on the (unique) score: robust to concurrent removals
            if not page:
                return
            pipe = client.pipeline(transaction=False)
            for uuid, _ in page:
                pipe.hgetall(self._job_key(uuid))
                pipe.exists(self._owner_key(uuid))
            replies = pipe.execute()
            for index, (uuid, _) in enumerate(page):
                raw, owned = replies[2 * index], replies[2 * index + 1]
                if not raw:
                    # consumed between the two reads, or a member without its hash (corrupt)
                    if client.zscore(self._jobs_key, uuid) is not None and not client.exists(self._job_key(uuid)):
                        yield {"uuid": uuid, "name": None, "_missing": True}
                    continue
                if only_unclaimed and owned:
                    continue
                yield self._as_record(uuid, raw)
            if len(page) < PAGE:
                return
            after = page[-1][1]

    def _record(self, uuid: str) -> Mapping[str, Any] | None:
        raw = self.client.hgetall(self._job_key(uuid))
        if not raw:
            return None
        return self._as_record(uuid, raw)

    def _decode(self, record: Mapping[str, Any]) -> Job:
        from celeryflow.jobs.backends.base import CorruptJob

        if record.get("_missing"):
            raise CorruptJob("its record (hash) is missing")
        return super()._decode(record)

    def _trash_corrupt(self, record: Mapping[str, Any], reason: str) -> None:
        uuid = str(record["uuid"])
        self._run("trash", [self._job_key(uuid), self._owner_key(uuid), self._jobs_key, self._trash_key],
                  ["", uuid, reason, utcnow().isoformat(), self.trash_limit])

    def find_owner(self, job: JobRef) -> str | None:
        return text(self.client.get(self._owner_key(self._uuid(job))))

    def state_of(self, job: JobRef) -> str:
        uuid = self._uuid(job)
        pipe = self.client.pipeline(transaction=False)
        pipe.exists(self._job_key(uuid))
        pipe.exists(self._owner_key(uuid))
        exists, owned = pipe.execute()
        if not exists:
            return states.COMPLETE
        return states.CLAIMED if owned else states.UNCLAIMED

    @property
    def job_count(self) -> int:
        return int(self.client.zcard(self._jobs_key))

    def _has_claimable(self) -> bool:
        after: float | None = None
        while True:
            page = self._page(after)
            if not page:
                return False
            pipe = self.client.pipeline(transaction=False)
            for uuid, _ in page:
                pipe.exists(self._owner_key(uuid))
            if not all(pipe.execute()):
                return True
            if len(page) < PAGE:
                return False
            after = page[-1][1]

    def _wait_for_claimable(self, deadline: float | None) -> None:
        """Subscribe to the board's channel, then look: a post after the look wakes us at once.

        Expired claims publish nothing, so the board is looked at again at least once a second.
        """
        pubsub = self.client.pubsub(ignore_subscribe_messages=True)
        try:
            pubsub.subscribe(self._events_key)
            while True:
                if self._has_claimable():
                    return
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    raise NotFound(f"No job was posted on the board {self.name!r} within the timeout")
                pause = 1.0 if remaining is None else min(1.0, remaining)
                end = time.monotonic() + pause
                while time.monotonic() < end:  # drain everything that arrived; any message means "look again"
                    if pubsub.get_message(timeout=max(0.0, end - time.monotonic())) is not None:
                        break
        finally:
            pubsub.close()

    def iter_trash(self) -> Iterator[TrashedJob]:
        for raw in self.client.lrange(self._trash_key, 0, -1):
            yield trashed_job(raw)

    # ------------------------------------------------------------------ ownership

    def _expiry_ms(self, expiry: float | None) -> int:
        seconds = self._expiry(expiry)
        return 0 if seconds is None else max(1, int(seconds * 1000))

    def claim(self, job: JobRef, who: str, expiry: float | None = None) -> None:
        self._check_who(who)
        uuid = self._uuid(job)
        status, owner = self._run("claim", [self._job_key(uuid), self._owner_key(uuid)], [who, self._expiry_ms(expiry)])
        if status != "ok":
            raise self._unclaimable(uuid, owner if status == "owned" else None, who)

    def _outcome(self, uuid: str, status: str, owner: str | None, who: str, action: str) -> None:
        if status == "ok":
            return
        if status == "gone":
            raise NotFound(f"Job {uuid} is not on the board {self.name!r} (consumed or trashed)")
        raise self._not_owner(uuid, owner if status == "owned" else None, who, action)

    def extend_claim(self, job: JobRef, who: str, expiry: float | None = None) -> None:
        self._check_who(who)
        uuid = self._uuid(job)
        keys = [self._job_key(uuid), self._owner_key(uuid)]
        status, owner = self._run("extend", keys, [who, self._expiry_ms(expiry)])
        self._outcome(uuid, status, owner, who, "extend the claim on")

    def abandon(self, job: JobRef, who: str) -> None:
        self._check_who(who)
        uuid = self._uuid(job)
        status, owner = self._run(
            "abandon", [self._job_key(uuid), self._owner_key(uuid), self._jobs_key, self._events_key], [who, uuid]
        )
        self._outcome(uuid, status, owner, who, "abandon")
        self._posted()

    def consume(self, job: JobRef, who: str) -> None:
        self._check_who(who)
        uuid = self._uuid(job)
        status, owner = self._run("consume", [self._job_key(uuid), self._owner_key(uuid), self._jobs_key], [who, uuid])
        self._outcome(uuid, status, owner, who, "consume")

    def trash(self, job: JobRef, who: str, reason: str | None = None) -> None:
        self._check_who(who)
        uuid = self._uuid(job)
        status, owner = self._run(
            "trash", [self._job_key(uuid), self._owner_key(uuid), self._jobs_key, self._trash_key],
            [who, uuid, reason or "", utcnow().isoformat(), self.trash_limit],
        )
        self._outcome(uuid, status, owner, who, "trash")


def _masked(url: str) -> str:
    from celeryflow.persistence.backends.base import mask_url

    return mask_url(url)


__all__ = ["RedisJobBoard"]
