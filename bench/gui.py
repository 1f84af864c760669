"""The dashboard (``jfr gui``) over big queues: time of its pages' API calls, and its memory.

For each size (1,000 and 100,000 jobs by default, in flows of 1,000 independent jobs
built as ``bench/scale.py``'s ``queue`` section builds them), a real ``jfr gui --port 0``
is started as a subprocess and asked, through HTTP on 127.0.0.1 with its token, for:
the first, the 500th, a middle and the last page of jobs (50 per page, newest first),
a page filtered by state and sorted by name, the overview, the flows page, a flow with
its graph (1,000 jobs: read once from a flow not shown before, then polled, when it
comes from the dashboard's cache of graphs unless the flow changed), and the report.
Each is timed as the client sees it (the server's time plus a loopback round trip),
median of 5 after one unmeasured call. Then the server process's resident memory
(RSS, and its peak VmHWM) is read from ``/proc``.

Targets: every jobs page and the flow graph under 0.3 s at 100,000 jobs.

Examples
--------
::

    python bench/gui.py
    python bench/gui.py --sizes 1000,100000,300000
"""

from __future__ import annotations

import argparse
import shutil
import signal
import statistics
import subprocess
import sys
import time

from scale_queue import fill_queue

from common import ROOT, load_bench_project, print_table, tmpdir

TARGET = 0.3
RUNS = 5


def rss_mb(pid: int) -> tuple:
    """(VmRSS, VmHWM) of a process, in MB."""
    fields = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                fields[key] = int(value.split()[0]) / 1024
    return fields.get("VmRSS", 0.0), fields.get("VmHWM", 0.0)


def timed(client, path: str) -> tuple:
    """(median seconds of RUNS calls after one unmeasured, size of the answer in bytes)."""
    first = client.get(path)
    if first.status_code != 200:
        raise RuntimeError(f"{path}: {first.status_code} {first.text[:200]}")
    times = []
    for _ in range(RUNS):
        t0 = time.perf_counter()
        client.get(path).raise_for_status()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), len(first.content)


def measure(n: int, keep: bool) -> dict:
    """Build a queue of ``n`` jobs, serve it, time the calls; the figures."""
    import httpx

    root = tmpdir()
    project, env = load_bench_project(root)
    flows = max(1, n // 1_000)
    build = fill_queue(project, flows)
    proc = subprocess.Popen([sys.executable, str(ROOT / "jfr.py"), "gui", "--port", "0"], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)  # fmt: skip
    try:
        line = proc.stdout.readline()
        if "?token=" not in line:
            raise RuntimeError(f"jfr gui did not start: {proc.stderr.read()}")
        base, token = line.split()[-1].split("/?token=")
        idle = rss_mb(proc.pid)[0]
        calls = {}
        with httpx.Client(base_url=base, headers={"Authorization": f"token {token}"}, timeout=120) as client:
            pages = client.get("/api/jobs").json()["pages"]
            t0 = time.perf_counter()  # a flow not read before: its graph is decoded, not taken from the cache
            fresh = client.get(f"/api/flows/{flows // 2 + 1}")
            calls["flow graph, first read (1 call)"] = (time.perf_counter() - t0, len(fresh.content))
            paths = {
                "jobs, page 1": "/api/jobs",
                "jobs, page 500": f"/api/jobs?page={min(500, pages)}",
                "jobs, middle page": f"/api/jobs?page={max(1, pages // 2)}",
                "jobs, last page": f"/api/jobs?page={pages}",
                "jobs, FAILED by name": "/api/jobs?state=FAILED&sort=name&order=asc&page=2",
                "flow graph (1,000 jobs), polled": "/api/flows/1",
                "overview": "/api/overview",
                "flows, page 1": "/api/flows",
                "report, 30 days": "/api/report?days=30",
            }
            for label, path in paths.items():
                calls[label] = timed(client, path)
        now, peak = rss_mb(proc.pid)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()
        if not keep:
            shutil.rmtree(root, ignore_errors=True)
    return {"n": n, "build": build, "calls": calls, "idle": idle, "rss": now, "peak": peak}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="1000,100000", help="queue sizes, comma-separated (default 1000,100000)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary projects")
    args = parser.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",")]
    results = []
    for n in sizes:
        print(f"... {n:,} jobs", flush=True)
        results.append(measure(n, args.keep))
    labels = list(results[0]["calls"])
    print_table("jfr gui: API calls as the client sees them (ms, median of 5 after one unmeasured call)",
                ["call", *(f"{r['n']:,} jobs" for r in results), "answer KB"],
                [(label, *(f"{r['calls'][label][0] * 1000:.1f}" for r in results),
                  f"{results[-1]['calls'][label][1] / 1024:.0f}") for label in labels])  # fmt: skip
    print_table("jfr gui: the server process's memory (MB)",
                ["jobs", "queue build s", "RSS idle", "RSS after the calls", "peak RSS"],
                [(f"{r['n']:,}", f"{r['build']:.1f}", f"{r['idle']:.0f}", f"{r['rss']:.0f}", f"{r['peak']:.0f}")
                 for r in results])  # fmt: skip
    big = results[-1]
    worst = max(t for label, (t, _) in big["calls"].items() if label.startswith(("jobs", "flow graph")))
    met = "met" if worst < TARGET else "not met"
    print(f"target: jobs pages and flow graph under {TARGET} s at {big['n']:,} jobs: worst {worst:.3f} s ({met})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
