"""The queue database: where jobs and flows live, behind one small interface.

``open_queue_db(project)`` gives the backend the project asks for: the embedded
SQLite file by default, MongoDB when ``queue.backend`` is ``mongodb``.
"""

from __future__ import annotations

from jfr_lib.queue_db.base import ANY, QueueDB, lock_token, now_iso

__all__ = ["ANY", "QueueDB", "lock_token", "now_iso", "open_queue_db"]


def open_queue_db(project) -> QueueDB:
    """Open the queue database of ``project`` (a :class:`jfr_lib.config.Project`).

    The returned object knows the project's data folder (``base_dir``), where
    the runner's wake-up pipes live.
    """
    q = project.queue
    if q.backend == "mongodb":
        from jfr_lib.queue_db.mongo import MongoQueueDB

        if q.uri and q.uri.startswith("mongomock://"):
            db = MongoQueueDB(database=q.database, prefix=q.prefix, client=_mock_client())
        else:
            db = MongoQueueDB(q.uri, q.database, q.prefix, timeout=q.connect_timeout, options=q.client_options)
    else:
        from jfr_lib.queue_db.sqlite import SQLiteQueueDB

        db = SQLiteQueueDB(project.queue_db_path)
    db.base_dir = project.base_dir
    return db


_MOCK = None


def _mock_client():
    """One in-memory MongoDB per process for ``mongomock://`` URIs (tests only)."""
    global _MOCK
    if _MOCK is None:
        import mongomock

        _MOCK = mongomock.MongoClient()
    return _MOCK


def jobflow_remote_note(db, project) -> str | None:
    """When a MongoDB queue of jfr is empty but its database holds jobflow-remote's queue: one line
    saying how to import it (``jfr job list`` and ``jfr flow list`` print it). None otherwise."""
    if project.queue.backend != "mongodb" or getattr(db, "client", None) is None:
        return None
    try:
        if db.flows.find_one({}, {"_id": 1}) is not None:
            return None
        from jfr_lib.import_jfremote import detect_jobflow_remote

        return detect_jobflow_remote(db.client[project.queue.database], jobs=project.queue.prefix)
    except Exception:  # a hint only: never in the way of the command
        return None
