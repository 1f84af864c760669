"""jobflow-remote's options, read the jfr way.

jobflow-remote 1.0.1 (``jf``) names jobs with ``-did N`` (a db_id) and ``-jid
UUID[:INDEX]``, flows with ``-fid``, and selects with ``-sdate``, ``-edate``,
``-ds`` (days ago), ``-hs`` (hours ago), ``-wk`` (worker) and ``-meta``
(``k=v,k2=v2`` or a JSON mapping). Each is declared beside the jfr option it
stands for (see :mod:`jfr_lib.cli.selection`); this module reads their values.
What jfr deliberately does not do (break a runner's lock, a raw MongoDB query)
is refused with a one-line reason rather than an "unrecognized argument".
"""

from __future__ import annotations

import argparse
import re

from jfr_lib.cli.values import count_type, text_value

#: A jobflow-remote job id: a uuid, optionally with ``:INDEX``.
JOB_ID = re.compile(r"([^:\s]+)(?::([0-9]{1,18}))?", re.ASCII)

REFUSED = {
    ("-bl", "--break-lock"): "jfr never breaks a lock the runner holds: stop the runner, then `jfr admin unlock`",
    ("-q", "--query"): "raw database queries are not supported: use the filters (see --help)",
}


class Refused(argparse.Action):
    """An option of jobflow-remote that jfr refuses, with the reason."""

    def __init__(self, option_strings, dest, reason: str = "", **kwargs):
        super().__init__(option_strings, dest, **kwargs)
        self.reason = reason

    def __call__(self, parser, namespace, values, option_string=None):
        parser.error(f"{option_string}: {self.reason}")


def add_hidden(parser, query: bool = True) -> None:
    """jobflow-remote options accepted silently (``-v``) or refused with a reason (``-bl``, ``-q``)."""
    parser.add_argument("-v", "--verbosity", action="count", default=0, help=argparse.SUPPRESS)
    for names, reason in REFUSED.items():
        if query or names[0] != "-q":
            parser.add_argument(*names, action=Refused, nargs=0 if names[0] == "-bl" else 1, reason=reason,
                                dest=argparse.SUPPRESS, default=argparse.SUPPRESS, help=argparse.SUPPRESS)  # fmt: skip


def add_time_options(group) -> None:
    """``--since``/``--until`` with their jobflow-remote names, and ``-ds``/``-hs``."""
    when = "a time as the tables show it, ISO, HH:MM:SS (its last occurrence), or an age (2h, 3d)"
    group.add_argument("--since", "-sdate", "--start-date", metavar="WHEN", help=f"changed at or after WHEN: {when}")
    group.add_argument("--until", "-edate", "--end-date", metavar="WHEN", help=f"changed before WHEN: {when}")
    group.add_argument("-ds", "--days", metavar="N", type=count_type(1, 36500),
                       help="changed in the last N days (as --since Nd)")  # fmt: skip
    group.add_argument("-hs", "--hours", metavar="N", type=count_type(1, 876000),
                       help="changed in the last N hours (as --since Nh)")  # fmt: skip


def since_of(args) -> str | None:
    """The ``--since`` value, or the age that ``--days``/``--hours`` give; only one of them."""
    from jfr_lib.errors import UsageError

    given = [(o, v) for o, v in (("--since", args.since), ("--days", getattr(args, "days", None)),
                                 ("--hours", getattr(args, "hours", None))) if v is not None]  # fmt: skip
    if len(given) > 1:
        raise UsageError(f"{given[0][0]} and {given[1][0]}: give only one of --since, --days, --hours")
    if getattr(args, "days", None) is not None:
        return f"{args.days}d"
    if getattr(args, "hours", None) is not None:
        return f"{args.hours}h"
    return args.since


def add_job_names(group) -> None:
    """``-did N`` and ``-jid UUID[:INDEX]``: jobs named by option, as jobflow-remote names them."""
    group.add_argument("-did", "--db-id", dest="db_ids", metavar="N", action="append",
                       help="the job with this db_id (repeatable)")  # fmt: skip
    group.add_argument("-jid", "--job-id", dest="jids", metavar="UUID[:INDEX]", action="append",
                       help="the job with this uuid (its highest index, or INDEX) (repeatable)")  # fmt: skip


def db_id_value(text: str, option: str = "-did") -> str:
    """A db_id given to ``-did``: ASCII digits only."""
    from jfr_lib.errors import UsageError

    if not (text_value(text, option).isascii() and text.isdigit()):
        raise UsageError(f"{option} {text!r}: give a db_id (a whole number); a uuid goes with -jid")
    return text


def job_id_value(text: str, option: str = "-jid") -> str:
    """A uuid given to ``-jid``, with an optional ``:INDEX``."""
    from jfr_lib.errors import UsageError

    if JOB_ID.fullmatch(text_value(text, option)) is None or text.isdigit():
        raise UsageError(f"{option} {text!r}: give a job's uuid, optionally with :INDEX; a db_id goes with -did")
    return text


def named_job_ids(args) -> list:
    """The IDs of the jobs named on the command line: arguments, ``-did`` and ``-jid``.

    ``UUID N`` is refused: jobflow-remote reads it as the job UUID with index N,
    jfr as two jobs.
    """
    from jfr_lib.errors import UsageError

    ids = list(getattr(args, "job_ids", None) or [])
    if len(ids) == 2 and not ids[0].isdigit() and ":" not in ids[0] and ids[1].isascii() and ids[1].isdigit():
        raise UsageError(f"{ids[0]} {ids[1]}: ambiguous (one job with index {ids[1]} in jobflow-remote, two "
                         f"jobs in jfr): write {ids[0]}:{ids[1]} for the one job, or -did {ids[1]} for job "
                         f"{ids[1]}")  # fmt: skip
    ids += [db_id_value(i) for i in getattr(args, "db_ids", None) or []]
    ids += [job_id_value(i) for i in getattr(args, "jids", None) or []]
    return ids


def metadata_pairs(values) -> list:
    """(key, value) pairs from ``--metadata``/``-meta`` values.

    Each value is ``KEY=VALUE``, jobflow-remote's ``k=v,k2=v2`` (when every
    comma-separated part has an ``=``), or a JSON mapping (values compared as
    JSON values; a dotted key looks into nested metadata).
    """
    import json

    from jfr_lib.errors import UsageError

    pairs = []
    for text in values or []:
        text = text_value(text, "--metadata")
        if text.lstrip().startswith("{"):
            try:
                mapping = json.loads(text)
            except (ValueError, RecursionError):
                raise UsageError(f"--metadata {text!r}: not a valid JSON mapping") from None
            if not isinstance(mapping, dict) or not mapping:
                raise UsageError(f"--metadata {text!r}: give a JSON mapping with at least one key")
            pairs += [(k, ("json", v)) for k, v in mapping.items()]
            continue
        parts = text.split(",")
        for part in parts if len(parts) > 1 and all("=" in p for p in parts) else [text]:
            key, sep, value = part.partition("=")
            if not sep or not key:
                raise UsageError(f"--metadata {text!r}: give KEY=VALUE, k=v,k2=v2 or a JSON mapping")
            pairs.append((key, value))
    return pairs


_MISSING = object()


def meta_matches(doc: dict, pairs) -> bool:
    """Whether the ``metadata`` of a job or flow holds every pair."""
    metadata = doc.get("metadata") or {}
    for key, want in pairs:
        have = metadata.get(key, _MISSING)
        if have is _MISSING and "." in key:
            have = metadata
            for part in key.split("."):
                have = have.get(part, _MISSING) if isinstance(have, dict) else _MISSING
        if isinstance(want, tuple):
            if have is _MISSING or have != want[1]:
                return False
        elif have is _MISSING or str(have) != want:
            return False
    return True


def mapping_value(text: str, option: str) -> dict:
    """A JSON mapping, or jobflow-remote's ``k=v,k2=v2`` (whole numbers become numbers)."""
    import json

    from jfr_lib.errors import UsageError

    if not text.lstrip().startswith(("{", "[")) and "=" in text:
        out = {}
        for part in text.split(","):
            key, sep, value = part.partition("=")
            if not sep or not key.strip():
                raise UsageError(f"{option}: give a JSON mapping or k=v,k2=v2")
            value = value.strip()
            out[key.strip()] = int(value) if value.isascii() and value.isdigit() and len(value) < 19 else value
        return out
    try:
        value = json.loads(text, parse_constant=_no_constant)
    except ValueError as exc:
        raise UsageError(f"{option}: not valid JSON: {exc}") from None
    except RecursionError:
        raise UsageError(f"{option}: JSON nested too deeply") from None
    if not isinstance(value, dict):
        raise UsageError(f"{option}: give a JSON mapping")
    return value


def _no_constant(name: str):
    """JSON's ``NaN`` and ``Infinity`` (which Python's reader accepts) are no values for a scheduler."""
    raise ValueError(f"{name} is not a JSON number")


def limit_type(what: str):
    """The type of ``-n`` on listings: a count, with a hint when jobflow-remote's ``-n NAME`` was meant."""
    count = count_type()

    def limit(text: str) -> int:
        try:
            return count(text)
        except argparse.ArgumentTypeError as exc:
            if re.search(r"[0-9]", text) is None:
                raise argparse.ArgumentTypeError(f"{exc}; -n is the number of {what} in jfr: for a name "
                                                 "(jobflow-remote's -n) use --name") from None  # fmt: skip
            raise

    limit.__name__ = "N"
    return limit
