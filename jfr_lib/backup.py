"""Backups of a project's data: the queue database and the embedded JobStore, together.

``create`` is consistent while a runner works: the SQLite queue database is
copied with SQLite's online backup API (one snapshot; a MongoDB one is dumped to
extended JSON with pymongo, no server tools needed), and the embedded JobStore
(SQLite files: jfr's own store, or montydb's) is copied the same way, after the
queue database (an output newer than the queue's copy is simply stored again
when its job completes after a restore), holding the JobStore's shared lock
where its writers need one. A backup is a folder with a
``manifest.json``; ``restore`` puts it into a project's data folder, keeping
what was there under ``*.before-restore`` names.
"""

from __future__ import annotations

import json
import shutil
import sqlite3
import time
from datetime import datetime, timezone
from pathlib import Path

from jfr_lib.errors import JfrError, UsageError
from jfr_lib.private import private_dir, private_file

FORMAT = 1
MONGO_FILE = "queue.mongo.json"


def _mongo_dump(project, folder: Path) -> str:
    """A pure-Python dump of the MongoDB queue collections (bson extended JSON)."""
    from bson import json_util

    from jfr_lib.queue_db import open_queue_db

    with open_queue_db(project) as db:
        data = db.dump()
    (folder / MONGO_FILE).write_text(json_util.dumps(data))
    return MONGO_FILE


def _sqlite_copy(source: Path, target: Path) -> None:
    """A consistent copy of a live SQLite file (its WAL included)."""
    src = sqlite3.connect(f"file:{source}?mode=ro", uri=True, timeout=60)
    dst = sqlite3.connect(target)
    private_file(target)
    try:
        src.backup(dst)
    finally:
        dst.close()
        src.close()


def _is_sqlite(path: Path) -> bool:
    try:
        with open(path, "rb") as f:
            return f.read(16) == b"SQLite format 3\x00"
    except OSError:
        return False


def create(project, folder) -> dict:
    """Back the project's queue database and embedded JobStore up into ``folder`` (new or empty)."""
    from jfr_lib.jobstore import embedded as is_embedded
    from jfr_lib.jobstore import store_lock

    folder = Path(folder)
    if folder.exists() and any(folder.iterdir()):
        raise UsageError(f"{folder}: the backup folder must be new or empty")
    private_dir(folder)
    started = time.time()
    if project.queue.backend == "mongodb":
        files = [_mongo_dump(project, folder)]
    else:
        if not project.queue_db_path.exists():
            raise JfrError(f"{project.queue_db_path}: the project has no queue database yet")
        _sqlite_copy(project.queue_db_path, folder / "queue.db")
        files = ["queue.db"]
    embedded = project.jobstore_dir.exists() and is_embedded(project)
    if embedded:
        with store_lock(project, exclusive=False):
            for path in sorted(project.jobstore_dir.rglob("*")):
                if not path.is_file() or path.name.endswith(("-wal", "-shm", "-journal")):
                    continue
                rel = path.relative_to(project.base_dir)
                private_dir((folder / rel).parent)
                if _is_sqlite(path):
                    _sqlite_copy(path, folder / rel)
                else:
                    shutil.copy2(path, folder / rel)
                files.append(str(rel))
    if project.queue.backend == "mongodb":
        data = json.loads((folder / MONGO_FILE).read_text())
        jobs, flows = len(data["jobs"]), len(data["flows"])
    else:
        db = sqlite3.connect(folder / "queue.db")
        try:
            jobs = db.execute("SELECT COUNT(*) FROM jobs").fetchone()[0]
            flows = db.execute("SELECT COUNT(*) FROM flows").fetchone()[0]
        finally:
            db.close()
    manifest = {
        "format": FORMAT, "project": project.name, "queue": project.queue.backend,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"), "jobs": jobs, "flows": flows,
        "embedded_jobstore": embedded, "files": files, "seconds": round(time.time() - started, 2),
    }  # fmt: skip
    (folder / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest


def _inside(root: Path, rel) -> Path:
    """``root / rel``, refusing a path that would leave ``root`` (absolute, ``..``, a link out)."""
    if not isinstance(rel, str) or not rel or Path(rel).is_absolute() or ".." in Path(rel).parts:
        raise UsageError(f"manifest.json: file {rel!r} is not a path inside the backup")
    path = Path(root) / rel
    if not path.resolve().is_relative_to(Path(root).resolve()):
        raise UsageError(f"manifest.json: file {rel!r} leads outside {root}")
    return path


def restore(project, folder) -> dict:
    """Restore a backup into the project's data folder (refused while a runner holds the lease)."""
    from jfr_lib import lease

    folder = Path(folder)
    try:
        manifest = json.loads((folder / "manifest.json").read_text())
    except (OSError, ValueError) as exc:
        raise UsageError(f"{folder}: not a jfr backup (manifest.json: {exc})") from None
    if manifest.get("format") != FORMAT:
        raise UsageError(f"{folder}: backup format {manifest.get('format')} is not supported")
    if manifest.get("queue", "sqlite") != project.queue.backend:
        raise UsageError(f"{folder}: a backup of a {manifest.get('queue', 'sqlite')} queue database cannot be "
                         f"restored into a {project.queue.backend} one")  # fmt: skip
    for rel in manifest.get("files") or []:
        _inside(folder, rel)  # checked before anything is touched
        _inside(project.base_dir, rel)
    if project.queue.backend == "mongodb" or project.queue_db_path.exists():
        from jfr_lib.queue_db import open_queue_db

        with open_queue_db(project) as db:
            holder = lease.read(db)
            if lease.status(holder) == lease.RUNNING:
                raise JfrError(f"a runner is running on {holder['host']} (pid {holder['pid']}): stop it first")
    if project.queue.backend == "mongodb":
        from bson import json_util

        from jfr_lib.queue_db import open_queue_db

        with open_queue_db(project) as db:
            db.load(json_util.loads((folder / MONGO_FILE).read_text()))
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    project.base_dir.mkdir(parents=True, exist_ok=True)
    targets = [] if project.queue.backend == "mongodb" else [project.queue_db_path]
    if manifest.get("embedded_jobstore"):
        targets.append(project.jobstore_dir)
    for target in targets:
        for path in (target, Path(f"{target}-wal"), Path(f"{target}-shm")):
            if path.exists():
                path.rename(path.with_name(f"{path.name}.before-restore-{stamp}"))
    if project.queue.backend == "sqlite":
        _sqlite_copy(folder / "queue.db", project.queue_db_path)
    for rel in manifest["files"]:
        if rel in ("queue.db", MONGO_FILE):
            continue
        (project.base_dir / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(folder / rel, project.base_dir / rel)
    return manifest
