"""The runner lease: which process runs a project, kept in the queue database.

One document (meta key ``runner``) records the holder: a random token, host,
pid, user, start time and heartbeat. Every change is a compare-and-set on the
token, so two runners can never both believe they hold it. A stop request lives
in its own document (meta key ``runner_stop``, naming the token it is meant
for), so that a heartbeat rewriting the lease can never erase it. A lease is stale when its heartbeat is older than
``stale_after`` (three heartbeats by default), or at once when its process is
gone on this very host.
"""

from __future__ import annotations

import getpass
import os
import socket
import time
import uuid
from datetime import datetime, timezone

from jfr_lib.proc import process_start

KEY = "runner"
STOP_KEY = "runner_stop"
RUNNING, STALE, STOPPED = "running", "stale", "stopped"


def alive_here(lease: dict) -> bool:
    """On the lease's own host: whether its process still exists."""
    if os.path.isdir("/proc"):
        return process_start(int(lease["pid"])) == lease.get("proc_start")
    try:
        os.kill(int(lease["pid"]), 0)
        return True
    except ProcessLookupError:
        return False
    except PermissionError:
        return True


def read(db) -> dict | None:
    """The current lease, or None when no runner holds it."""
    lease = db.get_meta(KEY)
    if not isinstance(lease, dict) or not lease.get("token"):
        return None
    return {**lease, "stop_requested": _stop_requested(db, lease["token"])}


def _stop_requested(db, token: str) -> bool:
    stop = db.get_meta(STOP_KEY)
    return isinstance(stop, dict) and stop.get("token") == token


def status(lease: dict | None, now: float | None = None) -> str:
    """``running``, ``stale`` or ``stopped``."""
    if lease is None:
        return STOPPED
    now = time.time() if now is None else now
    if lease.get("host") == socket.gethostname() and not alive_here(lease):
        return STALE
    if now - float(lease.get("heartbeat", 0)) > float(lease.get("stale_after", 15)):
        return STALE
    return RUNNING


def new_lease(heartbeat: float, stale_after: float, **extra) -> dict:
    now = time.time()
    return {
        "token": uuid.uuid4().hex,
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "proc_start": process_start(os.getpid()),
        "user": getpass.getuser(),
        "started": now,
        "started_on": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "heartbeat": now,
        "interval": heartbeat,
        "stale_after": stale_after,
        "children": [],
        **extra,
    }


def acquire(db, lease: dict) -> tuple:
    """Take the lease if nobody holds it or its holder is stale.

    Returns
    -------
    (bool, dict or None)
        Whether it was taken, and the lease found before (the live holder when
        refused, the stale or released one when taken).
    """
    for _ in range(5):
        current = read(db)
        if status(current) == RUNNING:
            return False, current
        expected = current["token"] if current else None
        if db.swap_meta(KEY, expected, lease):
            return True, current
    return False, read(db)


def heartbeat(db, lease: dict, children: list) -> str:
    """Refresh the lease. Returns ``ok``, ``stop`` (a stop was requested) or ``lost``."""
    current = db.get_meta(KEY)
    if not isinstance(current, dict) or current.get("token") != lease["token"]:
        return "lost"
    updated = {**current, "heartbeat": time.time(), "children": children}
    if not db.swap_meta(KEY, lease["token"], updated):
        return "lost"
    return "stop" if _stop_requested(db, lease["token"]) else "ok"


def request_stop(db) -> dict | None:
    """Ask the holder to stop (works from any host). Returns the lease, or None."""
    current = read(db)
    if current is None:
        return None
    db.set_meta(STOP_KEY, {"token": current["token"], "requested": time.time()})
    return {**current, "stop_requested": True}


def release(db, token: str) -> bool:
    """Give the lease up (the runner stops)."""
    return db.swap_meta(KEY, token, {"token": None, "released": time.time()})
