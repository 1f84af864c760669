"""Cost of reading outputs from the embedded JobStore as it grows.

Reference resolution does one ``get_output`` per referenced job, so this is
paid on every upload. Prints, for each store size, the median time of
``JobStore.get_output`` for a random uuid and of the underlying lookup by
uuid, for the embedded MontyStore (montydb, sqlite engine) and, for
comparison, an indexed lookup in a plain SQLite table of the same documents.

    python bench/jobstore.py [--sizes 1000,10000,50000]
"""

from __future__ import annotations

import argparse
import json
import random
import sqlite3
import statistics
import time
import uuid as uuidlib

from common import tmpdir


def docs(n):
    for _ in range(n):
        u = str(uuidlib.uuid4())
        yield {"uuid": u, "index": 1, "output": {"energy": random.random(), "n": 3},
               "completed_at": "2026-01-01T00:00:00", "metadata": {}, "hosts": [], "name": "add"}  # fmt: skip


def median_time(fn, repeat=15):
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def measure(store, lite, pool) -> tuple:
    """Median seconds of get_output, a find by uuid, and an indexed SQLite lookup."""
    get = median_time(lambda: store.get_output(random.choice(pool)))
    find = median_time(lambda: store.docs_store.query_one({"uuid": random.choice(pool)}))
    plain = median_time(lambda: lite.execute("SELECT doc FROM outputs WHERE uuid = ? ORDER BY idx DESC",
                                             (random.choice(pool),)).fetchone())  # fmt: skip
    return get, find, plain


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="1000,10000,50000")
    args = parser.parse_args()
    from jobflow import JobStore
    from maggma.stores import MontyStore

    root = tmpdir()
    store = JobStore(MontyStore("outputs", database_path=str(root), storage="sqlite"))
    store.connect()
    lite = sqlite3.connect(root / "plain.db")
    lite.execute("CREATE TABLE outputs (uuid TEXT, idx INTEGER, doc TEXT, PRIMARY KEY (uuid, idx))")
    uuids, have = [], 0
    print(f"{'outputs':>8} {'insert s':>9} {'get_output ms':>14} {'find by uuid ms':>16} {'sqlite indexed ms':>18}")
    for size in [int(s) for s in args.sizes.split(",")]:
        batch = list(docs(size - have))
        t0 = time.perf_counter()
        for i in range(0, len(batch), 1000):
            store.docs_store._collection.insert_many([dict(d) for d in batch[i : i + 1000]])
        insert = time.perf_counter() - t0
        lite.executemany("INSERT INTO outputs VALUES (?, ?, ?)",
                         [(d["uuid"], d["index"], json.dumps(d)) for d in batch])  # fmt: skip
        lite.commit()
        uuids += [d["uuid"] for d in batch]
        have = size
        get, find, plain = measure(store, lite, list(uuids))
        print(f"{size:>8} {insert:>9.1f} {get * 1000:>14.1f} {find * 1000:>16.1f} {plain * 1000:>18.3f}", flush=True)


if __name__ == "__main__":
    main()
