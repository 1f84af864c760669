"""The project's jobflow ``JobStore``, built from the project file.

Absent a ``jobstore`` key, the outputs go to an embedded store in the project's
data folder: :class:`jfr_lib.sqlite_store.SQLiteStore` collections in one SQLite
file (``jobstore/jobstore.db``), with one additional store named ``data`` for
large outputs. Its lookups go through indexes, and several processes read and
write it at once without any lock of ours.

Projects made by an earlier jfr keep their maggma ``MontyStore`` files until
``jfr admin migrate-jobstore`` copies them (:func:`migrate`); MontyStore also
serves whenever a project file names it. montydb is not safe for concurrent
writers, nor for concurrent first connections, so every access to such a store
goes through :func:`store_lock` (an ``flock`` on a file next to it): exclusive
to connect and write, shared to read.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from pathlib import Path

from jfr_lib.private import private_dir

#: maggma store types that need :func:`store_lock`: unsafe with concurrent writers.
LOCKED_STORES = {"MontyStore", "JSONStore", "FileStore"}
#: Store types that keep their data in files of the project (backed up with it).
EMBEDDED_STORES = LOCKED_STORES | {"SQLiteStore"}
DEFAULT_ADDITIONAL = ("data",)
#: The embedded default's file, in the JobStore folder.
SQLITE_NAME = "jobstore"


def legacy_monty(project) -> bool:
    """Whether the project's embedded JobStore is the MontyStore an earlier jfr made."""
    folder = project.jobstore_dir
    return (folder / "monty.storage.cfg").exists() and not (folder / f"{SQLITE_NAME}.db").exists()


def _monty_spec(folder: str) -> dict:
    def monty(collection):
        return {"type": "MontyStore", "collection_name": collection,
                "database_path": folder, "database_name": "jfr", "storage": "sqlite"}  # fmt: skip

    return {"docs_store": monty("outputs"), "additional_stores": {n: monty(f"outputs_{n}") for n in DEFAULT_ADDITIONAL}}


def _sqlite_spec(folder: str, name: str = SQLITE_NAME) -> dict:
    def lite(collection):
        return {"type": "SQLiteStore", "collection_name": collection, "database_path": folder,
                "database_name": name}  # fmt: skip

    return {"docs_store": lite("outputs"), "additional_stores": {n: lite(f"outputs_{n}") for n in DEFAULT_ADDITIONAL}}


def jobstore_spec(project) -> dict:
    """The ``JobStore.from_dict_spec`` mapping for ``project``, paths made absolute."""
    if project.jobstore is None:
        folder = str(project.jobstore_dir)
        return _monty_spec(folder) if legacy_monty(project) else _sqlite_spec(folder)
    spec = {k: v for k, v in project.jobstore.items()}
    stores = [spec.setdefault("docs_store", {})]
    spec["additional_stores"] = dict(spec.get("additional_stores") or {})
    stores += spec["additional_stores"].values()
    for store in stores:
        if store.get("type") in ("MontyStore", "SQLiteStore"):
            path = Path(store.get("database_path") or project.jobstore_dir)
            store["database_path"] = str(path if path.is_absolute() else project.base_dir / path)
        if store.get("type") == "MontyStore":
            store.setdefault("storage", "sqlite")
    return spec


def additional_store_names(project) -> set:
    """Names of the additional stores, read from the configuration (no connection)."""
    return set(jobstore_spec(project).get("additional_stores") or {})


def _store_types(spec: dict) -> set:
    return {s.get("type") for s in [spec["docs_store"], *(spec.get("additional_stores") or {}).values()]}


def embedded(project) -> bool:
    """Whether the JobStore keeps its data in files of the project (backups copy them)."""
    return bool(_store_types(jobstore_spec(project)) & EMBEDDED_STORES)


def _needs_lock(spec: dict) -> bool:
    return bool(_store_types(spec) & LOCKED_STORES)


@contextlib.contextmanager
def store_lock(project, exclusive: bool = True):
    """Hold the JobStore file lock (a no-op for stores safe with concurrent writers)."""
    if not _needs_lock(jobstore_spec(project)):
        yield
        return
    private_dir(project.base_dir)
    fd = os.open(project.base_dir / "jobstore.lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
        yield
    finally:
        os.close(fd)  # closing releases the lock


def read_output(project, store, uuid: str, index, what: str, load=True):
    """A job's output from ``store``, under the JobStore's read lock.

    Raises
    ------
    NotFoundError
        It has none (yet): "``what`` has no output yet".
    """
    from jfr_lib.errors import NotFoundError

    try:
        with store_lock(project, exclusive=False):
            return store.get_output(uuid, which=index, load=load)
    except ValueError:
        raise NotFoundError(f"{what} has no output yet") from None


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

    import jfr_lib.sqlite_store  # noqa: F401  (from_dict_spec finds store classes among those imported)

    if project is None or isinstance(project, str):
        from jfr_lib.config import load_project

        project = load_project(project)
    spec = jobstore_spec(project)
    if _store_types(spec) & EMBEDDED_STORES:
        private_dir(project.jobstore_dir)
    store = JobStore.from_dict_spec(spec)
    if connect:
        with store_lock(project, exclusive=True):
            store.connect()
            _create_collections(project, store)
    return store


def _create_collections(project, store) -> None:
    """Make every embedded collection exist once, so later writers never race to create it."""
    marker = project.base_dir / ".jobstore-ready"
    if marker.exists() or not _needs_lock(jobstore_spec(project)):
        return
    from maggma.stores import MontyStore

    for s in [store.docs_store, *store.additional_stores.values()]:
        if isinstance(s, MontyStore):
            s._collection.insert_one({"_jfr_init": True})
            s._collection.delete_many({"_jfr_init": True})
    marker.write_text("ok\n")


def migrate(project, sample: int = 100, batch: int = 1000, log=print) -> dict:
    """Copy the MontyStore an earlier jfr made into the embedded SQLite store, then switch to it.

    The copy goes to a new file that takes the store's place only once the
    document counts of every collection agree and ``sample`` outputs read back
    the same from both; the montydb files are then renamed ``*.migrated``.
    Run it with no runner working on the project.

    Returns
    -------
    dict
        Documents copied per collection, and how many outputs were compared.
    """
    import random

    from jobflow import JobStore
    from monty.json import jsanitize

    import jfr_lib.sqlite_store  # noqa: F401
    from jfr_lib.errors import JfrError

    if project.jobstore is not None:
        raise JfrError(f"{project.path}: the project file names its own JobStore: nothing to migrate")
    if not legacy_monty(project):
        raise JfrError(f"{project.jobstore_dir}: no MontyStore of an earlier jfr to migrate")
    folder = project.jobstore_dir
    partial = folder / f"{SQLITE_NAME}.partial.db"
    for path in (partial, Path(f"{partial}-wal"), Path(f"{partial}-shm")):
        path.unlink(missing_ok=True)  # left by a migration that was interrupted
    source = get_jobstore(project)
    target = JobStore.from_dict_spec(_sqlite_spec(str(folder), f"{SQLITE_NAME}.partial"))
    target.connect()
    pairs = [("docs", source.docs_store, target.docs_store, ["uuid", "index"])]
    pairs += [(n, s, target.additional_stores[n], "blob_uuid") for n, s in source.additional_stores.items()]
    copied = {}
    with store_lock(project, exclusive=False):
        for name, src, dst, key in pairs:
            n, chunk = 0, []
            for doc in src.query():
                doc.pop("_id", None)
                chunk.append(doc)
                if len(chunk) >= batch:
                    dst.update(chunk, key=key)
                    n, chunk = n + len(chunk), []
            if chunk:
                dst.update(chunk, key=key)
                n += len(chunk)
            if dst.count() != src.count():
                raise JfrError(f"{name}: {src.count()} documents in the MontyStore but {dst.count()} copied")
            copied[name] = n
            log(f"{name}: {n} documents copied")
        keys = [(d["uuid"], d["index"]) for d in source.docs_store.query(properties=["uuid", "index"])]
        checked = random.sample(keys, min(sample, len(keys)))
        for uuid, index in checked:
            old = jsanitize(source.get_output(uuid, which=index, load=True), strict=True, allow_bson=True)
            new = jsanitize(target.get_output(uuid, which=index, load=True), strict=True, allow_bson=True)
            if old != new:
                raise JfrError(f"output of {uuid} (index {index}) differs after the copy: nothing switched")
    source.close()
    target.close()
    os.replace(partial, folder / f"{SQLITE_NAME}.db")
    for name in ("monty.storage.cfg", ".monty.storage", "jfr"):
        if (folder / name).exists():
            os.replace(folder / name, folder / f"{name}.migrated")
    log(f"{len(checked)} outputs read back the same; the project now uses {folder / f'{SQLITE_NAME}.db'}")
    return {"copied": copied, "compared": len(checked)}
