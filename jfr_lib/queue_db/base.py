"""The queue database interface shared by the SQLite and MongoDB backends.

A job is a plain dict. The fields in :data:`JOB_COLUMNS` can be filtered and
sorted on (the SQLite backend keeps them in indexed columns); everything else
(the serialized jobflow job, run folder, queue id, error, ...) travels with it.

Queries are small dicts over those fields: ``{"state": ["READY", "WAITING"],
"worker": "local", "lock_id": None}`` means state IN (...) AND worker = ... AND
lock_id IS NULL. A few extra keys exist: ``retry_due`` (a timestamp: the job has no
retry time or it has passed), ``locked`` (true: lock_id is set; false: it is not),
``name_glob`` (shell wildcards on the name), ``updated_since`` and ``updated_until``
(ISO times bounding ``updated_on``).

A job's ``state_on`` (a document field, not a column) is the ISO time of its last
change of state: every backend writes it whenever an update changes ``state``
(jobs of older databases lack it until their next change).

Every change of state goes through :meth:`QueueDB.update_job`, a compare-and-set
on the expected state and lock: a caller that lost a race gets ``False`` and
must not assume anything about the job.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from datetime import datetime, timezone

SCHEMA_VERSION = 1
EXTRA_KEYS = ("retry_due", "locked", "name_glob", "updated_since", "updated_until")

#: Job fields that may appear in queries and sorts.
JOB_COLUMNS = (
    "db_id", "uuid", "index", "name", "state", "worker", "priority", "flow_uuid",
    "lock_id", "lock_time", "retry_time", "created_on", "updated_on",
)  # fmt: skip
#: Flow fields that may appear in queries and sorts.
FLOW_COLUMNS = ("db_id", "uuid", "name", "state", "created_on", "updated_on")

ANY = object()
"""Marker for "do not check this field" in :meth:`QueueDB.update_job`."""


def now_iso() -> str:
    """The current UTC time as an ISO 8601 string (sortable as text)."""
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


#: Pseudo-field of :meth:`QueueDB.count_by`: the day (``YYYY-MM-DD``) of ``updated_on``.
UPDATED_DAY = "updated_day"


def check_query(query: dict, columns) -> None:
    for key in query:
        if key not in columns and key not in EXTRA_KEYS:
            raise ValueError(f"cannot query on {key!r}")


class QueueDB(ABC):
    """The operations the rest of jfr needs from a queue database."""

    # --- life cycle -----------------------------------------------------------
    @abstractmethod
    def close(self) -> None:
        """Release the connection."""

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    @abstractmethod
    def get_meta(self, key: str, default=None):
        """A value from the metadata table (schema version, runner lease...)."""

    @abstractmethod
    def set_meta(self, key: str, value) -> None:
        """Store a JSON-able value in the metadata table."""

    @abstractmethod
    def swap_meta(self, key: str, expected_token, value) -> bool:
        """Compare-and-set on a metadata document that carries a ``token`` field.

        Store ``value`` if the current document's token equals ``expected_token``;
        ``None`` matches a missing document or one whose token is None. Returns
        whether it was stored. The runner lease is built on this.
        """

    def schema_version(self) -> int:
        return int(self.get_meta("schema_version", 0))

    # --- inserts --------------------------------------------------------------
    @abstractmethod
    def insert_flow(self, flow: dict, jobs: list) -> list:
        """Store a new flow and its jobs all at once.

        Returns the new jobs' db_ids. Raises ``KeyError`` naming a uuid when the
        flow or one of its jobs is already stored; nothing is written then.
        """

    @abstractmethod
    def insert_jobs(self, jobs: list) -> list:
        """Add jobs to existing flows; a (uuid, index) already stored is skipped.

        Returns the db_ids of the jobs (new or already there), in order.
        """

    # --- reads ----------------------------------------------------------------
    @abstractmethod
    def find_jobs(self, query=None, sort=None, limit: int = 0, skip: int = 0) -> list:
        """Jobs matching ``query``, sorted by ``[(field, 1|-1), ...]``; at most ``limit``
        (0: all) after the first ``skip`` of that order (a page, sorted and cut by the database)."""

    @abstractmethod
    def count_jobs(self, query=None) -> int:
        """Number of jobs matching ``query``."""

    @abstractmethod
    def count_states(self, query=None) -> dict:
        """state -> number of jobs matching ``query``."""

    @abstractmethod
    def count_by(self, fields, query=None) -> dict:
        """How many jobs match ``query``, per combination of values of ``fields``.

        ``fields`` are job columns, or ``updated_day`` (the date of ``updated_on``).
        Computed by the database from its indexes, never from job documents.
        Returns ``{(value, ...): count}``.
        """

    @abstractmethod
    def children(self, uuid: str) -> list:
        """Jobs that list ``uuid`` among their parents."""

    @abstractmethod
    def waiting_children(self, uuid: str) -> list:
        """The WAITING jobs that list ``uuid`` among their parents, as small dicts
        (``db_id``, ``allow_failed_parents``): no job document is decoded."""

    @abstractmethod
    def parents_done(self, db_id: int, done_states) -> bool:
        """Whether every parent of job ``db_id`` is done: the job with its uuid and the
        highest index is in ``done_states``, or no job has its uuid (an external
        reference, whose output was there at submission). Stops at the first parent
        that is not, so a job gathering many outputs costs little while they come."""

    @abstractmethod
    def latest_states(self, uuids) -> dict:
        """uuid -> state of its highest index, for the uuids that are stored."""

    @abstractmethod
    def find_flows(self, query=None, sort=None, limit: int = 0) -> list:
        """Flows matching ``query``."""

    @abstractmethod
    def count_flows(self, query=None) -> int:
        """Number of flows matching ``query``."""

    def get_job(self, db_id=None, uuid=None, index=None) -> dict | None:
        """One job by db_id, or by uuid (and index; the highest when omitted)."""
        if db_id is not None:
            found = self.find_jobs({"db_id": int(db_id)}, limit=1)
        else:
            query = {"uuid": uuid}
            if index is not None:
                query["index"] = int(index)
            found = self.find_jobs(query, sort=[("index", -1)], limit=1)
        return found[0] if found else None

    def get_flow(self, uuid=None, db_id=None) -> dict | None:
        query = {"uuid": uuid} if uuid is not None else {"db_id": int(db_id)}
        found = self.find_flows(query, limit=1)
        return found[0] if found else None

    # --- writes ---------------------------------------------------------------
    @abstractmethod
    def claim_job(self, query: dict, lock_id: str, sort=None) -> dict | None:
        """Atomically lock the first unlocked job matching ``query``; return it."""

    @abstractmethod
    def update_job(self, db_id: int, changes: dict, state=ANY, lock_id=ANY) -> bool:
        """Compare-and-set: apply ``changes`` if the job is in ``state`` and
        holds ``lock_id``; records ``updated_on``. Returns whether it applied."""

    def update_jobs(self, db_ids, changes: dict, state=ANY) -> list:
        """:meth:`update_job` on several jobs (each a compare-and-set); the db_ids changed."""
        return [i for i in db_ids if self.update_job(i, changes, state=state)]

    @abstractmethod
    def add_parents(self, child_db_ids, parent_uuids) -> None:
        """Add parents to jobs (a detour makes its leaves parents of the children)."""

    @abstractmethod
    def delete_jobs(self, db_ids) -> int:
        """Remove jobs (and their parent links); returns how many were removed."""

    @abstractmethod
    def delete_flow(self, uuid: str) -> None:
        """Remove a flow document (its jobs are removed with :meth:`delete_jobs`)."""

    @abstractmethod
    def update_flow(self, uuid: str, changes: dict) -> None:
        """Set fields of a flow document."""

    @abstractmethod
    def refresh_flow_state(self, uuid: str) -> str:
        """Recompute a flow's state from its jobs, store and return it.

        Only the set of states present in the flow is read, from an index on
        (flow, state): the cost does not grow with the number of jobs.
        """

    def release_job(self, db_id: int, lock_id: str, changes=None) -> bool:
        """Drop a lock, optionally with other changes."""
        return self.update_job(db_id, {**(changes or {}), "lock_id": None, "lock_time": None},
                               lock_id=lock_id)  # fmt: skip

    def set_state(self, job: dict, new_state, expect_lock=ANY, **changes) -> bool:
        """Move ``job`` from its current state to ``new_state`` (compare-and-set on
        the state, and on the lock when ``expect_lock`` is given)."""
        changes = {"state": str(new_state), "previous_state": job["state"], **changes}
        if changes["state"] != job["state"]:
            changes.setdefault("state_on", now_iso())
        ok = self.update_job(job["db_id"], changes, state=job["state"], lock_id=expect_lock)
        if ok:
            job.update(changes)
        return ok


def lock_token(action: str) -> str:
    """A lock id that names the process holding it: ``host:pid:action:time``."""
    import os
    import socket

    return f"{socket.gethostname()}:{os.getpid()}:{action}:{time.time():.3f}"
