"""The project's jobflow ``JobStore``, built from the project file.

Absent a ``jobstore`` key, the outputs go to an embedded store: maggma
``MontyStore`` collections (montydb, sqlite engine) in the project's data folder,
with one additional store named ``data`` for large outputs. montydb is not safe
for concurrent writers, nor for concurrent first connections, so every access to
a file-backed store goes through :func:`store_lock` (an ``flock`` on a file next
to it): exclusive to connect and write, shared to read.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from pathlib import Path

#: maggma store types that keep their data in local files.
FILE_STORES = {"MontyStore", "JSONStore", "FileStore"}
DEFAULT_ADDITIONAL = ("data",)


def jobstore_spec(project) -> dict:
    """The ``JobStore.from_dict_spec`` mapping for ``project``, paths made absolute."""
    if project.jobstore is None:
        folder = str(project.jobstore_dir)

        def monty(collection):
            return {"type": "MontyStore", "collection_name": collection,
                    "database_path": folder, "database_name": "jfr", "storage": "sqlite"}  # fmt: skip

        return {
            "docs_store": monty("outputs"),
            "additional_stores": {n: monty(f"outputs_{n}") for n in DEFAULT_ADDITIONAL},
        }
    spec = {k: v for k, v in project.jobstore.items()}
    stores = [spec.setdefault("docs_store", {})]
    spec["additional_stores"] = dict(spec.get("additional_stores") or {})
    stores += spec["additional_stores"].values()
    for store in stores:
        if store.get("type") == "MontyStore":
            path = Path(store.get("database_path") or project.jobstore_dir)
            store["database_path"] = str(path if path.is_absolute() else project.base_dir / path)
            store.setdefault("storage", "sqlite")
    return spec


def additional_store_names(project) -> set:
    """Names of the additional stores, read from the configuration (no connection)."""
    return set(jobstore_spec(project).get("additional_stores") or {})


def _uses_files(spec: dict) -> bool:
    stores = [spec["docs_store"], *(spec.get("additional_stores") or {}).values()]
    return any(s.get("type") in FILE_STORES for s in stores)


@contextlib.contextmanager
def store_lock(project, exclusive: bool = True):
    """Hold the JobStore file lock (a no-op for server-backed stores)."""
    if not _uses_files(jobstore_spec(project)):
        yield
        return
    project.base_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(project.base_dir / "jobstore.lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
        yield
    finally:
        os.close(fd)  # closing releases the lock


def get_jobstore(project=None, connect: bool = True):
    """The JobStore of a project, connected (outside any lock afterwards).

    Parameters
    ----------
    project
        A :class:`jfr_lib.config.Project`, a project name, or None for the default.
    connect
        Connect the stores before returning.

    Returns
    -------
    jobflow.JobStore
    """
    from jobflow import JobStore

    if project is None or isinstance(project, str):
        from jfr_lib.config import load_project

        project = load_project(project)
    spec = jobstore_spec(project)
    if _uses_files(spec):
        project.jobstore_dir.mkdir(parents=True, exist_ok=True)
    store = JobStore.from_dict_spec(spec)
    if connect:
        with store_lock(project, exclusive=True):
            store.connect()
            _create_collections(project, store)
    return store


def _create_collections(project, store) -> None:
    """Make every embedded collection exist once, so later writers never race to create it."""
    marker = project.base_dir / ".jobstore-ready"
    if marker.exists() or not _uses_files(jobstore_spec(project)):
        return
    from maggma.stores import MontyStore

    for s in [store.docs_store, *store.additional_stores.values()]:
        if isinstance(s, MontyStore):
            s._collection.insert_one({"_jfr_init": True})
            s._collection.delete_many({"_jfr_init": True})
    marker.write_text("ok\n")
