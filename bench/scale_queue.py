"""Sections ``fanout`` and ``queue`` of ``bench/scale.py``: a queue database with many jobs.

``fanout`` times the complete step (``jfr_lib.actions.complete.complete``, called
directly on jobs in DOWNLOADED with a fake run folder) early and late in a flow of
one parent, its N - 1 children and a job gathering them all; ``queue`` times
``jfr flow report``, ``flow list`` and ``job list`` over 100,000 (or, with
``--full``, 1,000,000) jobs.

Examples
--------
::

    python bench/scale.py --sections fanout,queue
"""

from __future__ import annotations

import json
import random
import sqlite3
import statistics
import sys
import time
import uuid as uuidlib
from datetime import datetime, timedelta, timezone

from common import ROOT, load_bench_project, print_table, run_measured

#: Completions timed at the start and at the end of a fan-out.
K = 200
BATCH = 1_000
RNG = random.Random(2)


def job_json(job) -> dict:
    """A jobflow job as the queue database keeps it: plain JSON data."""
    from monty.json import MontyEncoder

    return json.loads(json.dumps(job.as_dict(), cls=MontyEncoder))


def now_iso(delta: timedelta = timedelta(0)) -> str:
    return (datetime.now(timezone.utc) - delta).isoformat(timespec="milliseconds")


def insert(db, flow_doc: dict, docs: list) -> list:
    """Store a flow's jobs 1,000 per transaction; their db_ids."""
    ids = db.insert_flow(flow_doc, docs[:BATCH])
    for i in range(BATCH, len(docs), BATCH):
        ids += db.insert_jobs(docs[i : i + BATCH])
    return ids


def set_states(project, ids, state: str) -> None:
    """Set the state of many jobs in one transaction: direct SQL on the embedded queue file, a
    shortcut of this benchmark (one ``update_job`` per job would take minutes at 100,000)."""
    con = sqlite3.connect(project.queue_db_path, timeout=60)
    try:
        with con:
            con.executemany("UPDATE jobs SET state = ?, updated_on = ? WHERE db_id = ?",
                            [(state, now_iso(), i) for i in ids])  # fmt: skip
    finally:
        con.close()


def fake_run(run_dir, uuid: str) -> None:
    """A run folder as a worker leaves it after a successful job: ``jfr_out.json``, ``jfr_store.json``."""
    from pathlib import Path

    from scale_outputs import output_doc

    from jfr_lib.rundir import OUT_FILE, STORE_FILE

    folder = Path(run_dir)
    folder.mkdir(parents=True, exist_ok=True)
    stamp = now_iso()
    (folder / OUT_FILE).write_text(json.dumps({"state": "COMPLETED", "start_time": stamp, "end_time": stamp,
                                               "host": "bench", "run_seconds": 0.01, "started": "warm",
                                               "response": {}}))  # fmt: skip
    doc = {**output_doc(RNG), "uuid": uuid}
    (folder / STORE_FILE).write_text(json.dumps({"docs": [doc], "additional": {}}))


def complete_timed(ctx, n: int) -> list:
    """Claim and complete ``n`` DOWNLOADED jobs, as the complete action does; seconds for each."""
    from jfr_lib.actions.complete import complete
    from jfr_lib.states import JobState

    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        job = ctx.claim(JobState.DOWNLOADED)
        complete(ctx, job)
        times.append(time.perf_counter() - t0)
    return times


def fanout(n: int, root) -> dict:
    """Build and run one fan-out of a parent, ``n - 1`` children and a gathering job; the figures."""
    from jobflow import OutputReference

    from jfr_lib.actions import ActionContext
    from jfr_lib.submit import new_job_document

    from quickstart_jobs import add, total

    project, _ = load_bench_project(root)
    parent = add(1, 2)
    child_tmpl, gather_tmpl = job_json(add(parent.output, 1)), job_json(total([]))
    ref_tmpl = job_json(OutputReference(parent.uuid))
    flow_uuid, run_root = str(uuidlib.uuid4()), root / "run"

    def doc(job_dict, parents, state):
        d = new_job_document(job_dict, parents, flow_uuid, {"worker": "local"}, state=state)
        d["run_dir"] = str(run_root / job_dict["uuid"])
        return d

    t0 = time.perf_counter()
    children = [str(uuidlib.uuid4()) for _ in range(n - 1)]
    gather = {**gather_tmpl, "uuid": str(uuidlib.uuid4()),
              "function_args": [[{**ref_tmpl, "uuid": u} for u in children]]}  # fmt: skip
    docs = [doc(job_json(parent), [], "DOWNLOADED")]
    docs += [doc({**child_tmpl, "uuid": u}, [parent.uuid], "WAITING") for u in children]
    docs.append(doc(gather, children, "WAITING"))
    ctx = ActionContext(project, "complete")
    try:
        ids = insert(ctx.db, {"uuid": flow_uuid, "name": f"fanout-{n}", "state": "RUNNING", "n_jobs": len(docs)}, docs)
        build = time.perf_counter() - t0
        first, last = ids[1 : K + 1], ids[-K - 1 : -1]
        for d in [docs[0], *docs[1 : K + 1], *docs[-K - 1 : -1]]:
            fake_run(d["run_dir"], d["uuid"])
        parent_s = complete_timed(ctx, 1)[0]  # releases every child
        released = ctx.db.count_jobs({"flow_uuid": flow_uuid, "state": "READY"})
        set_states(project, first, "DOWNLOADED")
        start = complete_timed(ctx, K)
        set_states(project, ids[K + 1 : -K - 1], "COMPLETED")
        set_states(project, last, "DOWNLOADED")
        end = complete_timed(ctx, K)
        gather_state = ctx.db.get_job(ids[-1])["state"]
        states = ctx.db.count_states({"flow_uuid": flow_uuid})
    finally:
        ctx.close()
    return {"jobs": len(docs), "build": build, "parent": parent_s, "released": released, "start": start,
            "end": end, "gather": gather_state, "states": states}  # fmt: skip


def section_fanout(sizes: list, new_root, summary: list) -> None:
    """Run the section, print its table and add its targets to ``summary``.

    Parameters
    ----------
    sizes
        Jobs in the fan-out besides the gathering job (the parent and its children).
    new_root
        Callable giving a fresh temporary folder, one project per size.
    summary
        List of (section, target, measured, met) to append to.
    """
    rows, found = [], {}
    for n in sizes:
        f = fanout(n, new_root())
        found[n] = f
        start, end = statistics.median(f["start"]), statistics.median(f["end"])
        p90 = statistics.quantiles(f["end"], n=10)[-1]
        rows.append((f"{f['jobs']:,}", f"{f['build']:.1f}", f"{f['parent']:.1f} ({f['released']:,})",
                     f"{start * 1000:.2f}", f"{end * 1000:.2f}", f"{p90 * 1000:.2f}",
                     f"{f['end'][-1] * 1000:.1f}", f"{end / start:.2f}", f["gather"]))  # fmt: skip
        print(f"  ... {n:,}-child fan-out done; states {f['states']}", flush=True)
    print_table(f"fanout: complete step of a parent, its children and a job gathering them all (ms per job, "
                f"claim + complete; start: first {K} children, end: last {K})",
                ["jobs", "build s", "parent s (released)", "start median", "end median", "end p90",
                 "last one", "end/start", "gatherer then"], rows)  # fmt: skip
    for n, label, check in ((20_000, "20,000: end median <= 1.5x start", "ratio"),
                            (100_000, "100,000: median < 10 ms per completion", "abs")):  # fmt: skip
        f = found.get(n)
        if f is None:
            summary.append(("fanout", label, "-", None))
            continue
        start, end = statistics.median(f["start"]), statistics.median(f["end"])
        if check == "ratio":
            summary.append(("fanout", label, f"{end / start:.2f}x", end / start <= 1.5))
        else:
            worst = max(start, end)
            summary.append(("fanout", label, f"start {start * 1000:.1f} ms, end {end * 1000:.1f} ms", worst < 0.010))


#: States of a finished flow, of one with failures, and of one in progress, per 100 jobs.
MIXES = (["COMPLETED"] * 100, ["COMPLETED"] * 95 + ["FAILED"] * 5,
         ["COMPLETED"] * 60 + ["RUNNING"] * 5 + ["READY"] * 10 + ["WAITING"] * 25)  # fmt: skip


def fill_queue(project, flows: int, per_flow: int = 1_000) -> float:
    """``flows`` flows of ``per_flow`` independent jobs (one ``insert_flow`` each); seconds taken.

    Eight flows in ten are finished, one has failures, one is in progress; ``updated_on``
    spreads over ten days, so that ``flow report`` has something to count per day.
    """
    from jfr_lib.queue_db import open_queue_db
    from jfr_lib.states import flow_state
    from jfr_lib.submit import new_job_document

    from quickstart_jobs import add

    template = job_json(add(1, 2))
    t0 = time.perf_counter()
    with open_queue_db(project) as db:
        for f in range(flows):
            mix = MIXES[0 if f % 10 < 8 else f % 10 - 7]
            flow_uuid, docs = str(uuidlib.uuid4()), []
            for i in range(per_flow):
                d = new_job_document({**template, "uuid": str(uuidlib.uuid4())}, [], flow_uuid,
                                     {"worker": "local"}, state=mix[i % 100])  # fmt: skip
                d["created_on"] = d["updated_on"] = now_iso(timedelta(days=(f + i) % 10, seconds=i))
                docs.append(d)
            db.insert_flow({"uuid": flow_uuid, "name": f"flow-{f}", "n_jobs": per_flow,
                            "state": str(flow_state(d["state"] for d in docs))}, docs)  # fmt: skip
    return time.perf_counter() - t0


def section_queue(flows: int, root, summary: list) -> None:
    """Run the section with ``flows`` flows of 1,000 jobs in a project under ``root``, print its
    tables and add its targets to ``summary`` (a list of (section, target, measured, met))."""
    project, env = load_bench_project(root)
    n = flows * 1_000
    build = fill_queue(project, flows)
    size = project.queue_db_path.stat().st_size / 1e6
    print_table(f"queue: building the database ({n:,} jobs in {flows:,} flows, 1,000 per insert_flow)",
                ["jobs", "build s", "jobs per s", "file MB"],
                [(f"{n:,}", f"{build:.1f}", f"{n / build:,.0f}", f"{size:,.0f}")])  # fmt: skip
    rows, found = [], {}
    for args in (["flow", "report", "--json"], ["flow", "list"], ["job", "list"]):
        cmd = [sys.executable, str(ROOT / "jfr.py"), *args]
        runs = [run_measured(cmd, env, timeout=300) for _ in range(4)]  # the first is not counted
        if any(r[3] != 0 for r in runs):
            raise RuntimeError(f"{' '.join(args)} exited {[r[3] for r in runs]}")
        wall = statistics.median(r[0] for r in runs[1:])
        rss = max(r[2] for r in runs[1:]) * 1024 / 1e6
        found[args[1]] = (wall, rss)
        rows.append((f"jfr {' '.join(args)}", f"{wall:.3f}", " ".join(f"{r[0]:.3f}" for r in runs[1:]),
                     f"{statistics.median(r[1] for r in runs[1:]):.2f}", f"{rss:.0f}"))  # fmt: skip
    print_table(f"queue: commands over {n:,} jobs (python jfr.py ..., median of 3 after one unmeasured run)",
                ["command", "wall s", "runs s", "CPU s", "peak RSS MB"], rows)  # fmt: skip
    full = n >= 1_000_000
    (rw, rr), (lw, _) = found["report"], found["list"]
    where = "" if full else f" (measured at {n:,}; 1,000,000 needs --full)"
    summary.append(("queue", "1,000,000 jobs: flow report < 1 s and < 100 MB",
                    f"{rw:.2f} s, {rr:.0f} MB{where}", (rw < 1 and rr < 100) if full else None))  # fmt: skip
    summary.append(("queue", "1,000,000 jobs: flow list < 0.2 s", f"{lw:.3f} s{where}", lw < 0.2 if full else None))
