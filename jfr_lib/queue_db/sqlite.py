"""The embedded queue database: one SQLite file, WAL mode, indexed columns.

Searchable fields live in columns with indexes; the rest of each document is a
JSON text column. Every write that reads first runs inside ``BEGIN IMMEDIATE``,
which takes the database's write lock before reading, so two processes can never
both act on what they read (a claim is one ``UPDATE ... RETURNING``).
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
from contextlib import contextmanager
from pathlib import Path

from jfr_lib.errors import QueueDBError
from jfr_lib.private import private_dir, private_file
from jfr_lib.queue_db.base import (
    ANY,
    FLOW_COLUMNS,
    JOB_COLUMNS,
    SCHEMA_VERSION,
    UPDATED_DAY,
    QueueDB,
    check_query,
    now_iso,
)

#: document field -> SQL column (``index`` is a keyword in SQL).
_JOB_SQL = {c: ("idx" if c == "index" else c) for c in JOB_COLUMNS}
_FLOW_SQL = {c: c for c in FLOW_COLUMNS}

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS jobs (
    db_id INTEGER PRIMARY KEY AUTOINCREMENT,
    uuid TEXT NOT NULL,
    idx INTEGER NOT NULL,
    name TEXT,
    state TEXT NOT NULL,
    worker TEXT,
    priority INTEGER NOT NULL DEFAULT 0,
    flow_uuid TEXT NOT NULL,
    lock_id TEXT,
    lock_time REAL,
    retry_time REAL,
    created_on TEXT NOT NULL,
    updated_on TEXT NOT NULL,
    doc TEXT NOT NULL,
    UNIQUE (uuid, idx)
);
CREATE INDEX IF NOT EXISTS jobs_state ON jobs (state, priority DESC, db_id);
CREATE INDEX IF NOT EXISTS jobs_worker_state ON jobs (worker, state);
CREATE INDEX IF NOT EXISTS jobs_lock ON jobs (lock_id) WHERE lock_id IS NOT NULL;
CREATE INDEX IF NOT EXISTS jobs_updated ON jobs (updated_on);
CREATE INDEX IF NOT EXISTS jobs_name ON jobs (name);
CREATE TABLE IF NOT EXISTS job_parents (
    child_db_id INTEGER NOT NULL REFERENCES jobs (db_id) ON DELETE CASCADE,
    parent_uuid TEXT NOT NULL,
    tolerant INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (child_db_id, parent_uuid)
);
CREATE INDEX IF NOT EXISTS job_parents_parent ON job_parents (parent_uuid);
CREATE TABLE IF NOT EXISTS flows (
    db_id INTEGER PRIMARY KEY AUTOINCREMENT,
    uuid TEXT NOT NULL UNIQUE,
    name TEXT,
    state TEXT NOT NULL,
    created_on TEXT NOT NULL,
    updated_on TEXT NOT NULL,
    doc TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS flows_state ON flows (state);
"""


#: Indexes added after the first schema; every open adds those a database lacks.
_INDEXES = {
    # a flow's states by skip scan (refresh_flow_state), its jobs (flow info, delete)
    "jobs_flow_state": "CREATE INDEX jobs_flow_state ON jobs (flow_uuid, state)",
    # finished jobs by time (flow report per day, the release sweep at runner start)
    "jobs_state_updated": "CREATE INDEX jobs_state_updated ON jobs (state, updated_on)",
    # flows that ended by time (the notifier's look)
    "flows_state_updated": "CREATE INDEX flows_state_updated ON flows (state, updated_on)",
}


def _where(query: dict | None, mapping: dict) -> tuple:
    """SQL WHERE clause and parameters for a query dict (see the base module)."""
    query = query or {}
    check_query(query, mapping)
    clauses, params = [], []
    for key, value in query.items():
        if key == "retry_due":
            clauses.append("(retry_time IS NULL OR retry_time <= ?)")
            params.append(value)
            continue
        if key == "locked":
            clauses.append("lock_id IS NOT NULL" if value else "lock_id IS NULL")
            continue
        if key in ("name_glob", "updated_since", "updated_until"):
            clauses.append({"name_glob": "name GLOB ?", "updated_since": "updated_on >= ?",
                            "updated_until": "updated_on < ?"}[key])  # fmt: skip
            params.append(value)
            continue
        col = mapping[key]
        if value is None:
            clauses.append(f"{col} IS NULL")
        elif isinstance(value, (list, tuple, set, frozenset)):
            values = [str(v) if key == "state" else v for v in value]
            if not values:
                clauses.append("0")
                continue
            clauses.append(f"{col} IN ({','.join('?' * len(values))})")
            params.extend(values)
        else:
            clauses.append(f"{col} = ?")
            params.append(str(value) if key == "state" else value)
    return (" WHERE " + " AND ".join(clauses) if clauses else ""), params


def _order(sort, mapping: dict) -> str:
    if not sort:
        return ""
    parts = []
    for key, direction in sort:
        if key not in mapping:
            raise ValueError(f"cannot sort on {key!r}")
        parts.append(f"{mapping[key]} {'DESC' if direction < 0 else 'ASC'}")
    return " ORDER BY " + ", ".join(parts)


#: The distinct states of a flow's jobs, one index seek each (a skip scan of
#: (flow_uuid, state)): the cost is the number of states, not of jobs.
_FLOW_STATES = """
WITH RECURSIVE present(state) AS (
    SELECT MIN(state) FROM jobs WHERE flow_uuid = ?1
    UNION ALL
    SELECT (SELECT MIN(state) FROM jobs WHERE flow_uuid = ?1 AND state > present.state)
    FROM present WHERE present.state IS NOT NULL
)
SELECT state FROM present WHERE state IS NOT NULL
"""


class SQLiteQueueDB(QueueDB):
    """Queue database in one SQLite file.

    Parameters
    ----------
    path
        The database file; created (with its folder) when missing.
    timeout
        Seconds to wait for another process's write lock.
    """

    def __init__(self, path, timeout: float = 60.0):
        self.path = Path(path)
        try:
            if not self.path.exists():
                self._create(timeout)
            elif self.path.stat().st_size == 0:  # SQLite would quietly make a new, empty queue of it
                raise QueueDBError(f"{self.path}: the queue database is empty (0 bytes: truncated?); restore "
                                   "a backup with `jfr backup restore`, or remove the file to start an empty "
                                   "queue")  # fmt: skip
            self.conn = sqlite3.connect(
                str(self.path), timeout=timeout, isolation_level=None, check_same_thread=False
            )
            self.conn.row_factory = sqlite3.Row
            self.conn.execute(f"PRAGMA busy_timeout={int(timeout * 1000)}")
            self.conn.execute("PRAGMA foreign_keys=ON")
            self._ensure_schema()
        except sqlite3.DatabaseError as exc:
            raise QueueDBError(f"{self.path}: cannot open the queue database: {exc}") from None
        except OSError as exc:
            raise QueueDBError(f"{self.path}: cannot open the queue database: {exc.strerror}") from None

    def _create(self, timeout: float) -> None:
        """Make a new database whole, under a temporary name, then give it its name.

        A file there is always a complete database: one found empty was truncated.
        """
        private_dir(self.path.parent)
        tmp = self.path.with_name(f"{self.path.name}.new{os.getpid()}-{os.urandom(4).hex()}")  # threads too
        conn = sqlite3.connect(str(tmp), timeout=timeout, isolation_level=None)
        try:
            if conn.execute("PRAGMA journal_mode=WAL").fetchone()[0].lower() != "wal":
                raise QueueDBError(f"{self.path}: cannot switch the database to WAL mode")
            conn.execute("BEGIN IMMEDIATE")
            for statement in _SCHEMA.split(";"):
                if statement.strip():
                    conn.execute(statement)
            conn.execute("INSERT INTO meta (key, value) VALUES ('schema_version', ?)", (json.dumps(SCHEMA_VERSION),))
            conn.execute("COMMIT")
        finally:
            conn.close()  # the last connection folds the WAL into the file
        private_file(tmp)
        try:
            os.link(tmp, self.path)  # fails when another process made it first: theirs stands
        except FileExistsError:
            pass
        finally:
            os.unlink(tmp)

    def _ensure_schema(self):
        try:
            row = self.conn.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
        except sqlite3.OperationalError:
            row = None
        if row is None:
            if self.conn.execute("PRAGMA journal_mode=WAL").fetchone()[0].lower() != "wal":
                raise QueueDBError(f"{self.path}: cannot switch the database to WAL mode")
            with self._write() as c:
                for statement in _SCHEMA.split(";"):
                    if statement.strip():
                        c.execute(statement)
                c.execute(
                    "INSERT OR IGNORE INTO meta (key, value) VALUES ('schema_version', ?)",
                    (json.dumps(SCHEMA_VERSION),),
                )
            version = SCHEMA_VERSION
        else:
            version = json.loads(row[0])
        if version > SCHEMA_VERSION:
            raise QueueDBError(
                f"{self.path}: schema version {version} is newer than this jfr knows "
                f"({SCHEMA_VERSION}): upgrade jfr"
            )
        # FULL: a transaction reported committed survives a power cut.
        self.conn.execute("PRAGMA synchronous=FULL")
        self._ensure_indexes()

    def _ensure_indexes(self):
        """Add what databases made by an older jfr lack (built once, then only looked up)."""
        have = {r[0] for r in self.conn.execute("SELECT name FROM sqlite_master WHERE type = 'index'")}
        wanted = {name: sql for name, sql in _INDEXES.items() if name not in have}
        tolerant = any(r[1] == "tolerant" for r in self.conn.execute("PRAGMA table_info(job_parents)"))
        if wanted or "jobs_flow" in have or not tolerant:
            with self._write() as c:  # looked at again under the write lock: another process may have been first
                have = {r[0] for r in c.execute("SELECT name FROM sqlite_master WHERE type = 'index'")}
                tolerant = any(r[1] == "tolerant" for r in c.execute("PRAGMA table_info(job_parents)"))
                for name, sql in _INDEXES.items():
                    if name not in have:
                        c.execute(sql)
                c.execute("DROP INDEX IF EXISTS jobs_flow")  # the (flow_uuid, state) index covers it
                if not tolerant:  # whether the child runs without its parents' outputs, beside each link
                    c.execute("ALTER TABLE job_parents ADD COLUMN tolerant INTEGER NOT NULL DEFAULT 0")
                    c.execute("UPDATE job_parents SET tolerant = 1 WHERE child_db_id IN (SELECT db_id FROM jobs "
                              "WHERE json_extract(doc, '$.allow_failed_parents'))")  # fmt: skip

    @contextmanager
    def _write(self):
        """A transaction holding the write lock from its first statement."""
        c = self.conn
        c.execute("BEGIN IMMEDIATE")
        try:
            yield c
        except BaseException:
            c.execute("ROLLBACK")
            raise
        c.execute("COMMIT")

    def close(self):
        self.conn.close()

    # --- meta -------------------------------------------------------------------
    def get_meta(self, key, default=None):
        row = self.conn.execute("SELECT value FROM meta WHERE key=?", (key,)).fetchone()
        return default if row is None else json.loads(row[0])

    def set_meta(self, key, value):
        with self._write() as c:
            c.execute(
                "INSERT INTO meta (key, value) VALUES (?, ?) "
                "ON CONFLICT (key) DO UPDATE SET value=excluded.value",
                (key, json.dumps(value)),
            )

    def swap_meta(self, key, expected_token, value):
        with self._write() as c:
            row = c.execute("SELECT value FROM meta WHERE key=?", (key,)).fetchone()
            current = json.loads(row[0]) if row else None
            token = current.get("token") if isinstance(current, dict) else None
            if token != expected_token:
                return False
            c.execute(
                "INSERT INTO meta (key, value) VALUES (?, ?) "
                "ON CONFLICT (key) DO UPDATE SET value=excluded.value",
                (key, json.dumps(value)),
            )
            return True

    # --- documents <-> rows -----------------------------------------------------
    @staticmethod
    def _job(row) -> dict:
        doc = json.loads(row["doc"])
        for field, col in _JOB_SQL.items():
            doc[field] = row[col]
        return doc

    @staticmethod
    def _flow(row) -> dict:
        doc = json.loads(row["doc"])
        for field in FLOW_COLUMNS:
            doc[field] = row[field]
        return doc

    @staticmethod
    def _split(doc: dict, mapping: dict) -> tuple:
        cols = {mapping[k]: (str(v) if k == "state" else v) for k, v in doc.items() if k in mapping}
        rest = {k: v for k, v in doc.items() if k not in mapping}
        return cols, json.dumps(rest)

    def _insert_job(self, c, job: dict, ignore: bool) -> int:
        job = dict(job)
        job.pop("db_id", None)
        stamp = now_iso()
        job.setdefault("created_on", stamp)
        job.setdefault("updated_on", stamp)
        job.setdefault("priority", 0)
        cols, rest = self._split(job, _JOB_SQL)
        names = [*cols, "doc"]
        verb = "INSERT OR IGNORE" if ignore else "INSERT"
        cur = c.execute(
            f"{verb} INTO jobs ({','.join(names)}) VALUES ({','.join('?' * len(names))})",
            [*cols.values(), rest],
        )
        if cur.rowcount == 0:
            row = c.execute(
                "SELECT db_id FROM jobs WHERE uuid=? AND idx=?", (job["uuid"], job["index"])
            ).fetchone()
            return row[0]
        db_id = cur.lastrowid
        tolerant = int(bool(job.get("allow_failed_parents")))
        c.executemany(
            "INSERT OR IGNORE INTO job_parents (child_db_id, parent_uuid, tolerant) VALUES (?, ?, ?)",
            [(db_id, p, tolerant) for p in job.get("parents", [])],
        )
        return db_id

    # --- inserts ----------------------------------------------------------------
    def insert_flow(self, flow, jobs):
        with self._write() as c:
            if c.execute("SELECT 1 FROM flows WHERE uuid=?", (flow["uuid"],)).fetchone():
                raise KeyError(flow["uuid"])
            uuids = sorted({j["uuid"] for j in jobs})
            for i in range(0, len(uuids), 500):
                chunk = uuids[i : i + 500]
                row = c.execute(
                    f"SELECT uuid FROM jobs WHERE uuid IN ({','.join('?' * len(chunk))}) LIMIT 1",
                    chunk,
                ).fetchone()
                if row:
                    raise KeyError(row[0])
            stamp = now_iso()
            flow = {"created_on": stamp, "updated_on": stamp, **flow}
            flow.pop("db_id", None)
            cols, rest = self._split(flow, _FLOW_SQL)
            names = [*cols, "doc"]
            c.execute(
                f"INSERT INTO flows ({','.join(names)}) VALUES ({','.join('?' * len(names))})",
                [*cols.values(), rest],
            )
            return [self._insert_job(c, j, ignore=False) for j in jobs]

    def insert_jobs(self, jobs):
        with self._write() as c:
            return [self._insert_job(c, j, ignore=True) for j in jobs]

    # --- reads ------------------------------------------------------------------
    def find_jobs(self, query=None, sort=None, limit=0, skip=0):
        where, params = _where(query, _JOB_SQL)
        order = _order(sort, _JOB_SQL)
        sql = f"SELECT * FROM jobs{where}{order}"
        if skip:  # the skipped rows are stepped over by their db_id: none of their documents is copied
            sql = (f"SELECT * FROM jobs WHERE db_id IN (SELECT db_id FROM jobs{where}{order} "
                   f"LIMIT {int(limit) or -1} OFFSET {int(skip)}){order}")  # fmt: skip
        elif limit:
            sql += f" LIMIT {int(limit)}"
        return [self._job(r) for r in self.conn.execute(sql, params)]

    def count_jobs(self, query=None):
        where, params = _where(query, _JOB_SQL)
        return self.conn.execute(f"SELECT COUNT(*) FROM jobs{where}", params).fetchone()[0]

    def count_states(self, query=None):
        where, params = _where(query, _JOB_SQL)
        rows = self.conn.execute(
            f"SELECT state, COUNT(*) FROM jobs{where} GROUP BY state", params
        ).fetchall()
        return {r[0]: r[1] for r in rows}

    def count_by(self, fields, query=None):
        where, params = _where(query, _JOB_SQL)
        cols = [("substr(updated_on, 1, 10)" if f == UPDATED_DAY else _JOB_SQL[f]) for f in fields]
        sql = f"SELECT {', '.join(cols)}, COUNT(*) FROM jobs{where} GROUP BY {', '.join(cols)}"
        return {tuple(r[:-1]): r[-1] for r in self.conn.execute(sql, params)}

    def children(self, uuid):
        rows = self.conn.execute(
            "SELECT jobs.* FROM jobs JOIN job_parents ON jobs.db_id = job_parents.child_db_id "
            "WHERE job_parents.parent_uuid = ? ORDER BY jobs.db_id",
            (uuid,),
        )
        return [self._job(r) for r in rows]

    def waiting_children(self, uuid):
        rows = self.conn.execute(
            "SELECT jobs.db_id, job_parents.tolerant FROM jobs "
            "JOIN job_parents ON jobs.db_id = job_parents.child_db_id "
            "WHERE job_parents.parent_uuid = ? AND jobs.state = 'WAITING' ORDER BY jobs.db_id",
            (uuid,),
        )
        return [{"db_id": r[0], "allow_failed_parents": bool(r[1])} for r in rows]

    def parents_done(self, db_id, done_states):
        states = [str(s) for s in done_states]
        row = self.conn.execute(
            "SELECT 1 FROM job_parents AS p JOIN jobs AS j ON j.uuid = p.parent_uuid "
            "WHERE p.child_db_id = ? AND j.idx = (SELECT MAX(idx) FROM jobs WHERE uuid = p.parent_uuid) "
            f"AND j.state NOT IN ({','.join('?' * len(states))}) LIMIT 1",
            [int(db_id), *states],
        ).fetchone()
        return row is None

    def latest_states(self, uuids):
        uuids = list(set(uuids))
        out = {}
        for i in range(0, len(uuids), 500):
            chunk = uuids[i : i + 500]
            rows = self.conn.execute(
                "SELECT uuid, state FROM jobs AS j WHERE uuid IN "
                f"({','.join('?' * len(chunk))}) AND idx = "
                "(SELECT MAX(idx) FROM jobs WHERE uuid = j.uuid)",
                chunk,
            )
            out.update({r[0]: r[1] for r in rows})
        return out

    def count_flows(self, query=None):
        where, params = _where(query, _FLOW_SQL)
        return self.conn.execute(f"SELECT COUNT(*) FROM flows{where}", params).fetchone()[0]

    def find_flows(self, query=None, sort=None, limit=0):
        where, params = _where(query, _FLOW_SQL)
        sql = f"SELECT * FROM flows{where}{_order(sort, _FLOW_SQL)}"
        if limit:
            sql += f" LIMIT {int(limit)}"
        return [self._flow(r) for r in self.conn.execute(sql, params)]

    # --- writes -----------------------------------------------------------------
    def claim_job(self, query, lock_id, sort=None):
        where, params = _where({**query, "lock_id": None}, _JOB_SQL)
        order = _order(sort or [("priority", -1), ("db_id", 1)], _JOB_SQL)
        with self._write() as c:
            row = c.execute(
                "UPDATE jobs SET lock_id = ?, lock_time = ? WHERE db_id = "
                f"(SELECT db_id FROM jobs{where}{order} LIMIT 1) RETURNING *",
                [lock_id, time.time(), *params],
            ).fetchone()
        return None if row is None else self._job(row)

    def update_job(self, db_id, changes, state=ANY, lock_id=ANY):
        with self._write() as c:
            return self._update(c, db_id, changes, state, lock_id)

    def update_jobs(self, db_ids, changes, state=ANY):
        with self._write() as c:  # one transaction, one sync to disk, however many jobs
            return [i for i in db_ids if self._update(c, i, changes, state, ANY)]

    def _update(self, c, db_id, changes, state, lock_id) -> bool:
        conds, params = ["db_id = ?"], [int(db_id)]
        if state is not ANY:
            conds.append("state = ?")
            params.append(str(state))
        if lock_id is not ANY:
            conds.append("lock_id IS ?")
            params.append(lock_id)
        changes = {**changes, "updated_on": now_iso()}
        cols = {_JOB_SQL[k]: (str(v) if k == "state" else v) for k, v in changes.items() if k in _JOB_SQL}
        rest = {k: v for k, v in changes.items() if k not in _JOB_SQL}
        where = " AND ".join(conds)
        stamp = "state" in changes and "state_on" not in changes  # the time of a change of state
        if rest:
            row = c.execute(f"SELECT doc, state FROM jobs WHERE {where}", params).fetchone()
            if row is None:
                return False
            doc = json.loads(row[0])
            doc.update(rest)
            if stamp and row[1] != str(changes["state"]):
                doc["state_on"] = changes["updated_on"]
            cols["doc"] = json.dumps(doc)
            if "parents" in rest:
                c.execute("DELETE FROM job_parents WHERE child_db_id = ?", (int(db_id),))
                c.executemany(
                    "INSERT INTO job_parents (child_db_id, parent_uuid, tolerant) VALUES (?, ?, ?)",
                    [(int(db_id), p, int(bool(doc.get("allow_failed_parents")))) for p in rest["parents"]],
                )
        sets = ", ".join(f"{k} = ?" for k in cols)
        values = list(cols.values())
        if stamp and not rest:  # the expressions read the row before the update
            sets += ", doc = CASE WHEN state = ? THEN doc ELSE json_set(doc, '$.state_on', ?) END"
            values += [str(changes["state"]), changes["updated_on"]]
        cur = c.execute(f"UPDATE jobs SET {sets} WHERE {where}", [*values, *params])
        return cur.rowcount == 1

    def add_parents(self, child_db_ids, parent_uuids):
        parent_uuids = list(parent_uuids)
        with self._write() as c:
            for db_id in child_db_ids:
                row = c.execute("SELECT doc FROM jobs WHERE db_id = ?", (db_id,)).fetchone()
                if row is None:
                    continue
                doc = json.loads(row[0])
                merged = list(dict.fromkeys([*doc.get("parents", []), *parent_uuids]))
                doc["parents"] = merged
                c.execute(
                    "UPDATE jobs SET doc = ?, updated_on = ? WHERE db_id = ?",
                    (json.dumps(doc), now_iso(), db_id),
                )
                c.executemany(
                    "INSERT OR IGNORE INTO job_parents (child_db_id, parent_uuid, tolerant) VALUES (?, ?, ?)",
                    [(db_id, p, int(bool(doc.get("allow_failed_parents")))) for p in parent_uuids],
                )

    def delete_jobs(self, db_ids):
        ids = [int(i) for i in db_ids]
        removed = 0
        with self._write() as c:
            for i in range(0, len(ids), 500):
                chunk = ids[i : i + 500]
                marks = ",".join("?" * len(chunk))
                c.execute(f"DELETE FROM job_parents WHERE child_db_id IN ({marks})", chunk)
                removed += c.execute(f"DELETE FROM jobs WHERE db_id IN ({marks})", chunk).rowcount
        return removed

    def delete_flow(self, uuid):
        with self._write() as c:
            c.execute("DELETE FROM flows WHERE uuid = ?", (uuid,))

    def update_flow(self, uuid, changes):
        changes = {**changes, "updated_on": now_iso()}
        cols = {k: v for k, v in changes.items() if k in _FLOW_SQL}
        rest = {k: v for k, v in changes.items() if k not in _FLOW_SQL}
        with self._write() as c:
            if rest:
                row = c.execute("SELECT doc FROM flows WHERE uuid = ?", (uuid,)).fetchone()
                if row is None:
                    return
                doc = json.loads(row[0])
                doc.update(rest)
                cols["doc"] = json.dumps(doc)
            sets = ", ".join(f"{k} = ?" for k in cols)
            c.execute(f"UPDATE flows SET {sets} WHERE uuid = ?", [*cols.values(), uuid])

    def refresh_flow_state(self, uuid):
        from jfr_lib.states import flow_state

        with self._write() as c:
            states = [r[0] for r in c.execute(_FLOW_STATES, (uuid,))]
            new = str(flow_state(states))
            c.execute(
                "UPDATE flows SET state = ?, updated_on = ? WHERE uuid = ? AND state != ?",
                (new, now_iso(), uuid, new),
            )
        return new
