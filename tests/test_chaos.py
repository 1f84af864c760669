"""Chaos: random kills of the runner's processes, of jobs' scripts and of jobs' own processes.

A 200-job flow (chains, a fan-in, a job that adds jobs at run time, jobs that
always fail) runs while the test kills, at random moments, the runner's parent
(and starts a new runner), one of its action processes, a job's script, or a
job's own process. Afterwards: every job is final (COMPLETED, FAILED, or WAITING
behind a FAILED job), no job is locked, every job function ran at most once and
exactly once for each COMPLETED job, and every COMPLETED job's output is in the
JobStore with the value it must have. ``JFR_CHAOS_SEED`` picks the seed.
"""

from __future__ import annotations

import os
import random
import signal
import time
from pathlib import Path

import pytest
from jobflow import Flow

from jfr_lib import submit_flow

import testjobs as tj
from conftest import children_of, gone

pytestmark = pytest.mark.e2e

KILLS = 36
FINAL = {"COMPLETED", "FAILED", "WAITING"}


def build(record: Path) -> tuple:
    """The flow, and tag -> the output each job must have if it completes."""
    jobs, expected = [], {}

    def step(tag, value, after=None, seconds=0.6):
        job = tj.chaos_step(str(record), tag, value, seconds, after)
        job.name = tag
        jobs.append(job)
        expected[tag] = value
        return job

    leaves = []
    for c in range(18):  # 18 chains of 10
        prev = None
        for k in range(10):
            prev = step(f"c{c}-{k}", c * 100 + k, after=prev.output if prev else None)
        leaves.append(prev)
    for i in range(10):  # jobs that always fail
        failing = tj.fail(f"planned failure {i}")
        failing.name = f"fail-{i}"
        jobs.append(failing)
    adder = tj.chaos_adder(str(record), "adder", 5)  # adds 5 steps at run time
    adder.name = "adder"
    jobs.append(adder)
    expected["adder"] = 5
    for i in range(5):
        expected[f"adder-{i}"] = 1000 + i
    gather = tj.add_many(*[leaf.output for leaf in leaves[:5]])
    gather.name = "gather"
    jobs.append(gather)
    expected["gather"] = sum(c * 100 + 9 for c in range(5))
    return Flow(jobs, name="chaos"), expected


def processes_of_jobs(penv) -> dict:
    """kind -> pids: the scripts of running jobs and the jobs' own processes."""
    out = {"script": [], "job": []}
    for job in penv.jobs():
        if job["state"] not in ("SUBMITTED", "RUNNING") or not job.get("run_dir"):
            continue
        if job.get("queue_id") and not gone(int(job["queue_id"])):
            out["script"].append(int(job["queue_id"]))
        marker = Path(job["run_dir"]) / "jfr_started"
        try:
            pid = int(marker.read_text().split()[1])
        except (OSError, ValueError, IndexError):
            continue
        if not gone(pid):
            out["job"].append(pid)
    return out


def test_random_kills_lose_nothing_and_run_nothing_twice(penv):
    seed = int(os.environ.get("JFR_CHAOS_SEED", "20261130"))
    rng = random.Random(seed)
    record = penv.root / "ran.txt"
    flow, expected = build(record)
    submit_flow(flow)
    kills = {"parent": 0, "action": 0, "script": 0, "job": 0}
    killed_jobs = set()
    runner = penv.start_runner()
    try:
        deadline = time.monotonic() + 300
        while sum(kills.values()) < KILLS and time.monotonic() < deadline:
            time.sleep(rng.uniform(0.2, 1.0))  # the pace of the kills, not a wait for something
            kind = rng.choice(["parent", "action", "script", "job", "job"])
            if kind == "parent":
                os.kill(runner.pid, signal.SIGKILL)
                runner.proc.wait(timeout=30)
                runner = penv.start_runner()
            elif kind == "action":
                kids = children_of(runner.pid)
                if not kids:
                    continue
                os.kill(rng.choice(kids), signal.SIGKILL)
            else:
                pids = processes_of_jobs(penv)[kind]
                if not pids:
                    continue
                pid = rng.choice(pids)
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    continue
                killed_jobs.add(pid)
            kills[kind] += 1
        runner.stop()
        code, _, err = penv.jfr("runner", "run", "--exit-when-idle", timeout=400, check=False)
        assert code == 0, err
    finally:
        runner.stop()
    print(f"\nseed {seed}: kills {kills}")
    assert sum(kills.values()) >= 30 and all(kills.values()), kills

    jobs = penv.jobs()
    by_uuid = {j["uuid"]: j for j in jobs}
    states = {j["name"]: j["state"] for j in jobs}
    assert set(states.values()) <= FINAL, {n: s for n, s in states.items() if s not in FINAL}
    assert [j["db_id"] for j in jobs if j.get("lock_id")] == []

    def blocked(job, seen=()) -> bool:
        """A WAITING job must wait behind a FAILED job."""
        for parent in job["parents"]:
            p = by_uuid.get(parent)
            if p is not None and (p["state"] == "FAILED" or (p["state"] == "WAITING" and blocked(p))):
                return True
        return False

    assert [j["name"] for j in jobs if j["state"] == "WAITING" and not blocked(j)] == []
    for job in jobs:
        if job["state"] == "FAILED" and not job["name"].startswith("fail-"):
            assert any(w in job["error"] for w in ("terminated by signal", "without writing jfr_out.json",
                                                   "ended without reporting")), (job["name"], job["error"])  # fmt: skip

    ran = record.read_text().split() if record.exists() else []
    twice = sorted({t for t in ran if ran.count(t) > 1})
    assert twice == [], f"run twice: {twice}"
    completed = [j for j in jobs if j["state"] == "COMPLETED" and j["name"] in expected]
    assert {j["name"] for j in completed} <= set(ran)  # every COMPLETED job's function ran once
    assert len(completed) >= 100  # the kills hit some jobs, not the whole flow
    for job in completed:
        assert penv.output(job) == expected[job["name"]], job["name"]
