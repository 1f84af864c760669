"""Choosing jobs from the command line: IDs, or a query built from filter options.

Every job command that acts on jobs takes either IDs (db_id or uuid) or
filters; a selection of more than one job asks for confirmation unless ``-y``.
"""

from __future__ import annotations

import re
import sys
from datetime import datetime, timedelta, timezone

SORT_KEYS = ("db_id", "updated_on", "created_on", "priority", "name", "state", "worker")


def add_filters(parser, ids: bool = True) -> None:
    """The filter options shared by ``job list`` and the job actions."""
    if ids:
        parser.add_argument("job_ids", metavar="ID", nargs="*", help="db_id or uuid of a job")
    g = parser.add_argument_group("filters")
    g.add_argument("-s", "--state", metavar="STATE", action="append",
                   help="only jobs in this state (repeat or separate with commas)")  # fmt: skip
    g.add_argument("-w", "--worker", metavar="WORKER", action="append", help="only jobs of this worker")
    g.add_argument("--name", metavar="GLOB", help="only jobs whose name matches (shell wildcards)")
    g.add_argument("--flow", metavar="FLOW", help="only jobs of this flow (db_id or uuid)")
    g.add_argument("--since", metavar="WHEN", help="changed since (ISO date/time, or 2h, 3d ago)")
    g.add_argument("--until", metavar="WHEN", help="changed before (ISO date/time, or 2h, 3d ago)")
    g.add_argument("--metadata", metavar="KEY=VALUE", action="append", help="only jobs with this metadata")
    g.add_argument("--error", action="store_true", help="only FAILED and REMOTE_ERROR jobs")
    g.add_argument("--running", action="store_true", help="only jobs the runner is working on")
    g.add_argument("--locked", action="store_true", help="only jobs locked by a runner process")


def parse_when(text: str, option: str) -> str:
    from jfr_lib.errors import UsageError

    m = re.fullmatch(r"(\d+)\s*([smhdw])", text.strip())
    if m:
        unit = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}[m.group(2)]
        when = datetime.now(timezone.utc) - timedelta(**{unit: int(m.group(1))})
    else:
        try:
            when = datetime.fromisoformat(text)
        except ValueError:
            raise UsageError(f"{option} {text!r}: give an ISO date/time or an age such as 2h or 3d") from None
        if when.tzinfo is None:
            when = when.astimezone()  # a local time
    return when.astimezone(timezone.utc).isoformat(timespec="milliseconds")


def states_of(values, enum) -> list:
    from jfr_lib.errors import UsageError

    out = []
    for value in values or []:
        for name in value.split(","):
            name = name.strip().upper()
            if name not in enum.__members__:
                raise UsageError(f"unknown state {name!r} (one of: {', '.join(enum.__members__)})")
            out.append(name)
    return out


def build_query(args, db) -> tuple:
    """(query dict for the queue database, metadata pairs filtered afterwards)."""
    from jfr_lib.errors import NotFoundError, UsageError
    from jfr_lib.states import ERROR_STATES, RUNNING_STATES, JobState

    query = {}
    states = states_of(args.state, JobState)
    if args.error:
        states += [str(s) for s in ERROR_STATES]
    if args.running:
        states += [str(s) for s in RUNNING_STATES]
    if states:
        query["state"] = sorted(set(states))
    if args.worker:
        query["worker"] = args.worker
    if args.name:
        query["name_glob"] = args.name
    if args.flow:
        flow = db.get_flow(db_id=int(args.flow)) if args.flow.isdigit() else db.get_flow(uuid=args.flow)
        if flow is None:
            raise NotFoundError(f"no flow {args.flow}")
        query["flow_uuid"] = flow["uuid"]
    if args.since:
        query["updated_since"] = parse_when(args.since, "--since")
    if args.until:
        query["updated_until"] = parse_when(args.until, "--until")
    if args.locked:
        query["locked"] = True
    meta = []
    for pair in args.metadata or []:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise UsageError(f"--metadata {pair!r}: give KEY=VALUE")
        meta.append((key, value))
    return query, meta


def _meta_matches(job: dict, pairs) -> bool:
    metadata = job.get("metadata") or {}
    return all(str(metadata.get(k)) == v for k, v in pairs)


def get_job_or_fail(db, job_id: str) -> dict:
    """A job by db_id (digits) or uuid; NotFoundError otherwise."""
    from jfr_lib.errors import NotFoundError

    job = db.get_job(db_id=int(job_id)) if job_id.isdigit() else db.get_job(uuid=job_id)
    if job is None:
        raise NotFoundError(f"no job {job_id}")
    return job


def select_jobs(args, db, sort=None, limit: int = 0) -> list:
    """The jobs named by IDs, or matching the filters (IDs and filters together: both must hold)."""
    from jfr_lib.errors import UsageError

    query, meta = build_query(args, db)
    ids = getattr(args, "job_ids", None) or []
    if ids:
        jobs = [get_job_or_fail(db, job_id) for job_id in ids]
        if query or meta:
            allowed = {j["db_id"] for j in db.find_jobs({**query, "db_id": [j["db_id"] for j in jobs]})}
            jobs = [j for j in jobs if j["db_id"] in allowed and _meta_matches(j, meta)]
        return jobs
    if getattr(args, "job_ids", None) is not None and not query and not meta:
        raise UsageError("name jobs by ID or select them with filters (see --help)")
    jobs = db.find_jobs(query, sort=sort or [("db_id", 1)], limit=0 if meta else limit)
    if meta:
        jobs = [j for j in jobs if _meta_matches(j, meta)]
        if limit:
            jobs = jobs[:limit]
    return jobs


def confirm(verb: str, count: int, assume_yes: bool) -> bool:
    """Ask before acting on several jobs (answer from stdin, even when not a terminal)."""
    if assume_yes or count <= 1:
        return True
    sys.stderr.write(f"{verb} {count} jobs? [y/N] ")
    sys.stderr.flush()
    answer = sys.stdin.readline().strip().lower()
    return answer in ("y", "yes")
