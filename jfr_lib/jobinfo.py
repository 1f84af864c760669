"""What ``JobController`` returns and how it reads its arguments: job and flow summaries that
print well, selections in jobflow-remote's forms."""

from __future__ import annotations

import contextlib
import io
from dataclasses import dataclass, field
from datetime import datetime, timezone
from enum import Enum

from jfr_lib.errors import UsageError
from jfr_lib.states import FlowState, JobState

#: jobflow-remote states jfr lacks -> the jfr state that holds such jobs.
STATE_ALIASES = {"BATCH_SUBMITTED": "SUBMITTED", "BATCH_RUNNING": "RUNNING"}
TIMES = ("created_on", "updated_on", "start_time", "end_time")


def _when(value) -> datetime | None:
    """A stored time (ISO text, or epoch seconds) as an aware UTC datetime."""
    if isinstance(value, (int, float)):
        return datetime.fromtimestamp(value, timezone.utc)
    with contextlib.suppress(ValueError, TypeError):
        return datetime.fromisoformat(str(value).replace("Z", "+00:00")) if value else None
    return None


def _iso(when: datetime | None) -> str | None:
    return when.isoformat() if when else None


class InfoList(list):
    """A list of :class:`JobInfo` or :class:`FlowInfo` that prints as the table of ``jfr job list``."""

    def __getitem__(self, item):
        found = super().__getitem__(item)
        return InfoList(found) if isinstance(item, slice) else found

    def __repr__(self) -> str:
        if not self:
            return "[]"
        from jfr_lib.cli.output import print_table

        text = io.StringIO()
        with contextlib.redirect_stdout(text):  # not a terminal: no colours, no line cut
            print_table([i.row() for i in self], type(self[0]).COLUMNS)
        return text.getvalue().rstrip("\n")

    __str__ = __repr__


@dataclass
class RemoteInfo:
    """Where a job is on its worker (jobflow-remote's ``JobInfo.remote``); ``process_id`` is its queue id."""

    step_attempts: int = 0
    queue_state: str | None = None
    process_id: str | None = None
    retry_time_limit: datetime | None = None
    error: str | None = None


@dataclass(repr=False)
class JobInfo:
    """What the queue database records about a job (``jfr job info`` shows all of it)."""

    db_id: int
    uuid: str
    index: int
    name: str
    state: JobState
    worker: str | None = None
    priority: int = 0
    flow_uuid: str | None = None
    created_on: datetime | None = None
    updated_on: datetime | None = None
    start_time: datetime | None = None
    end_time: datetime | None = None
    error: str | None = None
    traceback: str | None = None
    previous_state: JobState | None = None
    lock_id: str | None = None
    run_dir: str | None = None
    parents: list = field(default_factory=list)
    metadata: dict = field(default_factory=dict)
    remote: RemoteInfo = field(default_factory=RemoteInfo)

    COLUMNS = [("db_id", "ID"), ("name", "NAME"), ("state", "STATE"), ("worker", "WORKER"), ("queue", "QUEUE"),
               ("priority", "PRIO"), ("updated_on", "UPDATED"), ("uuid", "UUID"), ("index", "IDX")]  # fmt: skip

    @classmethod
    def from_doc(cls, doc: dict) -> JobInfo:
        """The info of a job document of the queue database."""
        values = {k: doc.get(k) for k in cls.__dataclass_fields__ if k != "remote"}
        values.update({k: _when(doc.get(k)) for k in TIMES}, state=JobState(doc["state"]), index=int(doc["index"]),
                      previous_state=JobState(doc["previous_state"]) if doc.get("previous_state") else None,
                      priority=int(doc.get("priority") or 0), parents=list(doc.get("parents") or []),
                      metadata=dict(doc.get("metadata") or {}))  # fmt: skip
        remote = RemoteInfo(int(doc.get("step_attempts") or 0), doc.get("queue_state"), doc.get("queue_id"),
                            _when(doc.get("retry_time")), doc.get("last_error"))  # fmt: skip
        return cls(**values, remote=remote)

    @property
    def is_locked(self) -> bool:
        return self.lock_id is not None

    @property
    def run_time(self) -> float | None:
        """Seconds from the start of the run to its end, once it ended."""
        return (self.end_time - self.start_time).total_seconds() if self.start_time and self.end_time else None

    def row(self) -> dict:
        return {**{k: getattr(self, k) for k, _ in self.COLUMNS if hasattr(self, k)}, "state": str(self.state),
                "queue": self.remote.process_id, "updated_on": _iso(self.updated_on)}  # fmt: skip

    def __repr__(self) -> str:
        from jfr_lib.cli.output import local_time

        error = f", error={self.error[:80]!r}" if self.error else ""
        return (f"JobInfo(db_id={self.db_id}, name={self.name!r}, state={self.state}, worker={self.worker!r}, "
                f"uuid={self.uuid!r}, index={self.index}, updated_on={local_time(_iso(self.updated_on) or '-')!r}"
                f"{error})")  # fmt: skip


@dataclass(repr=False)
class FlowInfo:
    """A flow and, in order, its jobs' db_ids, uuids, indexes, states, names and workers."""

    db_id: int
    flow_id: str
    name: str
    state: FlowState
    created_on: datetime | None = None
    updated_on: datetime | None = None
    metadata: dict = field(default_factory=dict)
    db_ids: list = field(default_factory=list)
    job_ids: list = field(default_factory=list)
    job_indexes: list = field(default_factory=list)
    job_states: list = field(default_factory=list)
    job_names: list = field(default_factory=list)
    workers: list = field(default_factory=list)
    jobs_info: list | None = None

    COLUMNS = [("db_id", "ID"), ("name", "NAME"), ("state", "STATE"), ("n_jobs", "JOBS"), ("updated_on", "UPDATED"),
               ("flow_id", "UUID")]  # fmt: skip
    uuid = property(lambda self: self.flow_id, doc="The flow's uuid (jobflow-remote's ``flow_id``).")
    flow_metadata = property(lambda self: self.metadata, doc="jobflow-remote's name of ``metadata``.")
    n_jobs = property(lambda self: len(self.db_ids), doc="The number of jobs of the flow.")

    @classmethod
    def from_docs(cls, flow: dict, jobs: list, with_jobs_info: bool = False) -> FlowInfo:
        """The info of a flow document and its jobs' documents."""
        column = {k: [j.get(k) for j in jobs] for k in ("db_id", "uuid", "index", "name", "worker")}
        return cls(flow["db_id"], flow["uuid"], flow.get("name") or "", FlowState(flow["state"]),
                   _when(flow.get("created_on")), _when(flow.get("updated_on")), dict(flow.get("metadata") or {}),
                   column["db_id"], column["uuid"], column["index"], [JobState(j["state"]) for j in jobs],
                   column["name"], column["worker"],
                   InfoList(map(JobInfo.from_doc, jobs)) if with_jobs_info else None)  # fmt: skip

    def row(self) -> dict:
        return {"db_id": self.db_id, "name": self.name, "state": str(self.state), "n_jobs": self.n_jobs,
                "flow_id": self.flow_id, "updated_on": _iso(self.updated_on)}  # fmt: skip

    def __repr__(self) -> str:
        from jfr_lib.cli.output import local_time

        return (f"FlowInfo(db_id={self.db_id}, name={self.name!r}, state={self.state}, n_jobs={self.n_jobs}, "
                f"flow_id={self.flow_id!r}, updated_on={local_time(_iso(self.updated_on) or '-')!r})")  # fmt: skip


# --- reading the arguments ---------------------------------------------------------------


def _listed(value) -> list:
    if value is None:
        return []
    return list(value) if isinstance(value, (list, tuple, set, frozenset)) else [value]


def _ids(values, what: str) -> list:
    """db_ids given as ints or strings of ASCII digits."""
    from jfr_lib.cli.selection import whole

    out = [v if isinstance(v, int) and not isinstance(v, bool) else whole(str(v)) for v in _listed(values)]
    for value, number in zip(_listed(values), out):
        if number is None:
            raise UsageError(f"{what}: {value!r} is not a db_id (a whole number)")
    return out


def _job_pairs(job_ids) -> tuple:
    """(uuids, test of a job document) for ``job_ids``."""
    if isinstance(job_ids, (list, tuple)) and len(job_ids) == 2 and isinstance(job_ids[1], int):
        job_ids = [job_ids]  # one (uuid, index) pair
    pairs = {(i, None) if isinstance(i, str) else tuple(i) for i in _listed(job_ids)}
    if any(len(p) != 2 for p in pairs):
        raise UsageError(f"job_ids: give (uuid, index) pairs, not {job_ids!r}")
    return sorted({u for u, _ in pairs}), lambda doc: {(doc["uuid"], doc["index"]), (doc["uuid"], None)} & pairs


def _state_names(states, enum) -> list:
    from jfr_lib.cli.selection import states_of

    names = [str(s.value if isinstance(s, Enum) else s).upper() for s in _listed(states)]
    return states_of([STATE_ALIASES.get(n, n) if enum is JobState else n for n in names], enum)


def _metadata_test(metadata: dict):
    def value(doc, key: str):
        for part in key.split("."):
            doc = doc.get(part, KeyError) if isinstance(doc, dict) else KeyError
        return doc

    return lambda doc: all(value(doc.get("metadata") or {}, k) == v for k, v in metadata.items())


def _sort(sort, columns) -> list:
    """pymongo's ``[(key, 1 or -1), ...]`` (or one key) over ``columns``; db_id breaks ties."""
    keys = [(sort, 1)] if isinstance(sort, str) else [tuple(k) for k in sort or []]
    for key, _ in keys:
        if key not in columns:
            raise UsageError(f"sort: cannot sort on {key!r} (one of: {', '.join(columns)})")
    return [*keys, ("db_id", 1)]


def _dates(start_date, end_date) -> dict:
    from jfr_lib.cli.selection import parse_when

    out = {}
    for key, when, what in (("updated_since", start_date, "start_date"), ("updated_until", end_date, "end_date")):
        if when is not None and not isinstance(when, (str, datetime)):
            raise UsageError(f"{what}: give a datetime, not {type(when).__name__}")
        if when is not None:
            out[key] = parse_when(when.isoformat() if isinstance(when, datetime) else when, what)
    return out


def _merged(query: dict, custom_query) -> dict:
    both = sorted(set(query) & set(custom_query or {}))
    if both:
        raise UsageError(f"custom_query repeats what other arguments select: {', '.join(both)}")
    return {**query, **(custom_query or {})}


def _given(value) -> bool:
    return value not in (None, False, [], (), {})
