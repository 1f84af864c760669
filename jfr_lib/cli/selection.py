"""Reading values from the command line: IDs, numbers, times, and the jobs they select.

Every job command that acts on jobs takes either IDs (db_id or uuid) or
filters; a selection of more than one job asks for confirmation unless ``-y``.

A value that cannot mean what the user wants is refused with a one-line
:class:`~jfr_lib.errors.UsageError`, never silently read another way: a db_id is
ASCII digits only (``int("٣")`` is 3, and a delete must not hit job 3 for it),
an empty or non-UTF-8 filter is refused rather than dropped (a dropped filter
would widen the selection), and numbers are checked for range before they reach
the database.
"""

from __future__ import annotations

import argparse
import math
import re
import sys
from datetime import datetime, timedelta, timezone

SORT_KEYS = ("db_id", "updated_on", "created_on", "priority", "name", "state", "worker")
#: The largest integer the queue databases store (SQLite INTEGER, BSON int64).
MAX_INT = 2**63 - 1
AGE = re.compile(r"([0-9]+)\s*([smhdw])", re.ASCII)


# --- argparse types ---------------------------------------------------------------


def whole(text: str) -> int | None:
    """The value of a whole number in ASCII digits with an optional sign, or None.

    None too when it has more digits than any number the databases store (and
    before ``int`` would refuse a very long one).
    """
    m = re.fullmatch(r"([+-]?)0*([0-9]{1,19})", text, re.ASCII)
    if m is None or abs(int(m.group(2))) > MAX_INT:
        return None
    return -int(m.group(2)) if m.group(1) == "-" else int(m.group(2))


def count_type(low: int = 0, high: int = MAX_INT, what: str = "N"):
    """An argparse ``type``: a whole number from ``low`` to ``high``, written in ASCII digits."""

    def count(text: str) -> int:
        value = whole(text)
        if value is None or not low <= value <= high:
            raise argparse.ArgumentTypeError(f"{text!r}: give a whole number from {low} to {high}")
        return value

    count.__name__ = what
    return count


def seconds_type(text: str) -> float:
    """An argparse ``type``: a finite number of seconds, 0 or more (``nan``, ``inf`` refused)."""
    try:
        value = float(text) if text.isascii() else math.nan
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError(f"{text!r}: give a number of seconds, 0 or more")
    return value


# --- values -------------------------------------------------------------------------


def text_value(value: str, option: str) -> str:
    """``value`` if it is a non-empty UTF-8 string; a UsageError otherwise.

    Every job, flow, worker and name is stored as UTF-8 text, so an argument
    that was not (its bytes arrive as surrogates) can match nothing.
    """
    from jfr_lib.errors import UsageError

    if value == "":
        raise UsageError(f"{option}: give a value, not an empty string")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise UsageError(f"{option} {value!r}: not valid UTF-8") from None
    return value


def parse_id(text: str, option: str = "ID") -> int | str:
    """A db_id (ASCII digits) as an int, or the text itself (a uuid).

    Digits too many for any stored id give ``MAX_INT + 1``, which names nothing.
    """
    text_value(text, option)
    if not (text.isascii() and text.isdigit()):
        return text
    value = whole(text)
    return MAX_INT + 1 if value is None else value


def get_job_or_fail(db, job_id: str) -> dict:
    """A job by db_id (ASCII digits) or uuid; NotFoundError otherwise."""
    return _get(db, "job", job_id, "ID")


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


def parse_when(text: str, option: str) -> str:
    """A time given on the command line, as the stored form (ISO 8601 UTC with milliseconds).

    Accepts an age (``90s``, ``30m``, ``2h``, ``3d``, ``1w``: that long ago), an
    ISO date or time with an offset (``Z`` too) as the tables print them
    (``2026-11-30 21:40:05+01:00``), or a date or time without one, read as
    local time.
    """
    from jfr_lib.errors import UsageError

    text_value(text, option)
    value = text.strip()
    try:
        m = AGE.fullmatch(value)
        if m:
            unit = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}[m.group(2)]
            when = datetime.now(timezone.utc) - timedelta(**{unit: int(m.group(1))})
        else:
            if not value.isascii():  # fromisoformat reads other scripts' digits too
                raise ValueError(value)
            if value[-1:] in ("Z", "z"):
                value = value[:-1] + "+00:00"
            when = datetime.fromisoformat(value)
            if when.tzinfo is None:
                when = when.astimezone()  # a local time
        return when.astimezone(timezone.utc).isoformat(timespec="milliseconds")
    except (OverflowError, OSError):
        raise UsageError(f"{option} {text!r}: out of range") from None
    except ValueError as exc:
        if "out of range" in str(exc):
            raise UsageError(f"{option} {text!r}: out of range") from None
        raise UsageError(f"{option} {text!r}: give a time as the tables show it (2026-11-30 "
                         "21:40:05+01:00), an ISO date or time, or an age such as 2h or 3d") from None  # fmt: skip


def parse_int(text: str, what: str) -> int:
    """A whole number (ASCII digits, optional sign) that the databases can store."""
    from jfr_lib.errors import UsageError

    value = whole(text)
    if value is None:
        raise UsageError(f"{what} {text!r}: give a whole number from {-MAX_INT} to {MAX_INT}")
    return value


def parse_regex(text: str, option: str):
    """A compiled regular expression; a UsageError when it is not one."""
    from jfr_lib.errors import UsageError

    text_value(text, option)
    try:
        return re.compile(text)
    except (re.error, RecursionError, OverflowError) as exc:
        raise UsageError(f"{option} {text!r}: not a valid regular expression: {exc}") from None


# --- filters ------------------------------------------------------------------------


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
    g.add_argument("--since", metavar="WHEN",
                   help="changed at or after WHEN: a time as the tables show it, ISO, or 2h, 3d ago")  # fmt: skip
    g.add_argument("--until", metavar="WHEN",
                   help="changed before WHEN: a time as the tables show it, ISO, or 2h, 3d ago")  # fmt: skip
    g.add_argument("--metadata", metavar="KEY=VALUE", action="append", help="only jobs with this metadata")
    g.add_argument("--error", action="store_true", help="only FAILED and REMOTE_ERROR jobs")
    g.add_argument("--running", action="store_true", help="only jobs the runner is working on")
    g.add_argument("--locked", action="store_true", help="only jobs locked by a runner process")


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
        query["flow_uuid"] = get_flow_or_fail(db, args.flow, "--flow")["uuid"]
    if args.since is not None:
        query["updated_since"] = parse_when(args.since, "--since")
    if args.until is not None:
        query["updated_until"] = parse_when(args.until, "--until")
    if args.locked:
        query["locked"] = True
    meta = []
    for pair in args.metadata or []:
        key, sep, value = text_value(pair, "--metadata").partition("=")
        if not sep or not key:
            raise UsageError(f"--metadata {pair!r}: give KEY=VALUE")
        meta.append((key, value))
    return query, meta


def _meta_matches(job: dict, pairs) -> bool:
    metadata = job.get("metadata") or {}
    return all(str(metadata.get(k)) == v for k, v in pairs)


def select_jobs(args, db, sort=None, limit: int = 0) -> list:
    """The jobs named by IDs, or matching the filters (IDs and filters together: both must hold).

    A job named twice (by db_id and uuid, say) is acted on once.
    """
    from jfr_lib.errors import UsageError

    query, meta = build_query(args, db)
    ids = getattr(args, "job_ids", None) or []
    if ids:
        jobs = list({j["db_id"]: j for j in (get_job_or_fail(db, job_id) for job_id in ids)}.values())
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
