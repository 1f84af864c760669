"""A maggma store kept in one SQLite file and searched through SQL indexes: jfr's embedded JobStore.

maggma's ``MontyStore`` (montydb) also keeps its documents in SQLite, but it scans and decodes every
document on every query: ``JobStore.get_output`` took 5.7 s at 100,000 outputs. ``SQLiteStore``
keeps, beside each encoded document, one column per *indexed field* (by default what jobflow's
JobStore looks up: ``uuid``, ``index``, ``blob_uuid``, ``job_uuid``, ``job_index``; also the store
key and whatever :meth:`SQLiteStore.ensure_index` adds), so those lookups read a few rows through an
SQL index.

A query runs in two steps: an SQL pre-filter, built from the criteria, that may keep extra rows
but never drops a match (:mod:`jfr_lib.sqlite_store_query`); then montydb's query engine on the
decoded documents, for exact MongoDB semantics. Sorting happens in SQL when it can be exact, else in
Python with MongoDB's order.

Several processes may use one file at once without any lock of ours: WAL lets readers run beside
the writer, every update is one ``BEGIN IMMEDIATE`` transaction, and a connection is reopened in a
forked child, since SQLite connections must not cross a fork.
"""

from __future__ import annotations

import json
import os
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from itertools import groupby as group_sorted
from itertools import islice
from pathlib import Path

from maggma.core import Sort, Store, StoreError
from monty.json import jsanitize
from montydb.engine.queries import QueryFilter
from montydb.engine.weighted import Weighted
from pydash import get, has, set_

from jfr_lib import sqlite_store_query as q

#: Fields indexed unless the ``indexed`` argument says otherwise: what jobflow's JobStore looks up.
DEFAULT_INDEXED = ("uuid", "index", "blob_uuid", "job_uuid", "job_index")
# Connections a forked child inherited. Closing one in the child could checkpoint and delete the
# WAL under the parent's feet, and letting it be garbage-collected would close it: keep them.
_INHERITED: list = []


class SQLiteStore(Store):
    """A maggma ``Store`` in a SQLite file, with indexed lookups on chosen fields.

    Parameters
    ----------
    collection_name
        The collection, one table of the file.
    database_path
        The folder of the file (created when missing).
    database_name
        The file is ``database_path/database_name.db``; several collections may share it.
    key
        The field (or fields) identifying a document in :meth:`update`; always indexed.
    indexed
        Fields to index, instead of :data:`DEFAULT_INDEXED`.
    timeout
        Seconds to wait for another process's write lock.
    **kwargs
        Passed to ``maggma.core.Store`` (``last_updated_field``, ``validator``...).
    """

    def __init__(self, collection_name: str, database_path, database_name: str = "jobstore",
                 key="task_id", indexed: list | None = None, timeout: float = 60.0, **kwargs):  # fmt: skip
        if collection_name == q.FIELDS_TABLE or collection_name.startswith("sqlite_"):
            raise ValueError(f"{collection_name!r} is reserved and cannot name a collection")
        self.collection_name = collection_name
        self.database_path = str(database_path)
        self.database_name = database_name
        self.indexed = None if indexed is None else list(indexed)
        self.timeout = timeout
        self.kwargs = kwargs
        self._db: sqlite3.Connection | None = None
        self._pid: int | None = None
        self._columns: dict = {}  # indexed field -> quoted column, as recorded in FIELDS_TABLE
        self._schema = None  # the schema_version _columns was read at
        self._table = q.quote(collection_name)
        super().__init__(key=key, **kwargs)

    @property
    def path(self) -> Path:
        """The SQLite file."""
        return Path(self.database_path) / f"{self.database_name}.db"

    @property
    def name(self) -> str:
        """A string naming this data source."""
        return f"sqlite://{self.path}/{self.collection_name}"

    @property
    def _collection(self) -> sqlite3.Connection:
        """The connection to the file (reopened first in a forked child)."""
        return self._connection()

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, SQLiteStore):
            return False
        return (self.path.resolve(), self.collection_name) == (other.path.resolve(), other.collection_name)

    def __hash__(self) -> int:
        return hash((str(self.path.resolve()), self.collection_name))

    # ---------------------------------------------------------------- connection and schema

    def connect(self, force_reset: bool = False):
        """Open the file and make sure the table and its indexed columns exist.

        Parameters
        ----------
        force_reset
            Drop the collection (all its documents) first.
        """
        if self._db is not None and self._pid == os.getpid() and not force_reset:
            return
        self._open()
        if force_reset:
            with self._write() as db:
                q.create_tables(db, self.collection_name)
                db.execute(f"DROP TABLE {self._table}")
                db.execute(f"DELETE FROM {q.FIELDS_TABLE} WHERE collection = ?", (self.collection_name,))
        self._prepare()

    def close(self):
        """Close the connection (a connection inherited through a fork is left alone)."""
        if self._db is not None:
            if self._pid == os.getpid():
                self._db.close()
            else:
                _INHERITED.append(self._db)
        self._db = None

    def _open(self):
        from jfr_lib.private import private_dir, private_file

        self.close()
        private_dir(self.path.parent)
        db = sqlite3.connect(str(self.path), timeout=self.timeout, isolation_level=None)
        private_file(self.path)  # outputs are the user's business only (SQLite makes it 0644)
        db.execute(f"PRAGMA busy_timeout = {int(self.timeout * 1000)}")
        # For a new file only: 4 KiB pages hold a single 2-3 KB output each and waste a third of the file.
        db.execute("PRAGMA page_size = 8192")
        if db.execute("PRAGMA journal_mode = WAL").fetchone()[0].lower() != "wal":
            db.close()
            raise StoreError(f"{self.path}: cannot switch the database to WAL mode")
        # FULL: jfr records a job as finished after writing its output; with NORMAL a power cut
        # could lose the output but keep the record. One fsync per update is cheap at that rate.
        db.execute("PRAGMA synchronous = FULL")
        self._db, self._pid = db, os.getpid()

    def _connection(self) -> sqlite3.Connection:
        if self._db is None:
            raise StoreError(f"Must connect {type(self).__name__} before attempting to use it")
        if self._pid != os.getpid():
            self._open()
            self._prepare()
        return self._db

    def _wanted(self) -> list:
        keys = self.key if isinstance(self.key, list) else [self.key]
        base = DEFAULT_INDEXED if self.indexed is None else self.indexed
        return list(dict.fromkeys([*base, *keys]))

    def _prepare(self):
        """Add the columns and indexes this store wants; without the write lock if none is missing."""
        db, wanted = self._db, self._wanted()
        have = q.recorded_fields(db, self.collection_name)
        indexes = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'index'")}
        if set(wanted) <= have and set(q.index_specs(self.collection_name, have)) <= indexes:
            self._load_fields(db)
            return
        with self._write() as db:
            self._add_fields(db, wanted)

    def _add_fields(self, db, fields):
        q.add_fields(db, self.collection_name, fields)
        self._load_fields(db)

    def _load_fields(self, db):
        self._columns = {f: q.quote("f_" + f) for f in sorted(q.recorded_fields(db, self.collection_name))}
        self._schema = db.execute("PRAGMA schema_version").fetchone()[0]

    @contextmanager
    def _write(self):
        """A transaction holding the write lock from its start, with the fields as now recorded."""
        db = self._connection()
        db.execute("BEGIN IMMEDIATE")
        try:
            # Another process may have indexed more fields: our rows must fill those columns too.
            if db.execute("PRAGMA schema_version").fetchone()[0] != self._schema:
                self._load_fields(db)
            yield db
        except BaseException:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")

    @contextmanager
    def _snapshot(self, db):
        """Several reads that must see the same state."""
        began = not db.in_transaction
        if began:
            db.execute("BEGIN")
        try:
            yield
        finally:
            if began and db.in_transaction:
                db.execute("COMMIT")

    # ---------------------------------------------------------------- reading

    def _matching(self, db, criteria: dict, order: str = "pk", extra=None) -> Iterator[tuple[int, dict]]:
        """Yield ``(pk, document)`` for the documents matching ``criteria`` exactly, streamed.

        The candidates' keys are read first, then their documents in growing batches, so that no
        SQL statement stays open between two documents: one would pin an old snapshot, which hides
        the caller's own writes and makes a later write transaction fail if another process wrote.
        Like a MongoDB cursor, this is no snapshot: documents changed meanwhile are checked as they
        are now, documents removed meanwhile are skipped.
        """
        match = QueryFilter(criteria) if criteria else None
        where, params = q.where(criteria, self._columns, extra)
        pks = [r[0] for r in db.execute(f"SELECT pk FROM {self._table}{where} ORDER BY {order}", params)]
        start, size = 0, 1  # query_one reads one document, a long scan few statements
        while start < len(pks):
            batch = pks[start : start + size]
            rows = dict(db.execute(f"SELECT pk, doc FROM {self._table} WHERE pk IN (SELECT value FROM json_each(?))",
                                   (json.dumps(batch),)))  # fmt: skip
            for pk in batch:
                doc = q.decode(rows[pk]) if pk in rows else None
                if doc is not None and (match is None or match(doc)):
                    yield pk, doc
            start, size = start + size, min(size * 4, 256)

    def _sql_sorts(self, db, criteria: dict, sort: list) -> bool:
        """Whether SQL orders the candidates as MongoDB would: indexed fields, no complex value."""
        if not all(f in self._columns for f, _ in sort):
            return False
        where, params = q.where(criteria, self._columns, q.any_complex(self._columns, [f for f, _ in sort]))
        cursor = db.execute(f"SELECT 1 FROM {self._table}{where} LIMIT 1", params)
        try:
            return cursor.fetchone() is None
        finally:
            cursor.close()

    def query(self, criteria: dict | None = None, properties: dict | list | None = None,
              sort: dict | None = None, skip: int = 0, limit: int = 0) -> Iterator[dict]:  # fmt: skip
        """Query the store, lazily.

        Parameters
        ----------
        criteria
            MongoDB criteria.
        properties
            Fields to return (list, or MongoDB projection dict); dotted fields keep their nesting.
        sort
            Field -> 1 (ascending) or -1 (descending), or :class:`maggma.core.Sort`.
        skip, limit
            Documents to skip, and at most how many to return (0: all).

        Returns
        -------
        Iterator[dict]
            The matching documents.

        Raises
        ------
        StoreError
            If the store is not connected.
        """
        return self._query(self._connection(), criteria or {}, properties, sort, skip, limit)

    def _query(self, db, criteria, properties, sort, skip, limit) -> Iterator[dict]:
        items = [(f, Sort(v).value) for f, v in (sort or {}).items()]
        order = "pk"
        if items and self._sql_sorts(db, criteria, items):
            order = ", ".join([*(f"{self._columns[f]} {'DESC' if d < 0 else 'ASC'}" for f, d in items), "pk"])
            items = []
        docs = (doc for _, doc in self._matching(db, criteria, order))
        if items:  # SQL could not order them
            docs = iter(q.sort_docs(list(docs), items))
        for doc in islice(docs, skip, skip + limit if limit else None):
            yield q.project(doc, properties)

    def count(self, criteria: dict | None = None) -> int:
        """The number of documents matching ``criteria`` (all documents if None).

        Equalities and ``$in`` lists of plain values on indexed fields are counted in SQL; other
        criteria are checked on each candidate document.
        """
        db, criteria = self._connection(), criteria or {}
        fields = q.sql_exact_fields(criteria, self._columns)
        if fields is None:
            return sum(1 for _ in self._matching(db, criteria))
        if not fields:
            return db.execute(f"SELECT COUNT(*) FROM {self._table}").fetchone()[0]
        sql, params = q.any_complex(self._columns, fields)
        with self._snapshot(db):
            where, args = q.where(criteria, self._columns, (f"NOT ({sql})", params))
            exact = db.execute(f"SELECT COUNT(*) FROM {self._table}{where}", args).fetchone()[0]
            return exact + sum(1 for _ in self._matching(db, criteria, extra=(sql, params)))

    def distinct(self, field: str, criteria: dict | None = None, all_exist: bool = False) -> list:
        """The distinct values of a (possibly dotted) ``field`` in the documents matching ``criteria``.

        Array elements count one by one, as in MongoDB; values come in order of first appearance.
        ``all_exist`` is unused, as in maggma's stores.
        """
        seen: dict = {}
        for _, doc in self._matching(self._connection(), criteria or {}):
            for value in q.leaf_values(doc, field):
                seen.setdefault(Weighted(value), value)  # BSON equality: 1 == 1.0 but True != 1
        return list(seen.values())

    def groupby(self, keys, criteria: dict | None = None, properties: dict | list | None = None,
                sort: dict | None = None, skip: int = 0, limit: int = 0) -> Iterator[tuple[dict, list]]:  # fmt: skip
        """Yield ``({key: value, ...}, documents)`` per group, as maggma's ``MemoryStore`` does.

        ``keys`` is a field or a list of fields; documents lacking one are left out, and groups come
        in key order. ``properties`` (None: whole documents) and ``sort`` apply to the documents
        of each group; ``skip`` and ``limit`` count groups.
        """
        keys = [keys] if isinstance(keys, str) else list(keys)
        if properties is not None:
            properties = keys + list(properties)
        docs = [d for d in self.query(criteria, properties, sort) if all(has(d, k) for k in keys)]

        def group_key(doc):
            return tuple(Weighted(get(doc, k)) for k in keys)

        docs.sort(key=group_key)  # stable: the requested order holds inside each group
        for _, group in islice(group_sorted(docs, key=group_key), skip, skip + limit if limit else None):
            group = list(group)
            id_doc: dict = {}
            for k in keys:
                set_(id_doc, k, get(group[0], k))
            yield id_doc, group

    # ---------------------------------------------------------------- writing

    def update(self, docs: list | dict, key: list | str | None = None):
        """Insert documents, each replacing the document with the same key, in one transaction.

        Parameters
        ----------
        docs
            A document or a list of documents. An ``_id`` field is dropped.
        key
            The field or fields identifying a document (default: the store's key).

        Raises
        ------
        KeyError
            If a document lacks a key field (nothing is written then).
        ValueError
            If a strict validator rejects a document.
        """
        key = key or self.key
        keys = key if isinstance(key, list) else [key]
        rows = self._checked(docs if isinstance(docs, list) else [docs], keys)
        if not rows:
            return
        with self._write() as db:
            if any(k not in self._columns for k in keys):
                self._add_fields(db, keys)
            for doc in rows:
                self._upsert(db, doc, {k: doc[k] for k in keys})

    def _checked(self, docs: list, keys: list) -> list:
        out = []
        for doc in docs:
            doc = jsanitize(doc, allow_bson=True, recursive_msonable=True)
            doc.pop("_id", None)
            if self.validator and not self.validator.is_valid(doc):
                if self.validator.strict:
                    raise ValueError(self.validator.validation_errors(doc))
                self.logger.error(self.validator.validation_errors(doc))
                continue
            missing = [k for k in keys if k not in doc]
            if missing:
                raise KeyError(f"{self.name}: a document has no key field {', '.join(missing)}")
            out.append(doc)
        return out

    def _upsert(self, db, doc: dict, search: dict):
        matches = self._matching(db, search)
        found = next(matches, None)
        matches.close()
        fields = list(self._columns)
        values = [q.encode(doc), *(q.column_value(doc, f) for f in fields)]
        cols = ["doc", *(self._columns[f] for f in fields)]
        if found is None:
            marks = ", ".join("?" * len(cols))
            db.execute(f"INSERT INTO {self._table} ({', '.join(cols)}) VALUES ({marks})", values)
        else:
            sets = ", ".join(f"{c} = ?" for c in cols)
            db.execute(f"UPDATE {self._table} SET {sets} WHERE pk = ?", [*values, found[0]])

    def remove_docs(self, criteria: dict):
        """Remove the documents matching ``criteria``, in one transaction.

        Parameters
        ----------
        criteria
            MongoDB criteria (``{}`` removes everything).
        """
        with self._write() as db:
            fields = q.sql_exact_fields(criteria, self._columns)
            extra = None
            if fields is not None:  # SQL decides the rows without complex values by itself
                extra = q.any_complex(self._columns, fields) if fields else None
                where, args = q.where(criteria, self._columns, extra and (f"NOT ({extra[0]})", extra[1]))
                db.execute(f"DELETE FROM {self._table}{where}", args)
            if fields is None or extra:
                pks = [(pk,) for pk, _ in self._matching(db, criteria, extra=extra)]
                db.executemany(f"DELETE FROM {self._table} WHERE pk = ?", pks)

    def ensure_index(self, key: str, unique: bool = False) -> bool:
        """Index a (possibly dotted) field: add its column, filled from the documents, and an SQL index.

        ``unique`` is ignored: uniqueness comes from :meth:`update` replacing by key. Returns True.
        """
        self._connection()
        if key not in self._columns:
            with self._write() as db:
                self._add_fields(db, [key])
        return True
