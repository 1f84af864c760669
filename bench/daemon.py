"""The runner daemon: its memory idle and busy, and how soon a child starts after its parent.

Starts ``jfr runner start`` (the daemon) on a throw-away project with a local
worker, samples the summed PSS of the daemon's processes (parent and action
processes; the jobs themselves excluded) while idle and while a 40-job flow
runs, then runs a chain of 15 jobs and prints the gap between each job's end
and its child's start (worker clock, same machine).

    python bench/daemon.py
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import time
from datetime import datetime

from common import ROOT, MemorySampler, make_project, tmpdir


def jfr(env, *args):
    return subprocess.run([sys.executable, str(ROOT / "jfr.py"), *args], env=env, check=True,
                          capture_output=True, text=True, timeout=120)  # fmt: skip


def wait_done(project, flow_uuid, n, timeout=600):
    from jfr_lib.queue_db import open_queue_db

    deadline = time.monotonic() + timeout
    with open_queue_db(project) as db:
        while time.monotonic() < deadline:
            if db.count_jobs({"flow_uuid": flow_uuid, "state": "COMPLETED"}) >= n:
                return db.find_jobs({"flow_uuid": flow_uuid}, sort=[("db_id", 1)])
            time.sleep(0.05)
    raise TimeoutError(flow_uuid)


def main():
    from jobflow import Flow

    from jfr_lib import lease, submit_flow
    from jfr_lib.config import load_project
    from jfr_lib.queue_db import open_queue_db

    from quickstart_jobs import add

    env = make_project(tmpdir())
    project = load_project("bench")
    jfr(env, "runner", "start")
    with open_queue_db(project) as db:
        pid = lease.read(db)["pid"]
    try:
        time.sleep(3)
        idle = MemorySampler(pid)
        idle.start()
        time.sleep(5)
        idle.stop.set()
        busy = MemorySampler(pid)
        busy.start()
        flow = Flow([add(i, 1) for i in range(40)])
        submit_flow(flow, project=project)
        wait_done(project, flow.uuid, 40)
        busy.stop.set()
        print(f"daemon memory (PSS, parent + 6 action processes + warm server): idle {idle.peak_kib / 1024:.0f} MiB, "
              f"busy peak {busy.peak_kib / 1024:.0f} MiB (40 independent jobs)")  # fmt: skip

        jobs = [add(0, 1)]
        for _ in range(14):
            jobs.append(add(jobs[-1].output, 1))
        chain = Flow(jobs)
        t0 = time.perf_counter()
        submit_flow(chain, project=project)
        docs = wait_done(project, chain.uuid, 15)
        wall = time.perf_counter() - t0
        gaps = [(datetime.fromisoformat(b["start_time"]) - datetime.fromisoformat(a["end_time"])).total_seconds()
                for a, b in zip(docs, docs[1:])]  # fmt: skip
        print(f"chain of 15: {wall:.2f} s ({wall / 15:.2f} s per link); parent end -> child start: "
              f"median {statistics.median(gaps):.2f} s, max {max(gaps):.2f} s")  # fmt: skip
    finally:
        jfr(env, "runner", "stop")


if __name__ == "__main__":
    main()
