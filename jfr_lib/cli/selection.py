"""The jobs a command acts on: named by ID, or selected by filters.

Every job command that acts on jobs takes either IDs (db_id, uuid, or
``UUID:INDEX``; jobflow-remote's ``-did`` and ``-jid`` too) or filters; a
selection of more than one job asks for confirmation unless ``-y``. Values are
read by :mod:`jfr_lib.cli.values`: one that cannot mean what the user wants is
a one-line error, never a filter silently dropped.
"""

from __future__ import annotations

import sys

from jfr_lib.cli import compat
from jfr_lib.cli.values import (  # noqa: F401 (imported from here by the command modules)
    MAX_INT,
    count_type,
    parse_int,
    parse_regex,
    parse_when,
    seconds_type,
    text_value,
    whole,
)

SORT_KEYS = ("db_id", "updated_on", "created_on", "priority", "name", "state", "worker")


def parse_id(text: str, option: str = "ID") -> int | str:
    """A db_id (ASCII digits) as an int, or the text itself (a uuid).

    Digits too many for any stored id give ``MAX_INT + 1``, which names nothing.
    """
    text_value(text, option)
    if not (text.isascii() and text.isdigit()):
        return text
    value = whole(text)
    return MAX_INT + 1 if value is None else value


def get_job_or_fail(db, job_id: str, index: int | None = None) -> dict:
    """A job by db_id (ASCII digits), uuid (its highest index) or ``UUID:INDEX``; NotFoundError otherwise.

    ``index`` (jobflow-remote's ``ID INDEX``) goes with a uuid only.
    """
    from jfr_lib.errors import NotFoundError, UsageError

    m = compat.JOB_ID.fullmatch(job_id)
    if m and m.group(2) is not None:
        if index is not None:
            raise UsageError(f"{job_id}: give the index once, as UUID:INDEX or UUID INDEX")
        job_id, index = m.group(1), int(m.group(2))
    if index is None:
        return _get(db, "job", job_id, "ID")
    if isinstance(parse_id(job_id), int):
        raise UsageError(f"{job_id} {index}: an INDEX goes with a uuid; a db_id names one job already")
    found = db.get_job(uuid=job_id, index=index)
    if found is None:
        raise NotFoundError(f"no job {job_id} with index {index}")
    return found


def get_flow_or_fail(db, flow_id: str, option: str = "FLOW") -> dict:
    """A flow by db_id (ASCII digits) or uuid; NotFoundError otherwise."""
    return _get(db, "flow", flow_id, option)


def _get(db, kind: str, text: str, option: str) -> dict:
    from jfr_lib.errors import NotFoundError

    key = parse_id(text, option)
    get = db.get_job if kind == "job" else db.get_flow
    if isinstance(key, int):
        found = get(db_id=key) if key <= MAX_INT else None  # larger than any stored id
    else:
        found = get(uuid=key)
    if found is None:
        raise NotFoundError(f"no {kind} {text}")
    return found


# --- filters ------------------------------------------------------------------------


def add_filters(parser, ids: bool = True, short_name: bool = True) -> None:
    """The filter options shared by ``job list`` and the job actions, with jobflow-remote's names.

    ``short_name``: ``-n`` for ``--name`` as in jobflow-remote (``job list``
    keeps ``-n`` for its number of jobs).
    """
    if ids:
        parser.add_argument("job_ids", metavar="ID", nargs="*", help="db_id, uuid or UUID:INDEX of a job")
    g = parser.add_argument_group("filters")
    compat.add_job_names(g)
    g.add_argument("-s", "--state", metavar="STATE", action="append",
                   help="only jobs in this state (repeat or separate with commas)")  # fmt: skip
    g.add_argument("-w", "-wk", "--worker", metavar="WORKER", action="append", help="only jobs of this worker")
    g.add_argument("--name", *(["-n"] if short_name else []), metavar="GLOB",
                   help="only jobs whose name matches (shell wildcards)")  # fmt: skip
    g.add_argument("--flow", "-fid", "--flow-id", metavar="FLOW", action="append",
                   help="only jobs of this flow (db_id or uuid; repeatable)")  # fmt: skip
    compat.add_time_options(g)
    g.add_argument("--metadata", "-meta", metavar="KEY=VALUE", action="append",
                   help="only jobs with this metadata (also k=v,k2=v2 or a JSON mapping)")  # fmt: skip
    g.add_argument("--error", "-e", action="store_true", help="only FAILED and REMOTE_ERROR jobs")
    g.add_argument("--running", "-run", action="store_true", help="only jobs the runner is working on")
    g.add_argument("--locked", "-l", action="store_true", help="only jobs locked by a runner process")
    compat.add_hidden(parser)


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
    """(query dict for the queue database, metadata pairs filtered afterwards).

    A filter given an empty value is an error, not a filter left out: ``--flow ""``
    must not turn ``job delete --flow "$F"`` into a delete of every job.
    """
    from jfr_lib.errors import UsageError
    from jfr_lib.states import ERROR_STATES, RUNNING_STATES, JobState

    query = {}
    states = states_of(args.state, JobState)
    if args.error:
        states += [str(s) for s in ERROR_STATES]
    if args.running:
        states += [str(s) for s in RUNNING_STATES]
    if states:
        query["state"] = sorted(set(states))
    if args.worker is not None:
        query["worker"] = [text_value(w, "--worker") for w in args.worker]
    if args.name is not None:
        query["name_glob"] = text_value(args.name, "--name")
    if args.flow is not None:
        query["flow_uuid"] = sorted({get_flow_or_fail(db, f, "--flow")["uuid"] for f in args.flow})
    latest = getattr(args, "latest_flow", None)
    if latest is not None:
        if args.flow is not None:
            raise UsageError("--latest-flow and --flow: give only one")
        query["flow_uuid"] = [f["uuid"] for f in db.find_flows(sort=[("created_on", -1), ("db_id", -1)],
                                                                  limit=latest)]  # fmt: skip
    since = compat.since_of(args)
    if since is not None:
        query["updated_since"] = parse_when(since, "--since")
    if args.until is not None:
        query["updated_until"] = parse_when(args.until, "--until")
    if args.locked:
        query["locked"] = True
    return query, compat.metadata_pairs(args.metadata)


def select_jobs(args, db, sort=None, limit: int = 0) -> list:
    """The jobs named by IDs, or matching the filters (IDs and filters together: both must hold).

    A job named twice (by db_id and uuid, say) is acted on once. Named jobs come
    in db_id order (reversed when ``sort`` is descending).
    """
    from jfr_lib.errors import UsageError

    query, meta = build_query(args, db)
    ids = compat.named_job_ids(args)
    if ids:
        jobs = list({j["db_id"]: j for j in (get_job_or_fail(db, job_id) for job_id in ids)}.values())
        if query or meta:
            allowed = {j["db_id"] for j in db.find_jobs({**query, "db_id": [j["db_id"] for j in jobs]})}
            jobs = [j for j in jobs if j["db_id"] in allowed and compat.meta_matches(j, meta)]
        jobs.sort(key=lambda j: j["db_id"], reverse=bool(sort) and sort[0][1] < 0)
        return jobs[:limit] if limit else jobs
    if getattr(args, "job_ids", None) is not None and not query and not meta:
        raise UsageError("name jobs by ID or select them with filters (see --help)")
    jobs = db.find_jobs(query, sort=sort or [("db_id", 1)], limit=0 if meta else limit)
    if meta:
        jobs = [j for j in jobs if compat.meta_matches(j, meta)]
        if limit:
            jobs = jobs[:limit]
    return jobs


def count_jobs(args, db) -> int:
    """How many jobs :func:`select_jobs` would give, counted by the database when it can."""
    query, meta = build_query(args, db)
    if meta or compat.named_job_ids(args):
        return len(select_jobs(args, db))
    return db.count_jobs(query)


def confirm(verb: str, count: int, assume_yes: bool) -> bool:
    """Ask before acting on several jobs (answer from stdin, even when not a terminal)."""
    if assume_yes or count <= 1:
        return True
    return ask(f"{verb} {count} jobs?")


def ask(question: str) -> bool:
    """Ask a yes/no question on stderr; the answer is read from stdin, even when not a terminal."""
    sys.stderr.write(f"{question} [y/N] ")
    sys.stderr.flush()
    return sys.stdin.readline().strip().lower() in ("y", "yes")
