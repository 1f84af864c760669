"""How fast the command line answers.

Prints the median wall time of ``jfr --help``, ``jfr job list`` (the newest 100
rows) and ``jfr job info ID`` with 1,000 and 100,000 jobs in the embedded queue
database, and of ``jf --help`` / ``jf job list`` when jobflow-remote is installed.
The installed ``jfr`` script is used when there is one (as users run it), else
``python jfr.py``.

    python bench/cli.py [--repeat N]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
import uuid

from common import ROOT, make_project, tmpdir


def median_ms(cmd, env, repeat) -> float:
    """Median wall time; waits with a blocking wait (Popen.wait(timeout) polls in steps of up
    to 50 ms, which would be measured too) and a watchdog that kills a hung command."""
    import threading

    times = []
    for _ in range(repeat + 1):  # the first run writes the bytecode caches
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        watchdog = threading.Timer(120, proc.kill)
        watchdog.start()
        code = proc.wait()
        watchdog.cancel()
        times.append(time.perf_counter() - t0)
        if code != 0:
            raise SystemExit(f"{' '.join(cmd)} exited {code}")
    return statistics.median(times[1:]) * 1000


def median_ms_any(cmd, env, repeat) -> float:
    """Like median_ms, for a command whose exit code does not matter."""
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            proc.wait(timeout=120)
        except subprocess.TimeoutExpired:
            proc.kill()
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1000


def fill(project, total: int) -> None:
    """Add jobs (realistic documents: a serialized jobflow job) until there are ``total``."""
    from monty.json import MontyEncoder

    from jfr_lib.queue_db import open_queue_db

    from quickstart_jobs import add

    template = json.loads(json.dumps(add(1, 2).as_dict(), cls=MontyEncoder))
    with open_queue_db(project) as db:
        have = db.count_jobs()
        while have < total:
            n = min(1000, total - have)
            flow = uuid.uuid4().hex
            jobs = []
            for _ in range(n):
                u = str(uuid.uuid4())
                jobs.append({"uuid": u, "index": 1, "name": "add", "state": "COMPLETED", "worker": "local",
                             "flow_uuid": flow, "parents": [], "job": {**template, "uuid": u}})  # fmt: skip
            db.insert_flow({"uuid": flow, "name": "bench", "state": "COMPLETED", "n_jobs": n}, jobs)
            have += n


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeat", type=int, default=15)
    args = parser.parse_args()
    env = make_project(tmpdir())
    env.pop("PYTHONDONTWRITEBYTECODE", None)  # measure with bytecode caches, as installed
    from jfr_lib.config import load_project

    project = load_project("bench")
    exe = shutil.which("jfr")
    jfr = [os.path.realpath(exe)] if exe and "shims" not in exe else [sys.executable, str(ROOT / "jfr.py")]
    if exe and "shims" in exe:  # a version manager's shim adds its own start-up time: call the real script
        real = os.path.join(os.path.dirname(sys.executable), "jfr")
        jfr = [real] if os.path.exists(real) else jfr
    print(f"command: {' '.join(jfr)}")
    print(f"{'jobs':>8}  {'--help':>8}  {'job list':>9}  {'job info':>9}   (median ms of {args.repeat})")
    for total in (1_000, 100_000):
        fill(project, total)
        helps = median_ms([*jfr, "--help"], env, args.repeat)
        lists = median_ms([*jfr, "job", "list"], env, args.repeat)
        infos = median_ms([*jfr, "job", "info", str(total // 2)], env, args.repeat)
        print(f"{total:>8}  {helps:>8.0f}  {lists:>9.0f}  {infos:>9.0f}", flush=True)
    jf = os.environ.get("JF_BIN") or shutil.which("jf")
    if jf:
        print(f"jobflow-remote: jf --help {median_ms([jf, '--help'], env, 5):.0f} ms; "
              f"jf job list (no project) {median_ms_any([jf, 'job', 'list'], env, 5):.0f} ms")
    else:
        print("jobflow-remote (jf) is not installed (or set JF_BIN): no side-by-side figures")


if __name__ == "__main__":
    main()
