"""The stateless half of :class:`jfr_lib.sqlite_store.SQLiteStore`: how documents and queries map to SQL.

It covers the document codec (JSON keeping datetimes and bytes, zlib for large documents), the
layout of a collection's table (one column per indexed field, its SQL indexes, the table recording
the indexed fields), the SQL pre-filter built from MongoDB criteria, and the MongoDB rules the
store applies in Python (projection, sort order, array traversal). Nothing here keeps a
connection: the few functions that touch the file take one as an argument.

The pre-filter is allowed to be loose but never strict: every row it drops is certain not to
match, and montydb's query engine then decides exactly on the rows it keeps. Indexed values that
SQL cannot compare the MongoDB way (arrays, sub-documents, booleans, dates...) are stored as
:data:`COMPLEX`, which every condition lets through.
"""

from __future__ import annotations

import base64
import json
import sqlite3
import zlib
from datetime import datetime

from montydb.engine.weighted import Weighted

#: Column value of an indexed field whose value SQL cannot judge; such rows are checked in Python.
#: No plain scalar is ever stored as a BLOB, so it cannot be mistaken for a real value.
COMPLEX = b"\x00complex"
#: Encoded documents longer than this (characters) are stored compressed.
COMPRESS_ABOVE = 1 << 20
#: The table recording each collection's indexed fields, so that every process agrees on them.
FIELDS_TABLE = "_sqlitestore_fields"
#: Fields jobflow's JobStore looks up together, each group under one SQL index.
COMPOSITES = (("uuid", "index"), ("blob_uuid",), ("job_uuid", "job_index"))
_ZLIB_MARK = b"zlib1:"
_INT64 = (-(1 << 63), (1 << 63) - 1)
_EMPTY_ARRAY = (0,)  # MongoDB sorts an empty array before null (Weighted(None) is (1, None))


def _default(obj):
    if isinstance(obj, datetime):
        return {"$date": obj.isoformat()}
    if isinstance(obj, (bytes, bytearray)):
        return {"$binary": base64.b64encode(bytes(obj)).decode("ascii")}
    raise TypeError(f"a SQLiteStore cannot store a value of type {type(obj).__name__}")


def _hook(obj: dict):
    if len(obj) == 1:
        if isinstance(obj.get("$date"), str):
            return datetime.fromisoformat(obj["$date"])
        if isinstance(obj.get("$binary"), str):
            return base64.b64decode(obj["$binary"])
    return obj


def encode(doc: dict) -> str | bytes:
    """Encode a document for the ``doc`` column.

    Parameters
    ----------
    doc
        A JSON-like document; datetimes and bytes are allowed.

    Returns
    -------
    str or bytes
        JSON text, or marked zlib-compressed bytes when the text exceeds :data:`COMPRESS_ABOVE`.
    """
    text = json.dumps(doc, default=_default, separators=(",", ":"))
    if len(text) <= COMPRESS_ABOVE:
        return text
    # Level 1: large outputs are mostly numbers, which the fastest level already shrinks well.
    return _ZLIB_MARK + zlib.compress(text.encode("utf-8"), 1)


def decode(raw: str | bytes) -> dict:
    """Decode what :func:`encode` produced.

    Parameters
    ----------
    raw
        The content of a ``doc`` column.

    Returns
    -------
    dict
        The document.
    """
    if isinstance(raw, bytes):
        if not raw.startswith(_ZLIB_MARK):
            raise ValueError("unknown document encoding in a SQLiteStore table")
        raw = zlib.decompress(raw[len(_ZLIB_MARK) :]).decode("utf-8")
    # The object hook costs a Python call per sub-document: skip it when nothing needs it.
    if '"$date"' in raw or '"$binary"' in raw:
        return json.loads(raw, object_hook=_hook)
    return json.loads(raw)


def is_plain(value) -> bool:
    """Whether SQL compares ``value`` exactly as MongoDB does (str, 64-bit int, non-NaN float).

    Booleans are excluded: SQLite stores them as 0/1, which would equal the numbers.
    """
    if isinstance(value, bool):
        return False
    if isinstance(value, int):
        return _INT64[0] <= value <= _INT64[1]
    if isinstance(value, float):
        return value == value
    return isinstance(value, str)


def column_value(doc: dict, field: str):
    """The value the column of indexed ``field`` holds for ``doc``.

    Parameters
    ----------
    doc
        The document.
    field
        A possibly dotted field name.

    Returns
    -------
    str, int, float, None or bytes
        The plain value; None when the field is missing or null; :data:`COMPLEX` otherwise
        (also when the path crosses an array, whose elements MongoDB would search).
    """
    value = doc
    for part in field.split("."):
        if isinstance(value, list):
            return COMPLEX
        if not isinstance(value, dict) or part not in value:
            return None
        value = value[part]
    if value is None or is_plain(value):
        return value
    return COMPLEX


def quote(name: str) -> str:
    """Quote an SQL identifier."""
    return '"' + name.replace('"', '""') + '"'


def _equal(col: str, value):
    if value is None:
        return f"({col} IS NULL OR {col} = ?)", [COMPLEX]
    if is_plain(value):
        return f"{col} IN (?, ?)", [value, COMPLEX]
    if isinstance(value, (list, dict, bool)):
        return f"{col} = ?", [COMPLEX]
    return None  # e.g. a compiled regex, which matches strings


def _among(col: str, values):
    if not isinstance(values, list):
        return None
    if not all(v is None or is_plain(v) or isinstance(v, (list, dict, bool)) for v in values):
        return None
    plain = [v for v in values if is_plain(v)]
    # One JSON parameter whatever the length, so long lists never hit SQLite's variable limit.
    sql = f"{col} IN (SELECT value FROM json_each(?) UNION ALL SELECT ?)"
    if any(v is None for v in values):
        sql = f"({sql} OR {col} IS NULL)"
    return sql, [json.dumps(plain), COMPLEX]


def _field_condition(col: str, cond):
    if not (isinstance(cond, dict) and cond and all(str(k).startswith("$") for k in cond)):
        return _equal(col, cond)
    parts = []
    for op, arg in cond.items():
        part = _equal(col, arg) if op == "$eq" else _among(col, arg) if op == "$in" else None
        if part:
            parts.append(part)
    return _join(parts, " AND ")


def _join(parts, glue: str):
    if not parts:
        return None
    sql = glue.join(f"({p[0]})" for p in parts)
    return sql, [x for p in parts for x in p[1]]


def prefilter(criteria: dict, columns: dict):
    """An SQL condition that every document matching ``criteria`` satisfies.

    Parameters
    ----------
    criteria
        MongoDB criteria.
    columns
        Indexed field -> quoted column name.

    Returns
    -------
    tuple or None
        ``(sql, params)``, or None when no part of the criteria can be told to SQL.
    """
    parts = []
    for key, cond in criteria.items():
        if key == "$and" and isinstance(cond, list):
            parts += [p for p in (prefilter(c, columns) for c in cond) if p]
        elif key == "$or" and isinstance(cond, list) and cond:
            subs = [prefilter(c, columns) for c in cond]
            if all(subs):  # one unconstrained branch makes the whole $or unconstrained
                parts.append(_join(subs, " OR "))
        elif key in columns:
            part = _field_condition(columns[key], cond)
            if part:
                parts.append(part)
    return _join(parts, " AND ")


def where(criteria: dict, columns: dict, extra=None) -> tuple[str, list]:
    """The ``WHERE`` clause (or "") and parameters of :func:`prefilter` and an ``extra`` condition."""
    parts = [p for p in (prefilter(criteria, columns), extra) if p]
    if not parts:
        return "", []
    return " WHERE " + " AND ".join(f"({p[0]})" for p in parts), [x for p in parts for x in p[1]]


def any_complex(columns: dict, fields) -> tuple[str, list]:
    """The condition that one of ``fields`` holds :data:`COMPLEX`."""
    return " OR ".join(f"{columns[f]} = ?" for f in fields), [COMPLEX] * len(fields)


def index_specs(collection: str, fields) -> dict:
    """The SQL indexes of a collection: index name -> fields.

    Fields looked up together (:data:`COMPOSITES`) share one; every other indexed field has its own.
    """
    specs, covered = {}, set()
    for combo in COMPOSITES:
        if all(f in fields for f in combo):
            specs[f"{collection}__{'__'.join(combo)}"] = combo
            covered.update(combo)
    for field in sorted(set(fields) - covered):
        specs[f"{collection}__{field}"] = (field,)
    return specs


def create_tables(db: sqlite3.Connection, collection: str) -> None:
    """Create the fields table and the collection's table if missing."""
    db.execute(f"CREATE TABLE IF NOT EXISTS {FIELDS_TABLE} "
               "(collection TEXT NOT NULL, field TEXT NOT NULL, PRIMARY KEY (collection, field))")  # fmt: skip
    # No type on any column: no affinity, so 1 and "1" stay different values.
    db.execute(f"CREATE TABLE IF NOT EXISTS {quote(collection)} (pk INTEGER PRIMARY KEY, doc NOT NULL)")


def recorded_fields(db: sqlite3.Connection, collection: str) -> set:
    """The indexed fields recorded for ``collection``."""
    try:
        rows = db.execute(f"SELECT field FROM {FIELDS_TABLE} WHERE collection = ?", (collection,))
        return {r[0] for r in rows}
    except sqlite3.OperationalError:  # no store has created the fields table yet
        return set()


def add_fields(db: sqlite3.Connection, collection: str, fields) -> None:
    """Index more fields of ``collection``, filling their columns from the stored documents.

    Parameters
    ----------
    db
        A connection inside a write transaction.
    collection
        The collection (table).
    fields
        Fields to index; those already recorded are left alone.
    """
    create_tables(db, collection)
    table, have = quote(collection), recorded_fields(db, collection)
    columns = {r[1] for r in db.execute(f"PRAGMA table_info({table})")}
    new = [f for f in dict.fromkeys(fields) if f not in have]
    for field in new:
        if f"f_{field}" not in columns:
            db.execute(f"ALTER TABLE {table} ADD COLUMN {quote('f_' + field)}")
        db.execute(f"INSERT INTO {FIELDS_TABLE} (collection, field) VALUES (?, ?)", (collection, field))
    if new:
        _fill(db, table, new)
    for name, combo in index_specs(collection, have | set(new)).items():
        cols = ", ".join(quote("f_" + f) for f in combo)
        db.execute(f"CREATE INDEX IF NOT EXISTS {quote(name)} ON {table} ({cols})")


def _fill(db, table: str, fields: list) -> None:
    sets = ", ".join(f"{quote('f_' + f)} = ?" for f in fields)
    last = -1
    while True:  # in batches, never updating a table that an open statement is reading
        rows = db.execute(f"SELECT pk, doc FROM {table} WHERE pk > ? ORDER BY pk LIMIT 1000", (last,)).fetchall()
        if not rows:
            return
        values = []
        for pk, raw in rows:
            doc = decode(raw)
            values.append([*(column_value(doc, f) for f in fields), pk])
        db.executemany(f"UPDATE {table} SET {sets} WHERE pk = ?", values)
        last = rows[-1][0]


def sql_exact_fields(criteria: dict, columns: dict):
    """The fields of ``criteria`` when SQL alone decides it on rows without :data:`COMPLEX` values.

    That holds for a conjunction of equalities or ``$in`` lists of plain values on indexed fields.

    Returns
    -------
    list or None
        The fields concerned, or None when the criteria need the Python check.
    """
    for key, cond in criteria.items():
        if key not in columns:
            return None
        if isinstance(cond, dict) and len(cond) == 1 and "$eq" in cond:
            cond = cond["$eq"]
        if isinstance(cond, dict) and len(cond) == 1 and isinstance(cond.get("$in"), list):
            if not all(is_plain(v) for v in cond["$in"]):
                return None
        elif not is_plain(cond):
            return None
    return list(criteria)


def path_values(doc, field: str) -> list:
    """Every value at a dotted path, through arrays as MongoDB walks them (leaf arrays kept whole)."""
    values = [doc]
    for part in field.split("."):
        found = []
        for value in values:
            if isinstance(value, dict):
                if part in value:
                    found.append(value[part])
            elif isinstance(value, list):
                found += [item[part] for item in value if isinstance(item, dict) and part in item]
                if part.isdigit() and int(part) < len(value):
                    found.append(value[int(part)])
        values = found
    return values


def leaf_values(doc, field: str, values: list | None = None) -> list:
    """The values at ``field`` with leaf arrays flattened one level, as ``distinct`` counts them."""
    out = []
    for value in path_values(doc, field) if values is None else values:
        out += value if isinstance(value, list) else [value]
    return out


def sort_key(doc, field: str, descending: bool):
    """MongoDB's sort key of ``doc`` for ``field``: BSON order, arrays by their min (max descending)."""
    values = path_values(doc, field)
    if not values:
        return Weighted(None)
    flat = leaf_values(doc, field, values)
    if not flat:
        return _EMPTY_ARRAY
    keys = [Weighted(v) for v in flat]
    return max(keys) if descending else min(keys)


def sort_docs(docs: list, sort: list) -> list:
    """Sort ``docs`` in place by ``[(field, 1 or -1), ...]`` as MongoDB would; return them."""
    for field, direction in reversed(sort):  # stable sorts, least significant key first
        docs.sort(key=lambda d, f=field, r=direction < 0: sort_key(d, f, r), reverse=direction < 0)
    return docs


def _include(src: dict, dst: dict, parts: list) -> None:
    head, rest = parts[0], parts[1:]
    if head not in src:
        return
    value = src[head]
    if not rest:
        dst[head] = value
    elif isinstance(value, dict):
        _include(value, dst.setdefault(head, {}), rest)
    elif isinstance(value, list):
        items = [item for item in value if isinstance(item, dict)]
        out = dst.setdefault(head, [{} for _ in items])
        for item, sub in zip(items, out):
            _include(item, sub, rest)


def _exclude(doc, parts: list) -> None:
    if isinstance(doc, list):
        for item in doc:
            _exclude(item, parts)
    elif isinstance(doc, dict) and parts[0] in doc:
        if len(parts) == 1:
            del doc[parts[0]]
        else:
            _exclude(doc[parts[0]], parts[1:])


def project(doc: dict, properties) -> dict:
    """Apply a MongoDB projection (list of fields, or dict of field -> 1/0) to a fresh ``doc``.

    ``_id`` is ignored: documents in a SQLiteStore never have one.
    """
    if not properties:
        return doc
    spec = {p: 1 for p in properties} if isinstance(properties, (list, tuple)) else dict(properties)
    spec.pop("_id", None)
    if not spec:
        return doc
    if any(spec.values()):
        out: dict = {}
        for field in (f for f, keep in spec.items() if keep):
            _include(doc, out, field.split("."))
        return out
    for field in spec:
        _exclude(doc, field.split("."))
    return doc
