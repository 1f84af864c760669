"""Faults of the machine, not of a job: a full disk, a locked or unreachable database.

They pass. A step that meets one is tried again later, without using the job's
retry budget and without ever failing the job; the process that meets one while
claiming work waits and tries again; the runner keeps going, says what is wrong
in its log and in ``jfr runner info``, and carries on by itself once the fault
clears.
"""

from __future__ import annotations

import errno

#: errno values of file-system faults that pass (space, quota, a read-only remount, I/O, limits).
FAULT_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EIO, errno.EMFILE, errno.ENFILE, errno.ENOMEM,
                errno.EAGAIN, errno.EBUSY, errno.ETIMEDOUT, errno.ENOLCK, errno.ESTALE}  # fmt: skip
#: Back-off between attempts while a fault lasts, in seconds (the last one repeats).
BACKOFF = (1, 2, 5, 10, 30, 60)


class Fault(Exception):
    """A fault met where no job can carry it: the process waits and tries again."""


def is_fault(exc: BaseException) -> bool:
    """Whether ``exc`` is a fault of the storage or the database, which passes."""
    import sqlite3

    from jfr_lib.errors import QueueDBError

    if isinstance(exc, (Fault, sqlite3.OperationalError, QueueDBError)):
        return True
    if isinstance(exc, sqlite3.DatabaseError):  # "disk I/O error", "database or disk is full", ...
        return "malformed" not in str(exc)
    if isinstance(exc, OSError) and exc.errno in FAULT_ERRNOS:
        return True
    module = type(exc).__module__.split(".")[0]
    if module == "pymongo":
        from pymongo.errors import ConnectionFailure, OperationFailure

        return isinstance(exc, ConnectionFailure) or (isinstance(exc, OperationFailure) and exc.code in (
            11600, 11602, 13435, 189, 91))  # interrupted, primary stepped down, shutting down  # fmt: skip
    return False


def describe(exc: BaseException) -> str:
    """One line: what the fault is."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    if isinstance(exc, OSError) and exc.strerror:
        text = f"{exc.strerror}" + (f": {exc.filename}" if exc.filename else "")
    return f"{type(exc).__name__}: {text}" if type(exc).__name__ not in text else text


def delay(attempt: int) -> float:
    """Seconds to wait before attempt number ``attempt`` (0 for the first retry)."""
    return float(BACKOFF[min(attempt, len(BACKOFF) - 1)])
