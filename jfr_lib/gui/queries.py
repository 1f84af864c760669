"""What the dashboard's pages show, read from the queue database.

Every function takes an open queue database (and the project when it needs it)
and returns plain JSON-able data. Counts come from the database
(:meth:`~jfr_lib.queue_db.base.QueueDB.count_jobs`, ``count_by``); the database sorts
and skips to a page of jobs, which decodes only the documents it shows; the graph
of a flow is decoded again only when one of its jobs changed.
"""

from __future__ import annotations

import time
from datetime import date, timedelta

from jfr_lib.errors import UsageError

#: Fields of a job in a listing (those of ``jfr job list --json``, and the flow's db_id).
ROW_KEYS = ("db_id", "uuid", "index", "name", "state", "worker", "priority", "flow_uuid", "queue_id",
            "created_on", "updated_on", "error")  # fmt: skip
JOB_SORT_KEYS = ("db_id", "updated_on", "created_on", "priority", "name", "state", "worker")
FLOW_SORT_KEYS = ("db_id", "updated_on", "created_on")
PAGE_SIZES = (20, 50, 100, 200, 500)
#: A flow with more jobs than this is not drawn (its jobs page is shown instead).
GRAPH_MAX = 3000


def whole_param(value, name: str, low: int = 0, high: int = 10**9, default: int = 0) -> int:
    """A whole number given in a query string (``default`` when absent); a one-line UsageError otherwise."""
    if value in (None, ""):
        return default
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise UsageError(f"{name}: {value!r} is not a whole number") from None
    if not low <= number <= high:
        raise UsageError(f"{name}: {number} is not between {low} and {high}")
    return number


def _row(job: dict) -> dict:
    return {k: job.get(k) for k in ROW_KEYS}


def job_query(db, params) -> dict:
    """The queue query for the filters of the jobs page: ``state`` (comma-separated), ``worker``,
    ``name`` (shell wildcards), ``flow`` (db_id or uuid), ``error`` (1: FAILED and REMOTE_ERROR)."""
    from jfr_lib.cli.selection import get_flow_or_fail, states_of
    from jfr_lib.states import ERROR_STATES, JobState

    query = {}
    states = states_of([params["state"]], JobState) if params.get("state") else []
    if params.get("error") in ("1", "true", "on"):
        states += [str(s) for s in ERROR_STATES]
    if states:
        query["state"] = sorted(set(states))
    if params.get("worker"):
        query["worker"] = [w for w in params["worker"].split(",") if w]
    if params.get("name"):
        query["name_glob"] = params["name"]
    if params.get("flow"):
        query["flow_uuid"] = get_flow_or_fail(db, params["flow"].strip(), "flow")["uuid"]
    return query


def jobs_page(db, params) -> dict:
    """One page of jobs matching the filters, with the total and the page's bounds.

    ``sort`` (one of :data:`JOB_SORT_KEYS`, default db_id), ``order`` (``desc``,
    the default, or ``asc``), ``page`` (from 1) and ``size`` (one of
    :data:`PAGE_SIZES`) choose the page; the db_id breaks ties, in the same order.
    """
    key = params.get("sort") or "db_id"
    if key not in JOB_SORT_KEYS:
        raise UsageError(f"sort: {key!r} is not one of {', '.join(JOB_SORT_KEYS)}")
    way = 1 if params.get("order") == "asc" else -1
    size = whole_param(params.get("size"), "size", 1, max(PAGE_SIZES), default=50)
    query = job_query(db, params)
    total = db.count_jobs(query)
    pages = max(1, -(-total // size))
    page = min(whole_param(params.get("page"), "page", 1, default=1), pages)
    jobs = db.find_jobs(query, sort=[(key, way), ("db_id", way)], limit=size, skip=(page - 1) * size)
    return {"total": total, "page": page, "pages": pages, "size": size, "sort": key,
            "order": "asc" if way > 0 else "desc", "jobs": [_row(j) for j in jobs]}  # fmt: skip


def flows_page(db, params) -> dict:
    """One page of flows (``state``, ``name`` filters; ``sort``, ``order``, ``page``, ``size``),
    each with the number of its jobs in each state."""
    from jfr_lib.cli.selection import states_of
    from jfr_lib.states import FlowState

    key = params.get("sort") or "db_id"
    if key not in FLOW_SORT_KEYS:
        raise UsageError(f"sort: {key!r} is not one of {', '.join(FLOW_SORT_KEYS)}")
    way = 1 if params.get("order") == "asc" else -1
    size = whole_param(params.get("size"), "size", 1, max(PAGE_SIZES), default=50)
    query = {}
    if params.get("state"):
        query["state"] = states_of([params["state"]], FlowState)
    if params.get("name"):
        query["name_glob"] = params["name"]
    total = db.count_flows(query)
    pages = max(1, -(-total // size))
    page = min(whole_param(params.get("page"), "page", 1, default=1), pages)
    skip = (page - 1) * size
    flows = db.find_flows(query, sort=[(key, way), ("db_id", way)], limit=skip + size)[skip:]
    counts = db.count_by(["flow_uuid", "state"], {"flow_uuid": [f["uuid"] for f in flows]}) if flows else {}
    rows = []
    for flow in flows:
        states = {s: n for (f, s), n in counts.items() if f == flow["uuid"]}
        rows.append({**_flow_row(flow), "states": states, "n_jobs": sum(states.values())})
    return {"total": total, "page": page, "pages": pages, "size": size, "sort": key,
            "order": "asc" if way > 0 else "desc", "flows": rows}  # fmt: skip


def _flow_row(flow: dict) -> dict:
    return {k: flow.get(k) for k in ("db_id", "uuid", "name", "state", "created_on", "updated_on")}


class GraphCache:
    """The graphs of the flows last drawn, each kept until one of the flow's jobs changes.

    Every change of a job records its ``updated_on``. A graph is kept only when
    all its jobs were last changed ``margin`` seconds or more before it was read;
    it is read again as soon as one of the flow's jobs was changed since then,
    the flow's state or its number of jobs per state differ, or it is older than
    ``max_age`` seconds (a writer whose clock lags). A poll of an unchanged flow
    decodes no job document.

    Parameters
    ----------
    size
        How many flows' graphs are kept (the least recently drawn is dropped).
    margin
        Seconds before the read that count as "being changed right now" (the
        clocks of the writers on the same machine may disagree that much).
    max_age
        Seconds after which a graph is read again anyway.
    """

    def __init__(self, size: int = 16, margin: float = 1.0, max_age: float = 60.0):
        import threading

        self.size, self.margin, self.max_age = size, margin, max_age
        self._graphs = {}
        self._lock = threading.Lock()

    def graph(self, db, flow: dict, states: dict) -> dict:
        """The graph of ``flow`` (whose jobs number ``states`` per state)."""
        from datetime import datetime, timezone

        uuid, key = flow["uuid"], (flow.get("updated_on"), flow["state"], states)
        with self._lock:
            kept = self._graphs.pop(uuid, None)
        if kept is not None:
            kept_key, since, born, graph = kept
            if kept_key == key and time.monotonic() - born < self.max_age and \
                    not db.count_jobs({"flow_uuid": uuid, "updated_since": since}):  # fmt: skip
                with self._lock:
                    self._graphs[uuid] = kept
                return graph
        born = time.monotonic()
        since = (datetime.now(timezone.utc) - timedelta(seconds=self.margin)).isoformat(timespec="milliseconds")
        jobs = db.find_jobs({"flow_uuid": uuid}, sort=[("db_id", 1)])
        graph = draw(jobs)
        if self.size and all((j.get("updated_on") or "") < since for j in jobs):
            with self._lock:
                self._graphs[uuid] = (key, since, born, graph)
                while len(self._graphs) > self.size:
                    self._graphs.pop(next(iter(self._graphs)))
        return graph


def draw(jobs: list) -> dict:
    """The graph of a flow's jobs: one node per job document, an edge from the latest index of each
    parent (as ``jfr flow graph`` draws it)."""
    latest = {}
    for job in jobs:
        if job["index"] >= latest.get(job["uuid"], {"index": -1})["index"]:
            latest[job["uuid"]] = job
    nodes = [{"id": j["db_id"], "name": j.get("name"), "state": j["state"], "index": j["index"],
              "worker": j.get("worker")} for j in jobs]  # fmt: skip
    edges = [[latest[p]["db_id"], j["db_id"]] for j in jobs for p in j.get("parents") or [] if p in latest]
    return {"nodes": nodes, "edges": edges}


def flow_info(db, flow_id: int, graphs: GraphCache | None = None) -> dict:
    """A flow with its counts per state and the graph of its jobs (unless it is too big to draw).

    Parameters
    ----------
    db
        The queue database.
    flow_id
        The flow's db_id.
    graphs
        Where graphs already drawn are kept (none: the graph is read every time).

    Raises
    ------
    NotFoundError
        No flow has this db_id.
    """
    from jfr_lib.errors import NotFoundError

    flow = db.get_flow(db_id=flow_id)
    if flow is None:
        raise NotFoundError(f"no flow {flow_id}")
    states = db.count_states({"flow_uuid": flow["uuid"]})
    total = sum(states.values())
    data = {**_flow_row(flow), "states": states, "n_jobs": total, "graph": None, "graph_max": GRAPH_MAX}
    if total <= GRAPH_MAX:
        data["graph"] = (graphs or GraphCache(0)).graph(db, flow, states)
    return data


def overview(db, project) -> dict:
    """Jobs per state and per worker, the runner and its processes, pilots, workers needing a login."""
    from jfr_lib import login_marks

    per_worker = {}
    for (worker, state), n in db.count_by(["worker", "state"]).items():
        per_worker.setdefault(str(worker), {})[state] = n
    states = db.count_states()
    return {"project": project.name, "jobs": sum(states.values()), "states": states,
            "workers": {w: per_worker[w] for w in sorted(per_worker)}, "n_flows": db.count_flows(),
            "flow_states": _flow_states(db), "runner": runner(db), "pilots": pilots(db, project),
            "logins": login_marks.needed(db, list(project.workers))}  # fmt: skip


def _flow_states(db) -> dict:
    from jfr_lib.states import FlowState

    return {str(s): n for s in FlowState if (n := db.count_flows({"state": str(s)}))}


def runner(db) -> dict:
    """The runner's status and its processes, as ``jfr runner info`` shows them."""
    import socket

    from jfr_lib import lease as leases

    found = leases.read(db)
    word = leases.status(found)
    if word == leases.STALE and found.get("host") == socket.gethostname() and leases.alive_here(found):
        word = leases.RUNNING  # a late heartbeat on a loaded machine: its process lives (as jfr runner status)
    data = {"status": word}
    if found:
        data.update({k: found.get(k) for k in ("host", "pid", "user", "started_on")})
        data["heartbeat_age"] = round(time.time() - float(found.get("heartbeat") or 0), 1)
        data["stop_requested"] = bool(found.get("stop_requested"))
        data["children"] = found.get("children") or []
    return data


def pilots(db, project) -> list:
    """The live pilots of the project's batch workers (``jfr batch list``)."""
    from jfr_lib import batch

    rows = []
    for name, worker in project.workers.items():
        if not worker.is_batch:
            continue
        for pid, record in batch.read_pilots(db, name).items():
            if batch.alive(record):
                rows.append({"id": pid, "worker": name, "queue_id": record.get("queue_id"),
                             "state": record.get("state"), "jobs_done": record.get("jobs_done"),
                             "running": len(record.get("running") or []), "time_left": record.get("time_left"),
                             "submitted_on": record.get("submitted_on")})  # fmt: skip
    rows.sort(key=lambda r: r.get("submitted_on") or "")
    return rows


def report(db, params) -> dict:
    """Jobs completed and failed per day over the last ``days`` days (``jfr flow report``)."""
    from jfr_lib.queue_db.base import UPDATED_DAY

    days = whole_param(params.get("days"), "days", 1, 3660, default=14)
    today = date.today()
    since = (today - timedelta(days=days - 1)).isoformat()
    per_day = db.count_by([UPDATED_DAY, "state"], {"state": ["COMPLETED", "FAILED"], "updated_since": since})
    table = {(today - timedelta(days=n)).isoformat(): {"COMPLETED": 0, "FAILED": 0} for n in range(days)}
    for (day, state), n in per_day.items():
        if day in table:
            table[day][state] += n
    return {"days": [{"day": d, **v} for d, v in sorted(table.items())], "states": db.count_states()}
