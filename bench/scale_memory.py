"""Section ``memory`` of ``bench/scale.py``: a runner's memory while large outputs go through it.

Twenty flows in a row, each a job returning a 50 MiB string and a job reading its
length, on a running runner; the RSS and PSS of each runner process (parent,
action processes, warm server; jobs excluded), sampled every 0.1 s by process name.

Examples
--------
::

    python bench/scale.py --sections memory
"""

from __future__ import annotations

import time

from common import RunnerProcess, RunnerSampler, load_bench_project, print_table, wait_completed, warm_up

FLOWS = 20
MEGABYTES = 50
#: Seconds left after a flow for a grown action process to be replaced.
SETTLE = 1.5
LIMIT_MB = 200
#: Growth from the first flow to the last still counted as none (sampling noise).
SLACK_MB = 10


def section_memory(root, summary: list) -> None:
    """Run the section, print its table and add its targets to ``summary``.

    Parameters
    ----------
    root
        Folder for the throw-away project.
    summary
        List of (section, target, measured, met) to append to.
    """
    from bench_jobs import big, length
    from jobflow import Flow

    from jfr_lib import submit_flow

    project, env = load_bench_project(root)
    runner = RunnerProcess(env)
    sampler = RunnerSampler(runner.proc.pid)
    sampler.start()
    try:
        warm_up(project)
        sampler.reset_peaks()
        first, walls = None, []
        for i in range(FLOWS):
            producer = big(MEGABYTES)
            flow = Flow([producer, length(producer.output)])
            t0 = time.perf_counter()
            submit_flow(flow, project=project)
            wait_completed(project, flow.uuid, 2, timeout=300)
            walls.append(time.perf_counter() - t0)
            time.sleep(SETTLE)
            if i == 0:
                sampler.sample()
                first = dict(sampler.current)
        sampler.sample()
        final = dict(sampler.current)
    finally:
        sampler.halt.set()
        runner.stop()
    from jfr_lib.jobstore import get_jobstore

    store = get_jobstore(project)
    result_ok = store.get_output(flow.jobs[1].uuid) == MEGABYTES * 1024 * 1024  # the child read it all
    store.close()

    def mb(kib):
        return kib * 1024 / 1e6

    rows, over, grew = [], [], []
    for name in sorted(sampler.peak, key=lambda n: (n != "runner", n)):
        peak, one, end = sampler.peak[name], first.get(name, (0, 0)), final.get(name, (0, 0))
        rows.append((name, len(sampler.pids.get(name, ())), f"{mb(peak[0]):.0f}", f"{mb(peak[1]):.0f}",
                     f"{mb(one[0]):.0f}", f"{mb(one[1]):.0f}", f"{mb(end[0]):.0f}", f"{mb(end[1]):.0f}"))  # fmt: skip
        if mb(end[0]) >= LIMIT_MB:
            over.append(f"{name} {mb(end[0]):.0f}")
        if mb(end[0]) - mb(one[0]) > SLACK_MB:
            grew.append(f"{name} +{mb(end[0]) - mb(one[0]):.0f}")
    print_table(f"memory: {FLOWS} flows in a row, each a {MEGABYTES} MiB output read by a child (MB = 10^6 bytes; "
                f"after a flow: {SETTLE} s later; flow wall median {sorted(walls)[len(walls) // 2]:.1f} s; "
                f"child's result {'right' if result_ok else 'WRONG'})",
                ["process", "seen", "peak RSS", "peak PSS", "RSS after 1st", "PSS after 1st", "final RSS",
                 "final PSS"], rows)  # fmt: skip
    worst = max(final.items(), key=lambda kv: kv[1][0])
    summary.append(("memory", f"final RSS of every runner process < {LIMIT_MB} MB",
                    ", ".join(over) or f"max {worst[0]} {mb(worst[1][0]):.0f} MB", not over))  # fmt: skip
    total_first, total_final = sum(v[0] for v in first.values()), sum(v[0] for v in final.values())
    summary.append(("memory", f"no growth from flow 1 to flow {FLOWS} (> {SLACK_MB} MB per process)",
                    ", ".join(grew) or f"all processes {mb(total_first):.0f} -> {mb(total_final):.0f} MB",
                    not grew))  # fmt: skip
