"""Which workers wait for a login, recorded in the queue database.

A worker whose authenticated connection is gone (an interactive login's master
connection killed, a dropped link the server will not reopen without a person)
is marked "login needed": its jobs wait where they are, without spending
attempts, until ``jfr login WORKER`` (or a master the user opened) brings the
connection back. One metadata document per worker (``login:NAME``) holds the
mark, so processes marking different workers never overwrite each other.
"""

from __future__ import annotations

import time

PREFIX = "login:"


def mark(db, worker: str, reason: str) -> bool:
    """Record that ``worker`` needs a login; True if it was not marked before."""
    current = db.get_meta(PREFIX + worker)
    if current:
        if current.get("reason") != reason:
            db.set_meta(PREFIX + worker, dict(current, reason=reason))
        return False
    db.set_meta(PREFIX + worker, {"worker": worker, "since": time.time(), "reason": reason})
    return True


def clear(db, worker: str) -> dict | None:
    """Drop the mark of ``worker``; the mark it had, if any."""
    current = db.get_meta(PREFIX + worker)
    if current:
        db.set_meta(PREFIX + worker, None)
    return current or None


def get(db, worker: str) -> dict | None:
    """The mark of ``worker`` (``worker``, ``since`` as epoch seconds, ``reason``), or None."""
    return db.get_meta(PREFIX + worker) or None


def needed(db, workers) -> list:
    """The marks of the given worker names that need a login, in the order given."""
    return [m for m in (get(db, w) for w in workers) if m]
