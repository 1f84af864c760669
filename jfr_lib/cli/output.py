"""Tables for people, JSON for scripts.

What a table shows is safe for a terminal: control characters (escape codes in a
job name, say) are shown escaped, and times are local, with their offset from
UTC, in the very form ``--since`` and ``--until`` read. JSON keeps the stored
values: ISO 8601 times in UTC.
"""

from __future__ import annotations

import json
import re
import shutil
import sys
from datetime import datetime, timezone


def print_json(data) -> None:
    json.dump(data, sys.stdout, indent=2, sort_keys=False, default=str)
    sys.stdout.write("\n")


#: ANSI colours of states, used only on a terminal and never with NO_COLOR.
COLOURS = {"COMPLETED": "32", "FAILED": "31", "REMOTE_ERROR": "31", "RUNNING": "36", "SUBMITTED": "36",
           "READY": "33", "PAUSED": "35", "STOPPED": "90", "USER_STOPPED": "90"}  # fmt: skip

#: An ISO 8601 time with its offset, as jfr stores them (``2026-11-30T21:40:05.123+00:00``).
ISO_TIME = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}[T ][0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]+)?([+-][0-9]{2}:[0-9]{2}|Z)",
                      re.ASCII)  # fmt: skip


def use_colour() -> bool:
    import os

    return sys.stdout.isatty() and "NO_COLOR" not in os.environ and os.environ.get("TERM") != "dumb"


def printable(text) -> str:
    """``text`` with every character a terminal would act on shown escaped (``\\x1b``, ``\\n``, ``\\u202e``).

    Also escapes the surrogates that stand for bytes of an argument that was not
    UTF-8, which could not be written out otherwise.
    """
    text = str(text)
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else c.encode("unicode_escape", "backslashreplace").decode("ascii")
                   for c in text)  # fmt: skip


def printable_lines(text: str) -> str:
    """Like :func:`printable`, keeping the line breaks (a traceback)."""
    return "\n".join(printable(line) for line in str(text).split("\n"))


def local_time(value: str) -> str:
    """An ISO time (UTC as stored) in local time with its offset: ``2026-11-30 21:40:05+01:00``.

    Seconds are enough to read and what ``--since`` gets back from a copy selects
    every job shown with that time or later.
    """
    try:
        when = datetime.fromisoformat(value[:-1] + "+00:00" if value.endswith("Z") else value)
        if when.tzinfo is None:
            when = when.replace(tzinfo=timezone.utc)
        return when.astimezone().isoformat(sep=" ", timespec="seconds")
    except (ValueError, OverflowError, OSError):
        return value


def print_table(rows: list, columns: list, empty: str = "nothing to show") -> None:
    """Print ``rows`` (dicts) as aligned columns ``[(key, title), ...]``, cut to the terminal.

    Columns whose key ends in ``_on`` hold stored ISO times: they are shown in local time.
    """
    if not rows:
        print(empty)
        return
    cells = [[_cell(key, r.get(key)) for key, _ in columns] for r in rows]
    titles = [title for _, title in columns]
    widths = [max(len(t), *(len(c[i]) for c in cells)) for i, t in enumerate(titles)]
    tty = sys.stdout.isatty()
    width = shutil.get_terminal_size((120, 24)).columns if tty else 10_000
    colour = use_colour()
    lines = ["  ".join(t.ljust(w) for t, w in zip(titles, widths)).rstrip()[:width]]
    for row in cells:
        line = "  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip()[:width]
        if colour:
            for cell in row:
                if cell in COLOURS:
                    line = line.replace(cell, f"\033[{COLOURS[cell]}m{cell}\033[0m", 1)
                    break
        lines.append(line)
    sys.stdout.write("\n".join(lines) + "\n")


def _cell(key: str, value) -> str:
    if value is None:
        return "-"
    if key.endswith("_on") and isinstance(value, str) and ISO_TIME.fullmatch(value):
        return local_time(value)
    return printable(value)


def add_json_flag(parser) -> None:
    parser.add_argument("--json", action="store_true", help="print JSON for scripts")


def queue_cell(job: dict) -> str:
    """Where a job is in its queue: its queue id, or the pilot running it (batch workers)."""
    if job.get("pilot") and job.get("state") == "RUNNING":
        return f"{job.get('pilot_queue_id') or '?'} (pilot {job['pilot']})"
    if job.get("batch_ticket") and job.get("state") == "SUBMITTED":
        return "waiting for a pilot"
    return str(job.get("queue_id") or "")


def note_jobflow_remote(db, project) -> None:
    """Print, on stderr, how to import the jobflow-remote queue that shares an empty jfr queue's database."""
    from jfr_lib.queue_db import jobflow_remote_note

    note = jobflow_remote_note(db, project)
    if note:
        print(f"jfr: note: {note}", file=sys.stderr)
