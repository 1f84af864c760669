"""Throughput of the embedded default with a local worker.

Prints, for 1 job, 10 and 50 independent jobs and a chain of 10: the wall time
from submit_flow to every job COMPLETED (the runner already running, as in
production), the time per job, and the peak memory (PSS) of the runner's
processes together, job processes excluded.

    python bench/throughput.py [--repeat N]
"""

from __future__ import annotations

import argparse
import statistics
import time

from common import RunnerProcess, make_project, tmpdir


def cases():
    from jobflow import Flow

    from quickstart_jobs import add

    def independent(n):
        return Flow([add(i, 1) for i in range(n)])

    def chain(n):
        jobs = [add(0, 1)]
        for _ in range(n - 1):
            jobs.append(add(jobs[-1].output, 1))
        return Flow(jobs)

    return [("1 job", lambda: independent(1), 1), ("10 independent", lambda: independent(10), 10),
            ("50 independent", lambda: independent(50), 50), ("chain of 10", lambda: chain(10), 10)]  # fmt: skip


def wait_completed(project, flow_uuid, n, timeout=600):
    from jfr_lib.queue_db import open_queue_db

    deadline = time.monotonic() + timeout
    with open_queue_db(project) as db:
        while time.monotonic() < deadline:
            states = db.count_states({"flow_uuid": flow_uuid})
            if states.get("COMPLETED", 0) >= n:
                return
            if states.get("FAILED") or states.get("REMOTE_ERROR"):
                raise RuntimeError(f"jobs failed: {states}")
            time.sleep(0.02)
    raise TimeoutError(f"flow {flow_uuid} not done after {timeout} s")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeat", type=int, default=3, help="runs per case (median is shown)")
    args = parser.parse_args()
    env = make_project(tmpdir())
    from jfr_lib import submit_flow
    from jfr_lib.config import load_project

    project = load_project("bench")
    runner = RunnerProcess(env)
    time.sleep(3)  # let the runner start
    idle_kib = runner.sampler.peak_kib
    print(f"{'case':<16} {'wall s (median)':>16} {'s per job':>10}   runs")
    try:
        for label, make, n in cases():
            times = []
            for _ in range(args.repeat):
                flow = make()
                t0 = time.perf_counter()
                submit_flow(flow, project=project)
                wait_completed(project, flow.uuid, n)
                times.append(time.perf_counter() - t0)
            med = statistics.median(times)
            runs = " ".join(f"{t:.2f}" for t in times)
            print(f"{label:<16} {med:>16.2f} {med / n:>10.2f}   {runs}", flush=True)
    finally:
        peak = runner.stop()
    print(f"runner memory (PSS, parent + action processes + warm server): idle {idle_kib / 1024:.0f} MiB, "
          f"peak {peak / 1024:.0f} MiB")  # fmt: skip


if __name__ == "__main__":
    main()
