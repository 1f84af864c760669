"""Batch worker against a plain worker: SLURM over SSH on loopback, many trivial jobs.

Needs the test infrastructure, run as root (the SSH key is root's):
``JFR_TEST_INFRA=1 python -m pytest -m infra tests/test_remote.py`` starts it, or
``bash tests/infra/start-sshd.sh DIR``, ``start-slurm.sh DIR`` and ``worker-env.sh DIR REPO``.
Without its env files the benchmark says so and is skipped (exit code 0).

One project, two SLURM workers reached over SSH, one runner for both:

- ``batch``: pilots (``parallel_jobs: 4``, ``max_jobs: 2``, ``sleep_time: 0.05``) each running
  many jobs; 200 independent trivial jobs, then a chain of 20;
- ``plain``: one queue job per job; 40 independent jobs and a chain of 10 (fewer: each costs a
  ``sbatch`` and a cold Python on a 2-CPU node).

It prints for each: the wall time (submit_flow to the last COMPLETED), the queue submissions
(pilots, or one per job), the chain's link time (chain wall time / links), and for the batch
worker the overhead of a job inside a pilot, measured two ways (see :func:`slot_overhead` and
:func:`busy_overhead`). ``--quick`` runs 40 + a chain of 5 (batch) and 10 + a chain of 4 (plain).

    python bench/batch.py [--quick] [--infra-dir /tmp/jfr-test-infra]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

from common import ROOT, tmpdir

sys.path.insert(0, str(ROOT / "tests"))

PARALLEL = 4


def load_infra(infra_dir: Path) -> dict | None:
    """The test infrastructure's settings, when it can be used.

    Parameters
    ----------
    infra_dir
        The folder holding ``ssh.env``, ``slurm.env`` and ``worker.env``.

    Returns
    -------
    dict or None
        Their keys merged; None (the reason printed on stderr) when a file is missing, the SSH key
        cannot be read or SLURM does not answer.
    """
    infra = {}
    for name in ("ssh.env", "slurm.env", "worker.env"):
        path = infra_dir / name
        if not path.exists():
            print(f"bench/batch.py: skipped: {path} is missing; start the test infrastructure first "
                  f"(see the docstring)", file=sys.stderr)  # fmt: skip
            return None
        infra.update(line.split("=", 1) for line in path.read_text().splitlines() if "=" in line)
    if not os.access(infra["TEST_SSH_KEY"], os.R_OK):
        print(f"bench/batch.py: skipped: cannot read the SSH key {infra['TEST_SSH_KEY']} (run as root)",
              file=sys.stderr)  # fmt: skip
        return None
    probe = subprocess.run(["squeue", "-h"], capture_output=True, timeout=30)
    if probe.returncode != 0:
        print("bench/batch.py: skipped: SLURM does not answer (squeue failed)", file=sys.stderr)
        return None
    return infra


def write_project(root: Path, infra: dict, remote: str) -> None:
    """Write the project ``bb`` under ``root``: workers ``batch`` and ``plain``, both under ``remote``."""
    from conftest import remote_worker_yaml

    batch = (f"{{jobs_handle_dir: {remote}/handle, work_dir: {remote}/pilots, parallel_jobs: {PARALLEL}, "
             f"max_wait: 30, sleep_time: 0.05}}")  # fmt: skip
    workers = remote_worker_yaml(infra, "batch", f"{remote}/batch", scheduler="slurm", poll_interval=0.5,
                                 resources="{partition: debug}", max_jobs=2, batch=batch)  # fmt: skip
    workers += remote_worker_yaml(infra, "plain", f"{remote}/plain", scheduler="slurm", poll_interval=0.5,
                                  resources="{partition: debug}")  # fmt: skip
    (root / "projects").mkdir()
    (root / "projects" / "bb.yaml").write_text(
        f"name: bb\nbase_dir: {root / 'data'}\nlog_dir: {root / 'logs'}\nworkers:\n{workers}"
    )


def when(text: str) -> float:
    """An ISO time as a POSIX timestamp."""
    return datetime.fromisoformat(text).timestamp()


def slot_overhead(jobs: list, pilot_of: dict) -> list:
    """Per job, the seconds its pilot took to start it once it could.

    For each pilot, its jobs are laid out on ``PARALLEL`` slots in start order (each job on the
    slot freed last before it started); a job's overhead is its ``start_time`` minus the later of
    its slot's previous ``end_time`` and the moment its ticket was posted (``submitted_on``). The
    first job of each slot has none (the pilot's own start is not counted). This is the pilot's cost
    alone: the end of one job's process, the pilot noticing it, taking the next ticket, its script,
    the hand-over to the warm server and the job's set-up; time spent waiting for the runner to post
    tickets is left out.

    Parameters
    ----------
    jobs
        Job documents (``start_time``, ``end_time`` copied from each job's ``jfr_out.json``, and
        ``submitted_on``, when its ticket was posted).
    pilot_of
        uuid -> the pilot that ran the job (jobs with None are left out).

    Returns
    -------
    list of float
        One overhead per job that followed another on its slot.
    """
    gaps = []
    by_pilot = {}
    for job in jobs:
        by_pilot.setdefault(pilot_of.get(job["uuid"]), []).append(job)
    by_pilot.pop(None, None)
    for members in by_pilot.values():
        slots = []  # end time of the last job on each slot
        for job in sorted(members, key=lambda j: when(j["start_time"])):
            start, end = when(job["start_time"]), when(job["end_time"])
            free = [i for i, e in enumerate(slots) if e <= start]
            if len(slots) < PARALLEL and not free:
                slots.append(end)
                continue
            i = max(free, key=lambda k: slots[k]) if free else min(range(len(slots)), key=lambda k: slots[k])
            gaps.append(max(0.0, start - max(slots[i], when(job["submitted_on"]))))
            slots[i] = end
    return gaps


def busy_overhead(jobs: list, pilot_of: dict) -> float:
    """Slot time spent outside jobs, per job.

    (Each pilot's busy span, its first job's start to its last job's end, times ``PARALLEL`` slots,
    minus the sum of the jobs' ``run_seconds``) / jobs. Everything a slot did not spend inside a job
    counts: the pilot's cost and the time it waited for tickets.

    Parameters
    ----------
    jobs, pilot_of
        As for :func:`slot_overhead`.

    Returns
    -------
    float
        Seconds per job.
    """
    by_pilot = {}
    for job in jobs:
        by_pilot.setdefault(pilot_of.get(job["uuid"]), []).append(job)
    by_pilot.pop(None, None)
    spans = sum(max(when(j["end_time"]) for j in m) - min(when(j["start_time"]) for j in m)
                for m in by_pilot.values())  # fmt: skip
    counted = [j for m in by_pilot.values() for j in m]
    return (spans * PARALLEL - sum(j["run_seconds"] for j in counted)) / max(1, len(counted))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--infra-dir", default="/tmp/jfr-test-infra")
    parser.add_argument("--quick", action="store_true", help="a smaller run (about a minute)")
    args = parser.parse_args()
    infra = load_infra(Path(args.infra_dir))
    if infra is None:
        return 0
    sizes = {"batch": (40, 5), "plain": (10, 4)} if args.quick else {"batch": (200, 20), "plain": (40, 10)}
    root = tmpdir()
    remote = f"/home/{infra['TEST_SSH_USER']}/jfr-bench-{root.name}"
    write_project(root, infra, remote)
    os.environ["JFR_PROJECTS_DIR"] = str(root / "projects")
    tests = str(ROOT / "tests")
    os.environ["PYTHONPATH"] = os.pathsep.join([tests, str(ROOT), os.environ.get("PYTHONPATH", "")])
    from jobflow import Flow

    from jfr_lib import batch as batch_lib
    from jfr_lib import submit_flow
    from jfr_lib.config import load_project
    from jfr_lib.jobstore import get_jobstore
    from jfr_lib.queue_db import open_queue_db

    from testjobs import add, env_vars

    project = load_project("bb")
    store = get_jobstore(project)
    runner = subprocess.Popen([sys.executable, str(ROOT / "jfr.py"), "runner", "run"], env=dict(os.environ),
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip

    def pilots() -> dict:
        with open_queue_db(project) as db:
            return batch_lib.read_pilots(db, "batch")

    def run(flow, n, worker) -> tuple:
        """Submit ``flow`` to ``worker``, wait for its ``n`` jobs; (wall seconds, its jobs)."""
        t0 = time.perf_counter()
        submit_flow(flow, worker=worker, project=project)
        with open_queue_db(project) as db:
            while db.count_jobs({"flow_uuid": flow.uuid, "state": "COMPLETED"}) < n:
                bad = db.find_jobs({"flow_uuid": flow.uuid, "state": ["FAILED", "REMOTE_ERROR"]})
                if bad:
                    raise SystemExit(f"a job failed: {bad[0]['state']}: {bad[0].get('error')}")
                time.sleep(0.05)
            wall = time.perf_counter() - t0
            return wall, db.find_jobs({"flow_uuid": flow.uuid})

    def chain(n: int, worker: str) -> Flow:
        jobs = [add(0, 1)]
        for _ in range(n - 1):
            jobs.append(add(jobs[-1].output, 1))
        return Flow(jobs, name=f"chain-{worker}")

    rows = []
    try:
        # --- batch worker ---------------------------------------------------------------
        n, links = sizes["batch"]
        before = set(pilots())
        flow = Flow([env_vars("JFR_PILOT") for _ in range(n)], name="independent-batch")
        wall, jobs = run(flow, n, "batch")
        pilot_of = {j["uuid"]: store.get_output(j["uuid"])["JFR_PILOT"] for j in jobs}
        used = set(pilots()) - before
        gaps = slot_overhead(jobs, pilot_of)
        rows.append(("batch", f"{n} independent", wall, n, f"{len(used)} pilots", None))
        overhead = (gaps, busy_overhead(jobs, pilot_of), len(used), sorted(
            sum(1 for p in pilot_of.values() if p == u) for u in used))  # fmt: skip
        before = set(pilots())
        wall, jobs = run(chain(links, "batch"), links, "batch")
        rows.append(("batch", f"chain of {links}", wall, links, f"{len(set(pilots()) - before)} new pilots",
                     wall / links))  # fmt: skip
        # the idle pilots leave now rather than after max_wait: the plain worker gets the node
        subprocess.run([sys.executable, str(ROOT / "jfr.py"), "batch", "stop", "-w", "batch"], env=dict(os.environ),
                       capture_output=True, timeout=60)  # fmt: skip
        deadline = time.monotonic() + 60
        while any(batch_lib.alive(r) for r in pilots().values()) and time.monotonic() < deadline:
            time.sleep(0.2)
        # --- plain worker ---------------------------------------------------------------
        n, links = sizes["plain"]
        wall, jobs = run(Flow([add(i, 1) for i in range(n)], name="independent-plain"), n, "plain")
        rows.append(("plain", f"{n} independent", wall, n, f"{len({j['queue_id'] for j in jobs})} queue jobs",
                     None))  # fmt: skip
        wall, jobs = run(chain(links, "plain"), links, "plain")
        rows.append(("plain", f"chain of {links}", wall, links, f"{len({j['queue_id'] for j in jobs})} queue jobs",
                     wall / links))  # fmt: skip
    finally:
        runner.terminate()
        runner.wait(60)
        ids = [r["queue_id"] for r in pilots().values() if r.get("queue_id") and batch_lib.alive(r)]
        if ids:
            subprocess.run(["scancel", *ids], capture_output=True, timeout=60)
        shutil.rmtree(remote, ignore_errors=True)

    print(f"SLURM over SSH (127.0.0.1:2222), one runner, trivial jobs{' (--quick)' * args.quick}")
    print(f"{'worker':<7} {'flow':<16} {'wall':>8} {'per job':>8} {'link':>7}  queue submissions")
    for worker, label, wall, count, subs, link in rows:
        link_text = f"{link:6.2f}s" if link is not None else "      -"
        print(f"{worker:<7} {label:<16} {wall:7.2f}s {wall / count:7.3f}s {link_text}  {subs}")
    gaps, busy, npilots, per_pilot = overhead
    print(f"\nbatch, {sizes['batch'][0]} independent jobs in {npilots} pilots (jobs per pilot {per_pilot}), "
          f"{PARALLEL} slots each:")  # fmt: skip
    if gaps:
        ordered = sorted(gaps)
        p90 = ordered[min(len(ordered) - 1, int(0.9 * len(ordered)))]
        median, mean = statistics.median(gaps), statistics.mean(gaps)
        print(f"  pilot overhead per job (slot free and ticket posted -> job started; {len(gaps)} jobs): "
              f"median {median:.3f} s, mean {mean:.3f} s, p90 {p90:.3f} s")  # fmt: skip
    print(f"  slot time outside jobs, per job ((busy span x {PARALLEL} - sum of run_seconds) / jobs): {busy:.3f} s")
    print("    (this one includes the slots' wait for the runner to post tickets)")
    print("  link = chain wall time / links; the plain worker runs fewer jobs, as its flow column says")
    return 0


if __name__ == "__main__":
    sys.exit(main())
