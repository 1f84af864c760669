"""What must not grow with history: outputs, references, fan-outs, big queues, large outputs.

Every section builds its own throw-away project in a temporary folder (removed at
the end unless ``--keep``), fills it through jfr's own APIs (JobStore ``update`` and
``QueueDB.insert_flow`` in batches, never one ``submit_flow`` per job), prints a
small table with its units, and checks its targets; a summary of the targets, with
the measured value and met / not met, ends the run. Nothing is asserted.

Notes
-----
The sections (``--sections``, comma-separated, all by default), targets in brackets:

outputs
    An embedded JobStore holding 0 / 1,000 / 10,000 / 100,000 outputs (``--sizes``)
    of about 2.5 KB each, shaped as jobflow writes them, filled incrementally. Per
    size: the median of 50 ``JobStore.get_output`` of random stored uuids [under 5 ms
    at 100,000], and the time per link of a 10-job chain (``quickstart_jobs.add``) run
    by a real runner with warm local jobs, median of 5 chains [at 100,000 within 1.2x
    of the empty store]. Each size gets a fresh runner, warmed up by one job, so that
    every size starts from the same state.
collect
    At 100,000 outputs, a job whose argument is a list of 1,000 ``OutputReference``
    to stored outputs (``output["energy"]``). Its upload (CHECKED_OUT and locked ->
    UPLOADED, seen by polling the queue database every 5 ms) resolves them [under
    2 s]. 20 short jobs (``bench_jobs.sleep_add``, 0.05 s) submitted just before it
    should meanwhile reach COMPLETED [at least one during the upload]. A second run
    submits the job once the short jobs have left UPLOADED, for comparison.
fanout
    A flow of one parent, N - 1 children reading its output and one job gathering
    them all (N = 20,000 and 100,000). Jobs are put in DOWNLOADED with a fake run
    folder and ``jfr_lib.actions.complete.complete`` is called directly, as the
    complete action does: for the parent (which releases every child), for the first
    K = 200 children, then, once all but the last K are marked COMPLETED by a direct
    update, for the last K (each checks whether the gathering job, with N - 1
    parents, may run). Median time per completion at the start and at the end
    [20,000: end within 1.5x of start; 100,000: under 10 ms].
queue
    100,000 jobs in 100 flows (1,000,000 in 1,000 flows with ``--full``): the time to
    build the database, then ``jfr flow report --json``, ``jfr flow list`` and ``jfr
    job list`` as subprocesses, median wall time of 3 (after one unmeasured run) and
    peak RSS [at 1,000,000: flow report under 1 s and 100 MB, flow list under 0.2 s].
memory
    Twenty flows in a row, each a job returning a 50 MiB string and a job reading its
    length, on a running runner. Every 0.1 s, the RSS and PSS of each runner process
    (the parent, each action process, the warm server; jobs excluded), by process
    name since the runner replaces an action process that grew by more than
    ``runner.recycle_memory_mb``: peak, after the first flow and at the end [final
    under 200 MB for every process; no growth from the first flow to the twentieth].

Examples
--------
The default run takes about 3 minutes on 2 cores (under 10 on a busy machine);
``--full`` adds about 2 minutes::

    python bench/scale.py
    python bench/scale.py --sections outputs,collect --sizes 0,10000,100000
    python bench/scale.py --full
"""

from __future__ import annotations

import argparse
import shutil
import time

from common import print_table, tmpdir

SECTIONS = ("outputs", "collect", "fanout", "queue", "memory")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sections", default=",".join(SECTIONS), metavar="LIST",
                        help=f"comma-separated sections to run (default: {','.join(SECTIONS)})")  # fmt: skip
    parser.add_argument("--full", action="store_true",
                        help="a queue of 1,000,000 jobs instead of 100,000")  # fmt: skip
    parser.add_argument("--sizes", default="0,1000,10000,100000", metavar="LIST",
                        help="store sizes of the outputs section (default: 0,1000,10000,100000)")  # fmt: skip
    parser.add_argument("--keep", action="store_true", help="keep the temporary projects")
    args = parser.parse_args()
    chosen = [s.strip() for s in args.sections.split(",") if s.strip()]
    unknown = sorted(set(chosen) - set(SECTIONS))
    if unknown:
        parser.error(f"unknown sections: {', '.join(unknown)} (known: {', '.join(SECTIONS)})")
    from scale_memory import section_memory
    from scale_outputs import OutputProject, section_collect, section_outputs
    from scale_queue import section_fanout, section_queue

    summary, roots, started = [], [], time.perf_counter()
    outputs = None
    try:
        for name in [s for s in SECTIONS if s in chosen]:
            t0 = time.perf_counter()
            if name in ("outputs", "collect") and outputs is None:
                outputs = OutputProject(new_root(roots))
            if name == "outputs":
                section_outputs(outputs, [int(s) for s in args.sizes.split(",")], summary)
            elif name == "collect":
                section_collect(outputs, summary)
            elif name == "fanout":
                section_fanout([20_000, 100_000], lambda: new_root(roots), summary)
            elif name == "queue":
                section_queue(1_000 if args.full else 100, new_root(roots), summary)
            elif name == "memory":
                section_memory(new_root(roots), summary)
            print(f"[{name}: {time.perf_counter() - t0:.0f} s]\n", flush=True)
    finally:
        if outputs is not None:
            outputs.close()
        if not args.keep:
            for root in roots:
                shutil.rmtree(root, ignore_errors=True)
    print_summary(summary)
    print(f"total run time: {time.perf_counter() - started:.0f} s")


def new_root(roots: list):
    """A temporary folder for one project, removed at the end (unless --keep)."""
    root = tmpdir()
    roots.append(root)
    return root


def print_summary(summary: list) -> None:
    """The targets: (section, target, measured text, met: True / False / None for not measured)."""
    rows = [(s, t, m, {True: "met", False: "NOT MET", None: "not measured"}[ok]) for s, t, m, ok in summary]
    print_table("Summary of the targets", ["section", "target", "measured", "verdict"], rows)


if __name__ == "__main__":
    main()
