"""The MongoDB queue database: the same interface, on pymongo.

A claim is one ``find_one_and_update``, which MongoDB applies atomically to one
document; every compare-and-set is an ``update_one`` whose filter holds the
expected state and lock.

A server that cannot be reached costs ``queue.connect_timeout`` seconds (5 by
default), not pymongo's 30, and one line without the password::

    mongodb://user:***@db.example:27017/jfr: cannot reach the queue database: connection refused
"""

from __future__ import annotations

import re
import time

from jfr_lib.errors import QueueDBError
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


def _filter(query: dict | None, columns) -> dict:
    query = query or {}
    check_query(query, columns)
    out = {}
    for key, value in query.items():
        if key == "retry_due":
            out["$or"] = [{"retry_time": None}, {"retry_time": {"$lte": value}}]
        elif key == "locked":
            out["lock_id"] = {"$ne": None} if value else None
        elif key == "name_glob":
            import fnmatch

            out["name"] = {"$regex": fnmatch.translate(value)}
        elif key in ("updated_since", "updated_until"):
            out.setdefault("updated_on", {})["$gte" if key == "updated_since" else "$lt"] = value
        elif isinstance(value, (list, tuple, set, frozenset)):
            out[key] = {"$in": [str(v) if key == "state" else v for v in value]}
        else:
            out[key] = str(value) if key == "state" and value is not None else value
    return out


#: Indexes added after the first schema (as in the SQLite backend); every open adds those missing.
_INDEXES = {
    # distinct states of a flow from the index alone (refresh_flow_state), a flow's jobs
    "jobs_flow_state": [("flow_uuid", 1), ("state", 1)],
    # finished jobs by time (flow report per day, the release sweep at runner start)
    "jobs_state_updated": [("state", 1), ("updated_on", 1)],
}
#: The same for flows.
_FLOW_INDEXES = {
    # flows that ended by time (the notifier's look)
    "flows_state_updated": [("state", 1), ("updated_on", 1)],
}


def _what_failed(exc) -> str:
    names = {c.__name__ for c in type(exc).__mro__}
    if names & {"ConnectionFailure", "ServerSelectionTimeoutError", "NetworkTimeout", "AutoReconnect"}:
        return "cannot reach the queue database"
    if type(exc).__name__ == "OperationFailure" and getattr(exc, "code", None) in (13, 18):
        return "the queue database refused access"
    return "cannot open the queue database"


def describe_error(exc) -> str:
    """One short line for a pymongo error: the reason, no topology dump, no password.

    ``127.0.0.1:27999: [Errno 111] Connection refused (configured timeouts: ...),
    Timeout: 5.0s, Topology Description: <...>`` becomes ``connection refused``;
    with several servers, each keeps its address.
    """
    from jfr_lib.redact import mask_text

    details = getattr(exc, "details", None)
    text = details.get("errmsg") if isinstance(details, dict) and details.get("errmsg") else str(exc)
    text = text.split(", Timeout: ")[0].split("Topology Description:")[0]
    text = re.sub(r"\s*\(configured timeouts:[^)]*\)", "", text)
    text = re.sub(r"\[Errno -?\d+\]\s*", "", text)
    reasons = list(dict.fromkeys(r.strip() for r in re.split(r",(?=\s*[\w.\-\[\]:]+:\d+: )", text) if r.strip()))
    if len(reasons) == 1:  # one server: the URI already names it
        reasons = [re.sub(r"^[\w.\-\[\]:]+:\d+: ", "", reasons[0])]
    text = "; ".join(reasons) or type(exc).__name__
    text = text[:1].lower() + text[1:] if not text[1:2].isupper() else text
    return mask_text(" ".join(text.split()))[:300]


def _sort(sort) -> list | None:
    return [(k, 1 if d >= 0 else -1) for k, d in sort] if sort else None


def _clean(doc):
    if doc is not None:
        doc.pop("_id", None)
    return doc


class MongoQueueDB(QueueDB):
    """Queue database in three MongoDB collections (``PREFIX_jobs``, ``_flows``, ``_meta``).

    Parameters
    ----------
    uri
        MongoDB connection URI.
    database
        Database name.
    prefix
        Prefix of the collection names.
    client
        An already built client (tests pass a mongomock client).
    timeout
        Seconds to wait for the server: to find it and to connect
        (``queue.connect_timeout``). A reply may take up to four times as long.

    Raises
    ------
    QueueDBError
        The URI is not valid, the server cannot be reached or refuses us: one
        line naming the URI (password masked) and the reason.
    """

    def __init__(self, uri: str | None = None, database: str = "jfr", prefix: str = "jfr",
                 client=None, timeout: float = 5.0, options: dict | None = None):  # fmt: skip
        from jfr_lib.redact import mask_text

        where = mask_text(uri or "mongodb")
        if client is None:
            try:
                import pymongo
            except ImportError:
                raise QueueDBError("the mongodb backend needs pymongo: pip install pymongo") from None
            ms = int(timeout * 1000)
            try:  # a long query may take longer than finding the server: reads get more time
                client = pymongo.MongoClient(uri, **{"serverSelectionTimeoutMS": ms, "connectTimeoutMS": ms,
                                                     "socketTimeoutMS": max(4 * ms, 20000), **(options or {})})
            except Exception as exc:  # InvalidURI, ConfigurationError, a bad option value...
                raise QueueDBError(f"{where}: not a valid MongoDB URI: {describe_error(exc)}") from None
        self.client = client
        db = client[database]
        self.jobs = db[f"{prefix}_jobs"]
        self.flows = db[f"{prefix}_flows"]
        self.meta = db[f"{prefix}_meta"]
        try:
            self._ensure_schema()
        except QueueDBError:
            self.close()
            raise
        except Exception as exc:  # pymongo has many error classes
            self.close()
            raise QueueDBError(f"{where}: {_what_failed(exc)}: {describe_error(exc)}") from None

    def _ensure_schema(self):
        doc = self.meta.find_one({"_id": "schema_version"})
        if doc is None:
            self.jobs.create_index([("uuid", 1), ("index", 1)], unique=True)
            self.jobs.create_index([("db_id", 1)], unique=True)
            self.jobs.create_index([("state", 1), ("priority", -1), ("db_id", 1)])
            self.jobs.create_index([("worker", 1), ("state", 1)])
            self.jobs.create_index([("parents", 1)])
            self.jobs.create_index([("lock_id", 1)])
            self.flows.create_index([("uuid", 1)], unique=True)
            self.flows.create_index([("db_id", 1)], unique=True)
            self.meta.update_one({"_id": "schema_version"},
                                 {"$setOnInsert": {"value": SCHEMA_VERSION}}, upsert=True)  # fmt: skip
            version = SCHEMA_VERSION
        else:
            version = doc["value"]
        if version > SCHEMA_VERSION:
            raise QueueDBError(
                f"queue database schema version {version} is newer than this jfr knows "
                f"({SCHEMA_VERSION}): upgrade jfr"
            )
        have = set(self.jobs.index_information())
        for name, keys in _INDEXES.items():
            if name not in have:
                self.jobs.create_index(keys, name=name)
        have = set(self.flows.index_information())
        for name, keys in _FLOW_INDEXES.items():
            if name not in have:
                self.flows.create_index(keys, name=name)

    def close(self):
        if type(self.client).__module__.split(".")[0] != "mongomock":  # the shared test client stays open
            self.client.close()

    # --- backup -----------------------------------------------------------------
    def dump(self) -> dict:
        """Every document of the three collections (the runner lease left out)."""
        return {
            "jobs": [_clean(d) for d in self.jobs.find({}, sort=[("db_id", 1)])],
            "flows": [_clean(d) for d in self.flows.find({}, sort=[("db_id", 1)])],
            "meta": [d for d in self.meta.find({"_id": {"$ne": "runner"}})],
        }

    def load(self, data: dict) -> None:
        """Fill empty collections from :meth:`dump` output."""
        if self.jobs.count_documents({}) or self.flows.count_documents({}):
            raise QueueDBError("the target queue database is not empty: restore into an empty one")
        if data["jobs"]:
            self.jobs.insert_many(data["jobs"])
        if data["flows"]:
            self.flows.insert_many(data["flows"])
        for doc in data["meta"]:
            self.meta.replace_one({"_id": doc["_id"]}, doc, upsert=True)

    def _next_ids(self, name: str, n: int) -> int:
        """Reserve ``n`` consecutive ids; return the first."""
        from pymongo import ReturnDocument

        doc = self.meta.find_one_and_update(
            {"_id": f"counter_{name}"}, {"$inc": {"value": n}}, upsert=True,
            return_document=ReturnDocument.AFTER,
        )  # fmt: skip
        return doc["value"] - n + 1

    # --- meta -------------------------------------------------------------------
    def get_meta(self, key, default=None):
        doc = self.meta.find_one({"_id": key})
        return default if doc is None else doc["value"]

    def set_meta(self, key, value):
        self.meta.update_one({"_id": key}, {"$set": {"value": value}}, upsert=True)

    def swap_meta(self, key, expected_token, value):
        from pymongo.errors import DuplicateKeyError

        try:
            result = self.meta.update_one({"_id": key, "value.token": expected_token},
                                          {"$set": {"value": value}}, upsert=expected_token is None)  # fmt: skip
        except DuplicateKeyError:  # the upsert met a document held by another token
            return False
        return result.matched_count == 1 or result.upserted_id is not None

    # --- inserts ----------------------------------------------------------------
    def _prepare(self, jobs, first_id):
        stamp = now_iso()
        out = []
        for i, job in enumerate(jobs):
            job = {"created_on": stamp, "updated_on": stamp, "priority": 0, **job}
            job["db_id"] = first_id + i
            job["state"] = str(job["state"])
            job.setdefault("lock_id", None)
            job.setdefault("retry_time", None)
            out.append(job)
        return out

    def insert_flow(self, flow, jobs):
        if self.flows.find_one({"uuid": flow["uuid"]}, {"_id": 1}):
            raise KeyError(flow["uuid"])
        uuids = list({j["uuid"] for j in jobs})
        found = self.jobs.find_one({"uuid": {"$in": uuids}}, {"uuid": 1})
        if found:
            raise KeyError(found["uuid"])
        first = self._next_ids("jobs", len(jobs)) if jobs else 0
        docs = self._prepare(jobs, first)
        stamp = now_iso()
        flow_doc = {"created_on": stamp, "updated_on": stamp, **flow}
        flow_doc["db_id"] = self._next_ids("flows", 1)
        flow_doc["state"] = str(flow_doc["state"])
        try:
            if docs:
                self.jobs.insert_many([dict(d) for d in docs])
            self.flows.insert_one(dict(flow_doc))
        except Exception:
            # not transactional: undo what went in, so nothing half-written remains
            self.jobs.delete_many({"db_id": {"$in": [d["db_id"] for d in docs]}})
            self.flows.delete_one({"uuid": flow["uuid"]})
            raise
        return [d["db_id"] for d in docs]

    def insert_jobs(self, jobs):
        from pymongo.errors import DuplicateKeyError

        ids = []
        for job in jobs:
            existing = self.jobs.find_one({"uuid": job["uuid"], "index": job["index"]}, {"db_id": 1})
            if existing:
                ids.append(existing["db_id"])
                continue
            doc = self._prepare([job], self._next_ids("jobs", 1))[0]
            try:
                self.jobs.insert_one(dict(doc))
                ids.append(doc["db_id"])
            except DuplicateKeyError:
                existing = self.jobs.find_one({"uuid": job["uuid"], "index": job["index"]})
                ids.append(existing["db_id"])
        return ids

    # --- reads ------------------------------------------------------------------
    def find_jobs(self, query=None, sort=None, limit=0, skip=0):
        cur = self.jobs.find(_filter(query, JOB_COLUMNS), sort=_sort(sort), limit=int(limit), skip=int(skip))
        return [_clean(d) for d in cur]

    def count_jobs(self, query=None):
        return self.jobs.count_documents(_filter(query, JOB_COLUMNS))

    def count_states(self, query=None):
        pipeline = [{"$match": _filter(query, JOB_COLUMNS)},
                    {"$group": {"_id": "$state", "n": {"$sum": 1}}}]  # fmt: skip
        return {d["_id"]: d["n"] for d in self.jobs.aggregate(pipeline)}

    def count_by(self, fields, query=None):
        keys = {f"k{i}": ({"$substr": ["$updated_on", 0, 10]} if f == UPDATED_DAY else f"${f}")
                for i, f in enumerate(fields)}  # fmt: skip
        pipeline = [{"$match": _filter(query, JOB_COLUMNS)}, {"$group": {"_id": keys, "n": {"$sum": 1}}}]
        groups = self.jobs.aggregate(pipeline)
        return {tuple(d["_id"].get(f"k{i}") for i in range(len(fields))): d["n"] for d in groups}

    def children(self, uuid):
        return [_clean(d) for d in self.jobs.find({"parents": uuid}, sort=[("db_id", 1)])]

    def waiting_children(self, uuid):
        found = self.jobs.find({"parents": uuid, "state": "WAITING"}, {"db_id": 1, "allow_failed_parents": 1},
                               sort=[("db_id", 1)])  # fmt: skip
        return [{"db_id": d["db_id"], "allow_failed_parents": bool(d.get("allow_failed_parents"))} for d in found]

    def parents_done(self, db_id, done_states):
        doc = self.jobs.find_one({"db_id": int(db_id)}, {"parents": 1}) or {}
        parents, done = doc.get("parents") or [], {str(s) for s in done_states}
        for end in range(len(parents), 0, -200):  # the parents listed last tend to finish last
            chunk = parents[max(0, end - 200) : end]
            if any(state not in done for state in self.latest_states(chunk).values()):
                return False
        return True

    def latest_states(self, uuids):
        out, best = {}, {}
        for d in self.jobs.find({"uuid": {"$in": list(set(uuids))}}, {"uuid": 1, "index": 1, "state": 1}):
            if d["index"] >= best.get(d["uuid"], -1):
                best[d["uuid"]] = d["index"]
                out[d["uuid"]] = d["state"]
        return out

    def count_flows(self, query=None):
        return self.flows.count_documents(_filter(query, FLOW_COLUMNS))

    def find_flows(self, query=None, sort=None, limit=0):
        cur = self.flows.find(_filter(query, FLOW_COLUMNS), sort=_sort(sort), limit=int(limit))
        return [_clean(d) for d in cur]

    # --- writes -----------------------------------------------------------------
    def claim_job(self, query, lock_id, sort=None):
        from pymongo import ReturnDocument

        doc = self.jobs.find_one_and_update(
            _filter({**query, "lock_id": None}, JOB_COLUMNS),
            {"$set": {"lock_id": lock_id, "lock_time": time.time()}},
            sort=_sort(sort or [("priority", -1), ("db_id", 1)]),
            return_document=ReturnDocument.AFTER,
        )
        return _clean(doc)

    def update_job(self, db_id, changes, state=ANY, lock_id=ANY):
        flt = {"db_id": int(db_id)}
        if state is not ANY:
            flt["state"] = str(state)
        if lock_id is not ANY:
            flt["lock_id"] = lock_id
        changes = {**changes, "updated_on": now_iso()}
        if "state" in changes:
            changes["state"] = str(changes["state"])
            if "state_on" not in changes and (state is ANY or str(state) != changes["state"]):
                # the time of a change of state, only when the state does change
                moved = {**flt, "state": {"$ne": changes["state"]}} if state is ANY else flt
                stamped = {**changes, "state_on": changes["updated_on"]}
                if self.jobs.update_one(moved, {"$set": stamped}).matched_count == 1:
                    return True
                if state is not ANY:
                    return False
        return self.jobs.update_one(flt, {"$set": changes}).matched_count == 1

    def add_parents(self, child_db_ids, parent_uuids):
        self.jobs.update_many(
            {"db_id": {"$in": [int(i) for i in child_db_ids]}},
            {"$addToSet": {"parents": {"$each": list(parent_uuids)}},
             "$set": {"updated_on": now_iso()}},
        )  # fmt: skip

    def delete_jobs(self, db_ids):
        return self.jobs.delete_many({"db_id": {"$in": [int(i) for i in db_ids]}}).deleted_count

    def delete_flow(self, uuid):
        self.flows.delete_one({"uuid": uuid})

    def update_flow(self, uuid, changes):
        self.flows.update_one({"uuid": uuid}, {"$set": {**changes, "updated_on": now_iso()}})

    def refresh_flow_state(self, uuid):
        from jfr_lib.states import flow_state

        # distinct on the (flow_uuid, state) index reads no job document;
        # two writers may race; the later one always reads the newer job states
        for _ in range(3):
            new = str(flow_state(self.jobs.distinct("state", {"flow_uuid": uuid})))
            self.flows.update_one({"uuid": uuid, "state": {"$ne": new}},
                                  {"$set": {"state": new, "updated_on": now_iso()}})  # fmt: skip
            again = str(flow_state(self.jobs.distinct("state", {"flow_uuid": uuid})))
            if again == new:
                return new
        return new
