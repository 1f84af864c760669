"""Sections ``outputs`` and ``collect`` of ``bench/scale.py``: a JobStore holding many outputs.

``outputs`` times ``JobStore.get_output`` and the links of a chain run by a real
runner as the embedded JobStore grows; ``collect`` times the upload of a job
resolving 1,000 references at 100,000 outputs while short jobs go on completing.

Examples
--------
::

    python bench/scale.py --sections outputs,collect
"""

from __future__ import annotations

import random
import statistics
import time
import uuid as uuidlib
from datetime import datetime, timezone

from common import RunnerProcess, chain, load_bench_project, print_table, wait_completed, warm_up

#: Outputs the collect section needs in the store.
COLLECT_STORE = 100_000
REFERENCES = 1_000
SHORT_JOBS = 20
#: Chains timed per store size.
CHAINS = 5


def output_doc(rng: random.Random) -> dict:
    """An output document as jobflow writes it, about 2.5 KB of JSON."""
    return {
        "uuid": str(uuidlib.uuid4()),
        "index": 1,
        "output": {"energy": rng.random(), "formula": "Si2O4", "converged": True,
                   "forces": [[round(rng.uniform(-1, 1), 12) for _ in range(3)] for _ in range(40)]},
        "completed_at": datetime.now(timezone.utc).isoformat(),
        "metadata": {"bench": "scale"},
        "hosts": [str(uuidlib.uuid4())],
        "name": "relax",
    }  # fmt: skip


class OutputProject:
    """A project whose embedded JobStore is filled with outputs, shared by both sections."""

    def __init__(self, root):
        from jfr_lib.jobstore import get_jobstore

        self.project, self.env = load_bench_project(root)
        self.store = get_jobstore(self.project)
        self.uuids = []  # of the outputs filled in (all with output["energy"])
        self.rng = random.Random(1)

    def fill(self, size: int) -> float:
        """Add outputs until the store holds ``size`` of ours, 1,000 per update; seconds taken."""
        t0 = time.perf_counter()
        while len(self.uuids) < size:
            batch = [output_doc(self.rng) for _ in range(min(1_000, size - len(self.uuids)))]
            self.store.docs_store.update(batch, key=["uuid", "index"])
            self.uuids += [d["uuid"] for d in batch]
        return time.perf_counter() - t0

    def close(self) -> None:
        self.store.close()


def chain_links(project, env, runs: int = CHAINS, length: int = 10) -> list:
    """Seconds per link of ``runs`` chains of ``length`` jobs, on a fresh, warmed-up runner."""
    from jfr_lib import submit_flow

    runner = RunnerProcess(env)
    try:
        warm_up(project)
        links = []
        for _ in range(runs):
            flow = chain(length)
            t0 = time.perf_counter()
            submit_flow(flow, project=project)
            wait_completed(project, flow.uuid, length, timeout=300)
            links.append((time.perf_counter() - t0) / length)
        return links
    finally:
        runner.stop()


def section_outputs(outputs: OutputProject, sizes: list, summary: list) -> None:
    """Run the section, print its table and add its targets to ``summary``.

    Parameters
    ----------
    outputs
        The project whose JobStore grows (shared with ``collect``).
    sizes
        Numbers of stored outputs to measure at, filled in increasing order.
    summary
        List of (section, target, measured, met) to append to.
    """
    rows, found = [], {}
    for size in sorted(sizes):
        fill = outputs.fill(size)
        gets = []
        for u in random.choices(outputs.uuids, k=50) if outputs.uuids else []:
            t0 = time.perf_counter()
            outputs.store.get_output(u)
            gets.append(time.perf_counter() - t0)
        links = chain_links(outputs.project, outputs.env)
        found[size] = (statistics.median(gets) if gets else None, statistics.median(links))
        get_text = f"{found[size][0] * 1000:.2f}" if gets else "-"
        rows.append((f"{size:,}", f"{fill:.1f}", get_text, f"{found[size][1]:.3f}",
                     " ".join(f"{x:.3f}" for x in links)))  # fmt: skip
        print(f"  ... {size:,} outputs done", flush=True)
    print_table(f"outputs: a JobStore growing to {max(sizes):,} outputs of ~2.5 KB (a fresh runner per size, warmed "
                f"up by one job; each size's chains add {CHAINS * 10 + 1} outputs)",
                ["outputs", "fill s", "get_output ms (median of 50)", f"chain link s (median of {CHAINS})",
                 "links s"], rows)  # fmt: skip
    big = found.get(100_000)
    summary.append(("outputs", "get_output at 100,000 outputs < 5 ms",
                    f"{big[0] * 1000:.2f} ms" if big and big[0] else "-", big[0] < 0.005 if big else None))  # fmt: skip
    empty = found.get(0)
    ratio = big[1] / empty[1] if big and empty else None
    summary.append(("outputs", "chain link at 100,000 <= 1.2x empty store",
                    f"{big[1]:.3f} s vs {empty[1]:.3f} s ({ratio:.2f}x)" if ratio else "-",
                    ratio <= 1.2 if ratio else None))  # fmt: skip


def watch_upload(db, job_id: int, short_flow: str, timeout: float = 300) -> dict:
    """Poll every 5 ms for when the upload action locks the job and when the job leaves
    CHECKED_OUT (wall-clock times), and the states of the short jobs at the first moment."""
    seen = {}
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        state = next(iter(db.count_states({"db_id": job_id})))
        if "start" not in seen and db.count_jobs({"db_id": job_id, "state": "CHECKED_OUT", "locked": True}):
            seen.update(start=time.time(), short=db.count_states({"flow_uuid": short_flow}))
        if state not in ("WAITING", "READY", "CHECKED_OUT"):
            seen["end"] = time.time()
            if "start" not in seen:  # faster than one poll
                seen.update(start=seen["end"], short=db.count_states({"flow_uuid": short_flow}))
            return seen
        time.sleep(0.005)
    raise TimeoutError(f"job {job_id} not uploaded after {timeout} s")


def completion_times(db, flow_uuid: str) -> list:
    """When each job of a flow became COMPLETED (its last ``updated_on``), as POSIX times."""
    return sorted(datetime.fromisoformat(j["updated_on"]).timestamp() for j in db.find_jobs({"flow_uuid": flow_uuid})
                  if j["state"] == "COMPLETED")  # fmt: skip


def collect_run(outputs: OutputProject, refs: list, label: str, wait_submitted: bool) -> tuple:
    """Submit the short jobs, then (at once, or once none is left UPLOADED) the collect job;
    watch its upload. Returns the upload time and a table row."""
    from bench_jobs import collect, sleep_add
    from jobflow import Flow, OutputReference

    from jfr_lib import submit_flow
    from jfr_lib.queue_db import open_queue_db

    gather = collect([OutputReference(u, attributes=(("i", "energy"),)) for u in refs])
    short, gather_flow = Flow([sleep_add(i, 1, 0.05) for i in range(SHORT_JOBS)]), Flow([gather])
    runner = RunnerProcess(outputs.env)
    try:
        warm_up(outputs.project)
        with open_queue_db(outputs.project) as db:
            submit_flow(short, project=outputs.project)
            while wait_submitted and db.count_jobs({"flow_uuid": short.uuid, "state": ["READY", "CHECKED_OUT",
                                                                                        "UPLOADED"]}):  # fmt: skip
                time.sleep(0.005)
            t_submit = time.perf_counter()
            job_id = submit_flow(gather_flow, project=outputs.project, allow_external_references=True)[0]
            seen = watch_upload(db, job_id, short.uuid)
            wait_completed(outputs.project, gather_flow.uuid, 1, timeout=300)
            total = time.perf_counter() - t_submit
            wait_completed(outputs.project, short.uuid, SHORT_JOBS, timeout=300)
            done = completion_times(db, short.uuid)
    finally:
        runner.stop()
    upload = seen["end"] - seen["start"]
    during = sum(seen["start"] <= t <= seen["end"] for t in done)
    at_start = " ".join(f"{n} {s}" for s, n in sorted(seen["short"].items()))
    return (upload, label, f"{upload:.2f}", f"{total:.2f}", at_start, during,
            f"{done[0] - seen['start']:+.2f}, {done[-1] - seen['start']:+.2f}",
            outputs.store.get_output(gather.uuid))  # fmt: skip


def section_collect(outputs: OutputProject, summary: list) -> None:
    """Run the section (filling the store up to 100,000 outputs first), print its table and add
    its targets to ``summary`` (a list of (section, target, measured, met))."""
    import json

    from bench_jobs import collect
    from jobflow import OutputReference
    from jobflow.core.reference import OnMissing
    from monty.json import MontyEncoder

    from jfr_lib.actions.upload import resolve_references

    fill = outputs.fill(COLLECT_STORE)
    refs = random.sample(outputs.uuids[:COLLECT_STORE], REFERENCES)
    gather = collect([OutputReference(u, attributes=(("i", "energy"),)) for u in refs])
    # the same resolution in this process, without a runner, for comparison
    args = json.loads(json.dumps(gather.as_dict(), cls=MontyEncoder))["function_args"]
    t0 = time.perf_counter()
    resolve_references(args, outputs.store, OnMissing.ERROR, {})
    alone = time.perf_counter() - t0

    rows = []
    for label, wait_submitted in (("just before", False), ("once they are submitted", True)):
        rows.append(collect_run(outputs, refs, label, wait_submitted))
    print_table(f"collect: a job with {REFERENCES:,} references at {COLLECT_STORE:,} outputs (filled in {fill:.1f} s; "
                f"resolving them in this process, no runner: {alone:.2f} s); {SHORT_JOBS} short jobs (0.05 s) "
                "submitted before it; times in s",
                ["collect job submitted", "upload (lock -> UPLOADED)", "submit -> COMPLETED",
                 "short jobs when the upload began", "completed during it", "first, last completion",
                 "job's result"], [r[1:] for r in rows])  # fmt: skip
    upload, during = rows[0][0], rows[0][5]
    summary.append(("collect", f"upload resolving {REFERENCES:,} references < 2 s", f"{upload:.2f} s", upload < 2))
    summary.append(("collect", "short jobs COMPLETED during that upload >= 1",
                    f"{during} ({rows[1][5]} if submitted once they are past UPLOADED)", during >= 1))  # fmt: skip
