"""Throughput of the embedded default with a local worker, and what a job costs the runner.

Prints, for 1 job, 10 and 50 independent jobs and a chain of 10: the wall time
from submit_flow to every job COMPLETED (the runner already running, as in
production), the time per job, and the peak memory (PSS) of the runner's
processes together, job processes excluded.

Then compares a chain link with the bare cost of a job process:

- warm (the default: local jobs fork from the runner's warm server): the link of
  the chain of 10 above [target: at most 0.08 s];
- cold (a second project with ``runner: {warm_start: false}``): the link of a
  chain of 10, against ``python -m jfr_lib.worker RUN_DIR`` run by hand on copies
  of a run folder the chain left [target: at most 1.1x that], and
  ``python -c "import jobflow"`` as the floor of any cold start;

and prints the CPU per job: utime + stime of the runner's own processes (parent,
action processes, warm server; read from /proc/PID/stat every 0.1 s, so a
process the runner replaced still counts) divided by the number of jobs
[target: at most 0.02 s, in every case of 10 jobs or more]; apart, the CPU of the commands the actions ran and
reaped (the ``bash -c`` that submits a shell job), and of the jobs (warm: the
warm server's reaped children; cold: the hand-run worker).

Examples
--------
About a minute on 2 cores::

    python bench/throughput.py [--repeat N]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import time

from common import (
    RunnerProcess,
    RunnerSampler,
    chain,
    load_bench_project,
    make_project,
    print_table,
    run_measured,
    tmpdir,
    wait_completed,
    warm_up,
)

WARM_LINK = 0.08
COLD_RATIO = 1.1
RUNNER_CPU = 0.02


def cases():
    from jobflow import Flow

    from quickstart_jobs import add

    def independent(n):
        return Flow([add(i, 1) for i in range(n)])

    return [("1 job", lambda: independent(1), 1), ("10 independent", lambda: independent(10), 10),
            ("50 independent", lambda: independent(50), 50), ("chain of 10", lambda: chain(10), 10)]  # fmt: skip


def cpu_split(before: dict, after: dict) -> tuple:
    """CPU s spent between two :meth:`RunnerSampler.cpu` readings: (the runner's own processes,
    commands the action processes reaped, jobs the warm server reaped)."""

    def delta(name, which):
        return after[name][which] - before.get(name, (0.0, 0.0))[which]

    own = sum(delta(name, 0) for name in after)
    # the parent's reaped children are action processes, already counted as themselves
    helpers = sum(delta(name, 1) for name in after if name not in ("runner", "jfr-warm"))
    jobs = delta("jfr-warm", 1) if "jfr-warm" in after else 0.0
    return own, helpers, jobs


def timed_runs(project, sampler, make, n, repeat) -> tuple:
    """Wall times of ``repeat`` flows, and the CPU split per job over all of them."""
    from jfr_lib import submit_flow

    times, before = [], sampler.cpu()
    for _ in range(repeat):
        flow = make()
        t0 = time.perf_counter()
        submit_flow(flow, project=project)
        wait_completed(project, flow.uuid, n)
        times.append(time.perf_counter() - t0)
    return times, tuple(x / (n * repeat) for x in cpu_split(before, sampler.cpu()))


def bare_worker(project, env, flow_uuid, repeat) -> tuple:
    """Wall and CPU s (medians) of ``python -m jfr_lib.worker`` on copies of a run folder of the
    flow (its last job, references resolved), and of ``python -c "import jobflow"``."""
    from jfr_lib.queue_db import open_queue_db
    from jfr_lib.rundir import IN_FILE

    with open_queue_db(project) as db:
        source = db.find_jobs({"flow_uuid": flow_uuid}, sort=[("db_id", -1)], limit=1)[0]["run_dir"]
    root = tmpdir()
    worker, imports = [], []
    for i in range(repeat + 1):  # the first of each is not counted (caches)
        folder = root / f"run{i}"
        folder.mkdir()
        shutil.copy(os.path.join(source, IN_FILE), folder / IN_FILE)
        wall, cpu, _, code = run_measured([sys.executable, "-m", "jfr_lib.worker", str(folder)], env, cwd=folder)
        if code != 0:
            raise RuntimeError(f"python -m jfr_lib.worker {folder} exited {code}")
        worker.append((wall, cpu))
        imports.append(run_measured([sys.executable, "-c", "import jobflow"], env)[:2])
    shutil.rmtree(root, ignore_errors=True)

    def medians(runs):
        return statistics.median(r[0] for r in runs[1:]), statistics.median(r[1] for r in runs[1:])

    return medians(worker), medians(imports)


def warm_cases(root, repeat: int, cpu: dict) -> float:
    """The cases on the default project (warm starts), printed as they end; the chain's link."""
    env = make_project(root)
    from jfr_lib.config import load_project

    project = load_project("bench")
    runner = RunnerProcess(env)
    sampler = RunnerSampler(runner.proc.pid)
    sampler.start()
    time.sleep(3)  # let the runner start
    idle_kib = runner.sampler.peak_kib
    print(f"{'case':<16} {'wall s (median)':>16} {'s per job':>10}   runs")
    try:
        for label, make, n in cases():
            times, cpu[label] = timed_runs(project, sampler, make, n, repeat)
            med = statistics.median(times)
            runs = " ".join(f"{t:.2f}" for t in times)
            print(f"{label:<16} {med:>16.2f} {med / n:>10.2f}   {runs}", flush=True)
    finally:
        sampler.halt.set()
        peak = runner.stop()
    print(f"runner memory (PSS, parent + action processes + warm server): idle {idle_kib / 1024:.0f} MiB, "
          f"peak {peak / 1024:.0f} MiB")  # fmt: skip
    print()
    return med / n  # the chain comes last


def cold_chain(root, repeat: int, cpu: dict) -> tuple:
    """Chains of 10 on a project without warm starts; their link, and the bare job process's figures."""
    project, env = load_bench_project(root, extra="runner:\n  warm_start: false\n")
    runner = RunnerProcess(env)
    sampler = RunnerSampler(runner.proc.pid)
    sampler.start()
    flows = []

    def make_chain():
        flows.append(chain(10))
        return flows[-1]

    try:
        warm_up(project)
        times, cpu["cold chain of 10"] = timed_runs(project, sampler, make_chain, 10, repeat)
    finally:
        sampler.halt.set()
        runner.stop()
    return statistics.median(times) / 10, bare_worker(project, env, flows[-1].uuid, max(repeat, 5))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeat", type=int, default=3, help="runs per case (median is shown)")
    args = parser.parse_args()
    roots, cpu = [tmpdir(), tmpdir()], {}
    try:
        warm_link = warm_cases(roots[0], args.repeat, cpu)
        cold_link, ((job_wall, job_cpu), (import_wall, import_cpu)) = cold_chain(roots[1], args.repeat, cpu)
    finally:
        for root in roots:
            shutil.rmtree(root, ignore_errors=True)
    print_table(f"chain link against the bare job process (s; links: median of {args.repeat} chains of 10, "
                f"job process: median of {max(args.repeat, 5)} runs by hand after one unmeasured)",
                ["start", "chain link", "job process (wall)", "link / job process", "job process CPU",
                 "python -c 'import jobflow'"],
                [("warm", f"{warm_link:.3f}", "-", "-", f"{cpu['chain of 10'][2]:.3f} (in the warm server)", "-"),
                 ("cold", f"{cold_link:.3f}", f"{job_wall:.3f}", f"{cold_link / job_wall:.2f}", f"{job_cpu:.3f}",
                  f"{import_wall:.3f} (CPU {import_cpu:.3f})")])  # fmt: skip
    print_table("CPU per job (s): the runner's own processes; the commands they ran (bash -c for a submission); "
                "the jobs the warm server forked (cold jobs are nobody's children here: see above)",
                ["case", "runner", "commands", "warm jobs"],
                [(label, f"{own:.4f}", f"{helpers:.4f}", f"{jobs:.4f}" if "cold" not in label else "-")
                 for label, (own, helpers, jobs) in cpu.items()])  # fmt: skip
    # a lone job also pays the runner's idle wake-ups between flows: judged on flows of 10 jobs or more
    worst = max(((k, v) for k, v in cpu.items() if k != "1 job"), key=lambda kv: kv[1][0])
    print_table("targets", ["target", "measured", "verdict"], [
        (f"warm chain link <= {WARM_LINK} s", f"{warm_link:.3f} s", verdict(warm_link <= WARM_LINK)),
        (f"cold chain link <= {COLD_RATIO}x the cold job process", f"{cold_link:.3f} s / {job_wall:.3f} s = "
         f"{cold_link / job_wall:.2f}x", verdict(cold_link <= COLD_RATIO * job_wall)),
        (f"runner CPU per job <= {RUNNER_CPU} s", f"at most {worst[1][0]:.4f} s ({worst[0]})",
         verdict(worst[1][0] <= RUNNER_CPU)),
    ])  # fmt: skip


def verdict(ok: bool) -> str:
    return "met" if ok else "NOT MET"


if __name__ == "__main__":
    main()
