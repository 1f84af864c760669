"""Batch workers: the exchange between the runner and its pilots, through files only.

A pilot is one queue job (the worker's resources) that runs many jobs, each a
fork of its own warm process. It never touches the queue database: the runner
hands it jobs, and learns what it did, through a folder on the worker, the
``jobs_handle_dir``::

    ready/<ticket>              a job waiting for a pilot (written whole, atomically)
    running/<pilot>/<ticket>    taken by that pilot: a rename, so exactly one pilot gets it
    done/<ticket>               the job's script has ended (the run folder holds the outcome)
    pilots/<pilot>.json         what the pilot says of itself, rewritten as it works
    stop/<pilot>                asks the pilot to take no more jobs and leave
    cancel/<ticket>             asks the pilot running it to end that job

A ticket is named ``<rank>_<run folder name>``: pilots take the lowest rank
first, so the job with the highest priority goes first. Its content says where
the run folder is and how long the job expects to run. The runner reads the
state of all of a worker's pilots with one listing per poll
(:func:`snapshot_command`); which pilots exist, in which queue job, is kept in
the queue database under ``pilots:<worker>`` (:func:`update_pilots`).

This module imports only the standard library: the pilot uses it too.
"""

from __future__ import annotations

import json
import re
import shlex
from dataclasses import dataclass, field
from pathlib import PurePosixPath

READY, RUNNING, DONE, PILOTS, STOP, CANCEL = "ready", "running", "done", "pilots", "stop", "cancel"
FOLDERS = (READY, RUNNING, DONE, PILOTS, STOP, CANCEL)
#: Ticket names: no dot, so the temporary files of an atomic write are never taken for one.
TICKET = re.compile(r"[0-9]{6}_[A-Za-z0-9_-]+\Z")
PILOT = re.compile(r"p[0-9a-f]{10}\Z")
#: Keys of a job's resources that declare how long it runs (seconds, or [D-]HH:MM:SS).
TIME_KEYS = ("expected_time", "time", "walltime", "time_limit", "h_rt")
#: Pilot states kept in the database; the first three count against ``max_jobs``.
ALIVE = ("submitted", "queued", "running")


def ticket_name(run_dir: str, priority=0) -> str:
    """The ticket of the job whose run folder is ``run_dir``: higher priority, lower rank."""
    rank = max(0, min(999_999, 500_000 - int(priority or 0)))
    return f"{rank:06d}_{PurePosixPath(run_dir).name}"


def seconds(value, unit: float = 1.0) -> float | None:
    """A duration in seconds, or None when ``value`` is not one.

    A number counts ``unit`` seconds (SLURM's ``time`` counts minutes); text is
    ``HH:MM:SS``, ``MM:SS`` or SLURM's ``D-HH``, ``D-HH:MM``, ``D-HH:MM:SS``.
    """
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, (int, float)):
        return float(value) * unit if value >= 0 else None
    text = str(value).strip()
    days, hours_first = 0, False
    if "-" in text:
        head, _, text = text.partition("-")
        if not head.isdigit():
            return None
        days, hours_first = int(head), True
    parts = text.split(":")
    if not 1 <= len(parts) <= 3 or not all(p.isdigit() for p in parts):
        return None
    numbers = [int(p) for p in parts]
    if hours_first:  # D-HH, D-HH:MM, D-HH:MM:SS
        numbers += [0] * (3 - len(numbers))
    elif len(numbers) == 1:
        return float(numbers[0]) * unit
    elif len(numbers) == 2:  # MM:SS
        numbers = [0, *numbers]
    hours, minutes, secs = numbers
    return float(days * 86400 + hours * 3600 + minutes * 60 + secs)


#: The unit of a bare number for each key of :data:`TIME_KEYS`.
TIME_UNITS = {"expected_time": 1.0, "time": 60.0, "walltime": 1.0, "time_limit": 1.0, "h_rt": 1.0}


def declared_time(resources) -> float | None:
    """How long a job (or a pilot's allocation) says it runs: the first of :data:`TIME_KEYS` given."""
    if not isinstance(resources, dict):
        return None
    for key in TIME_KEYS:
        if resources.get(key) is not None:
            found = seconds(resources[key], TIME_UNITS[key])
            if found is not None:
                return found
    return None


# --- the runner's view of the folder: one command, one answer ----------------------------


@dataclass
class Snapshot:
    """What ``jobs_handle_dir`` held at one instant."""

    ready: set = field(default_factory=set)
    running: dict = field(default_factory=dict)  # pilot -> set of tickets
    done: set = field(default_factory=set)
    pilots: dict = field(default_factory=dict)  # pilot -> its status file, decoded
    missing: bool = False  # the folder itself is not there

    def where(self, ticket: str) -> tuple:
        """(``ready``/``running``/``done``/None, the pilot running it or None)."""
        if ticket in self.done:
            return DONE, None
        for pilot, tickets in self.running.items():
            if ticket in tickets:
                return RUNNING, pilot
        if ticket in self.ready:
            return READY, None
        return None, None


def snapshot_command(handle_dir: str, remove=()) -> str:
    """One shell command that removes ``remove`` (paths relative to the folder; empty folders end
    with ``/``), then lists it.

    Output lines: ``F <relative path>`` for each ticket, ``P <pilot> <status JSON>``
    for each pilot's status file; nothing but ``MISSING`` when the folder is absent.
    """
    files = " ".join(shlex.quote(r) for r in remove if not r.endswith("/"))
    folders = " ".join(shlex.quote(r) for r in remove if r.endswith("/"))
    drop = (f"rm -f -- {files}; " if files else "") + (f"rmdir -- {folders} 2>/dev/null; " if folders else "")
    return (f"cd {shlex.quote(handle_dir)} 2>/dev/null || {{ echo MISSING; exit 0; }}; {drop}"
            "for f in ready/* done/* running/*/*; do [ -f \"$f\" ] && printf 'F %s\\n' \"$f\"; done; "
            "for f in pilots/*.json; do [ -f \"$f\" ] && { printf 'P %s ' \"$f\"; tr -d '\\n' < \"$f\"; echo; }; "
            "done; true")  # fmt: skip


def parse_snapshot(text: str) -> Snapshot:
    snap = Snapshot()
    for line in text.splitlines():
        if line == "MISSING":
            snap.missing = True
        elif line.startswith("F "):
            parts = line[2:].split("/")
            name = parts[-1]
            if not TICKET.match(name):
                continue  # a write in progress, or something that is not ours
            if parts[0] == READY and len(parts) == 2:
                snap.ready.add(name)
            elif parts[0] == DONE and len(parts) == 2:
                snap.done.add(name)
            elif parts[0] == RUNNING and len(parts) == 3 and PILOT.match(parts[1]):
                snap.running.setdefault(parts[1], set()).add(name)
        elif line.startswith("P "):
            path, _, body = line[2:].partition(" ")
            pilot = PurePosixPath(path).stem
            if not PILOT.match(pilot):
                continue
            try:
                status = json.loads(body)
            except ValueError:  # caught mid-write: the previous poll's view stands
                continue
            if isinstance(status, dict):
                snap.pilots[pilot] = status
    return snap


# --- pilot records in the queue database -------------------------------------------------


def pilots_key(worker: str) -> str:
    return f"pilots:{worker}"


def read_pilots(db, worker: str) -> dict:
    """pilot id -> record, for one worker."""
    doc = db.get_meta(pilots_key(worker)) or {}
    return dict(doc.get("pilots") or {})


def update_pilots(db, worker: str, change, attempts: int = 50) -> dict:
    """Apply ``change(pilots)`` (it edits the dict in place) with a compare-and-set; the new records.

    The monitor, ``jfr batch stop`` and a second runner's monitor may write at
    the same time: a lost race is read again and applied again.
    """
    for _ in range(attempts):
        doc = db.get_meta(pilots_key(worker)) or {}
        token = doc.get("token")
        pilots = dict(doc.get("pilots") or {})
        change(pilots)
        if db.swap_meta(pilots_key(worker), token, {"token": (token or 0) + 1, "pilots": pilots}):
            return pilots
    raise RuntimeError(f"pilots of worker {worker}: the record kept changing under us")


def alive(record: dict) -> bool:
    return record.get("state") in ALIVE
