"""The flows a command acts on: named by ID, by one of their jobs, or selected by filters.

A flow is named by its own db_id or uuid (``FLOW``, ``-fid``), or by one of its
jobs as jobflow-remote names flows: ``-did N`` is the flow of job N (the "DB id"
jobflow-remote shows for a flow is its first job's db_id), ``-jid UUID`` the
flow of that job.
"""

from __future__ import annotations

from jfr_lib.cli import compat
from jfr_lib.cli.selection import get_flow_or_fail, get_job_or_fail, states_of
from jfr_lib.cli.values import parse_when, text_value

FLOW_SORT_KEYS = ("db_id", "updated_on", "created_on")


def add_flow_filters(parser, ids: bool = True, short_name: bool = True) -> None:
    """Flow IDs and the filters shared by the flow commands, with jobflow-remote's names."""
    if ids:
        parser.add_argument("flow_ids", metavar="FLOW", nargs="*", help="db_id or uuid of a flow")
    g = parser.add_argument_group("filters")
    g.add_argument("-fid", "--flow-id", dest="flow_opts", metavar="FLOW", action="append",
                   help="the flow with this db_id or uuid (repeatable)")  # fmt: skip
    g.add_argument("-did", "--db-id", dest="db_ids", metavar="N", action="append",
                   help="the flow of the job with db_id N, as jobflow-remote names flows (repeatable)")  # fmt: skip
    g.add_argument("-jid", "--job-id", dest="jids", metavar="UUID", action="append",
                   help="the flow of the job with this uuid (repeatable)")  # fmt: skip
    g.add_argument("-s", "--state", metavar="STATE", action="append",
                   help="only flows in this state (repeat or separate with commas)")  # fmt: skip
    g.add_argument("--name", *(["-n"] if short_name else []), metavar="GLOB",
                   help="only flows whose name matches (shell wildcards)")  # fmt: skip
    compat.add_time_options(g)
    g.add_argument("--metadata", "-meta", metavar="KEY=VALUE", action="append",
                   help="only flows with this metadata (also k=v,k2=v2 or a JSON mapping)")  # fmt: skip
    g.add_argument("--locked", "-l", action="store_true", help="only flows with a job locked by a runner process")
    compat.add_hidden(parser, query=False)


def select_flows(args, db, sort=None, limit: int = 0, require: bool = True) -> list:
    """The flows named (by ID or by a job) or matching the filters; both must hold when both are given.

    ``require``: refuse a command that names no flow and gives no filter (it
    would act on every flow).
    """
    from jfr_lib.errors import UsageError

    named = {}
    for text in [*(getattr(args, "flow_ids", None) or []), *(args.flow_opts or [])]:
        flow = get_flow_or_fail(db, text, "FLOW")
        named[flow["db_id"]] = flow
    by_job = [compat.db_id_value(i) for i in args.db_ids or []]
    by_job += [compat.job_id_value(i) for i in args.jids or []]
    for text in by_job:
        job = get_job_or_fail(db, text)
        flow = db.get_flow(uuid=job["flow_uuid"])
        if flow is not None:
            named[flow["db_id"]] = flow
    query, meta = _query(args)
    narrowed = bool(meta) or args.locked
    if named or by_job:
        flows = list(named.values())
        if query:
            allowed = {f["db_id"] for f in db.find_flows({**query, "db_id": sorted(named)})}
            flows = [f for f in flows if f["db_id"] in allowed]
        flows.sort(key=lambda f: f["db_id"], reverse=bool(sort) and sort[0][1] < 0)
    else:
        if require and not query and not narrowed:
            raise UsageError("name flows by ID or select them with filters (see --help)")
        flows = db.find_flows(query, sort=sort or [("db_id", 1)], limit=0 if narrowed else limit)
    if meta:
        flows = [f for f in flows if compat.meta_matches(f, meta)]
    if args.locked:
        locked = {j["flow_uuid"] for j in db.find_jobs({"locked": True})}
        flows = [f for f in flows if f["uuid"] in locked]
    return flows[:limit] if limit else flows


def count_flows(args, db) -> int:
    """How many flows :func:`select_flows` would give (for a list), counted by the database when it can."""
    query, meta = _query(args)
    if meta or args.locked or args.flow_opts or args.db_ids or args.jids:
        return len(select_flows(args, db, require=False))
    return db.count_flows(query)


def _query(args) -> tuple:
    """(query for the flows table, metadata pairs filtered afterwards)."""
    from jfr_lib.states import FlowState

    query = {}
    states = states_of(args.state, FlowState)
    if states:
        query["state"] = states
    if args.name is not None:
        query["name_glob"] = text_value(args.name, "--name")
    since = compat.since_of(args)
    if since is not None:
        query["updated_since"] = parse_when(since, "--since")
    if args.until is not None:
        query["updated_until"] = parse_when(args.until, "--until")
    return query, compat.metadata_pairs(args.metadata)


def flow_of(db, text: str, job: bool) -> dict:
    """A flow by its db_id or uuid, or (``job``) the flow of the job with that db_id or uuid."""
    from jfr_lib.errors import NotFoundError

    if not job:
        return get_flow_or_fail(db, text)
    found = db.get_flow(uuid=get_job_or_fail(db, text)["flow_uuid"])
    if found is None:
        raise NotFoundError(f"job {text} has no flow")
    return found
