"""Batch workers on real clusters: pilots on SLURM and SGE reached over the test sshd (JFR_TEST_INFRA=1).

A batch worker runs many jobs inside each "pilot" queue job; the runner hands
them over through ticket files in the worker's ``jobs_handle_dir``
(:mod:`jfr_lib.batch`, :mod:`jfr_lib.actions.batch`, :mod:`jfr_lib.pilot`).
These tests check, against the real queue systems: a flow of chains and a
fan-out with never more than ``max_jobs`` pilots in the queue and each job
function run once; a pilot cancelled outside jfr (its jobs go back to READY
and complete in another pilot); a pilot's time limit (no job starts that
cannot end before it); ``jfr job stop`` of one job inside a pilot; and an
unwritable ``jobs_handle_dir``.
"""

from __future__ import annotations

import json
import re
import subprocess
import threading
import uuid
from collections import Counter
from datetime import datetime
from pathlib import Path

import pytest
from jobflow import Flow

from jfr_lib import set_run_config, submit_flow

import testjobs as tj
from conftest import gone, remote_worker_yaml, wait_for

pytestmark = [pytest.mark.infra, pytest.mark.e2e]

#: Prefix of a pilot's queue job name (``jfr-pilot-<pilot id>``).
PILOT_NAME = "jfr-pilot-"


# --- helpers ------------------------------------------------------------------------------


def pilots_of(penv, worker: str) -> dict:
    """The pilot records of ``worker`` in the queue database: pilot id -> record."""
    with penv.db() as db:
        return dict((db.get_meta(f"pilots:{worker}") or {}).get("pilots") or {})


def jobs_done(penv, worker: str = "batch") -> int:
    """How many jobs the pilots of ``worker`` say they ran (their status files, copied at each poll)."""
    return sum(r.get("jobs_done") or 0 for r in pilots_of(penv, worker).values())


def log_tail(penv, chars: int = 4000) -> str:
    path = penv.root / "logs" / f"{penv.name}.log"
    return path.read_text()[-chars:] if path.exists() else "(no runner log)"


def wait_jobs(penv, predicate, timeout: float, message: str, interval: float = 0.5):
    """:func:`conftest.wait_for` on the job list; on a timeout, the states and the runner log say why."""
    try:
        return wait_for(lambda: predicate(penv.jobs()), timeout, interval=interval, message=message)
    except AssertionError as exc:
        states = [(j["db_id"], j["name"], j["state"], j.get("pilot"), j.get("error") or j.get("last_error"))
                  for j in penv.jobs()]  # fmt: skip
        raise AssertionError(f"{exc}\njobs: {states}\n--- runner log ---\n{log_tail(penv)}") from None


def out_of(job: dict) -> dict | None:
    """The job's ``jfr_out.json`` in its run folder (the worker is this machine), or None."""
    try:
        return json.loads(Path(job["run_dir"], "jfr_out.json").read_text())
    except (OSError, ValueError):
        return None


def when(text: str) -> datetime:
    return datetime.fromisoformat(text)


class QueueSampler:
    """Samples the names of the test user's queue jobs every ``every`` seconds in a thread.

    Parameters
    ----------
    scheduler
        ``slurm`` (``squeue``) or ``sge`` (``qstat -xml``, whose names are not cut at 10 characters).
    user
        The queue user whose jobs are listed.
    every
        Seconds between two samples.
    """

    def __init__(self, scheduler: str, user: str, every: float = 0.3):
        self.scheduler, self.user, self.every = scheduler, user, every
        self.samples: list = []  # one set of job names per sample
        self.errors: list = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def names(self) -> set:
        if self.scheduler == "slurm":
            cmd = ["squeue", "-h", "-u", self.user, "-o", "%j"]
        else:
            cmd = ["qstat", "-u", self.user, "-xml"]
        result = subprocess.run(cmd, capture_output=True, text=True, timeout=20)
        if result.returncode != 0:
            raise RuntimeError(f"{cmd[0]} exited {result.returncode}: {result.stderr.strip()}")
        if self.scheduler == "slurm":
            return {line.strip() for line in result.stdout.splitlines() if line.strip()}
        return set(re.findall(r"<JB_name>([^<]*)</JB_name>", result.stdout))

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.samples.append(self.names())
            except Exception as exc:  # the sampler must not die silently: the test checks errors
                self.errors.append(str(exc))
            self._stop.wait(self.every)

    def most(self, pilot_ids) -> int:
        """The most pilots among ``pilot_ids`` seen in the queue in one sample."""
        mine = {f"{PILOT_NAME}{p}" for p in pilot_ids}
        return max((len(s & mine) for s in self.samples), default=0)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join(30)


def cancel_pilots(penv, scheduler: str, worker: str) -> None:
    """Cancel this project's pilots still in the queue (a test's end), by their recorded queue ids."""
    ids = [r["queue_id"] for r in pilots_of(penv, worker).values() if r.get("queue_id")]
    if ids:
        command = ["scancel", *ids] if scheduler == "slurm" else ["qdel", *ids]
        subprocess.run(command, capture_output=True, timeout=60)


@pytest.fixture
def bproj(penv, infra, remote_dir):
    """A project with one remote batch worker ``batch`` (SLURM or SGE), made by ``bproj.rewrite``.

    ``bproj.rewrite(scheduler, max_jobs=2, resources=None, runner=None, **batch_keys)`` writes
    it; ``bproj.handle`` is its ``jobs_handle_dir``. The pilots still queued are cancelled at the end.
    """
    made = []

    def write(scheduler="slurm", max_jobs=2, resources=None, runner=None, handle=None, **batch_keys):
        handle = handle or f"{remote_dir}/handle"
        keys = {"jobs_handle_dir": handle, "work_dir": f"{remote_dir}/pilots", "parallel_jobs": 3,
                "max_wait": 10, "sleep_time": 0.05, **batch_keys}  # fmt: skip
        if resources is None:
            resources = "{partition: debug}" if scheduler == "slurm" else "{queue: debug}"
        worker = remote_worker_yaml(infra, "batch", f"{remote_dir}/run", scheduler=scheduler, poll_interval=1,
                                    max_jobs=max_jobs, resources=resources,
                                    batch="{" + ", ".join(f"{k}: {v}" for k, v in keys.items()) + "}")  # fmt: skip
        penv.write(None, runner=runner, workers=worker)
        penv.handle, penv.scheduler = handle, scheduler
        made.append(scheduler)

    penv.rewrite = write
    penv.remote_dir = remote_dir
    penv.user = infra["TEST_SSH_USER"]
    yield penv
    for scheduler in set(made):
        try:
            cancel_pilots(penv, scheduler, "batch")
        except Exception as exc:  # the test's own outcome matters more than this clean-up
            print(f"could not cancel the pilots: {exc}")


def chains_and_fan_out(record: str, chains: int, length: int, fan: int, seconds: float = 0.3):
    """Chains of ``length`` jobs, and a root with ``fan`` children gathered by one job.

    Every job appends its tag to ``record`` when it runs (``testjobs.chaos_step``) and returns a
    value of its own. Returns the flow and tag -> expected output.
    """
    jobs, expected = [], {}

    def step(tag, value, after=None):
        job = tj.chaos_step(record, tag, value, seconds, after)
        job.name = tag
        jobs.append(job)
        expected[tag] = value
        return job

    for c in range(chains):
        prev = None
        for k in range(length):
            prev = step(f"c{c}-{k}", c * 100 + k, after=prev.output if prev else None)
    root = step("root", 7)
    leaves = [step(f"f{i}", 1000 + i, after=root.output) for i in range(fan)]
    step("gather", 99, after=[leaf.output for leaf in leaves])
    return Flow(jobs, name="batch-flow"), expected


def run_flow_and_check(penv, chains: int, length: int, fan: int, timeout: float) -> dict:
    """Run :func:`chains_and_fan_out` on worker ``batch`` while sampling the queue; check it all.

    Returns the pilot records of the worker.
    """
    record = f"{penv.remote_dir}/ran.txt"
    flow, expected = chains_and_fan_out(record, chains, length, fan)
    submit_flow(flow, worker="batch")
    with QueueSampler(penv.scheduler, penv.user) as sampler, penv.start_runner():
        wait_jobs(penv, lambda jobs: all(j["state"] == "COMPLETED" for j in jobs), timeout,
                  f"all {len(expected)} jobs to complete")  # fmt: skip
        # what the pilots say they ran (their status files, copied into their records at each poll)
        wait_for(lambda: jobs_done(penv) == len(expected), 30,
                 message=f"the pilots to report {len(expected)} jobs done")  # fmt: skip
    jobs = penv.jobs()
    assert len(jobs) == len(expected)
    assert {j["name"]: penv.output(j) for j in jobs} == expected
    # each job function ran exactly once, parents before children
    ran = Path(record).read_text().split()
    assert Counter(ran) == Counter(expected.keys()), {t: n for t, n in Counter(ran).items() if n != 1}
    for c in range(chains):
        assert [t for t in ran if t.startswith(f"c{c}-")] == [f"c{c}-{k}" for k in range(length)]
    assert ran.index("root") < min(ran.index(f"f{i}") for i in range(fan))
    assert ran.index("gather") > max(ran.index(f"f{i}") for i in range(fan))
    # never more pilots in the queue than max_jobs, and far fewer pilots than jobs
    pilots = pilots_of(penv, "batch")
    assert sampler.errors == [] and len(sampler.samples) >= 5, (sampler.errors[:3], len(sampler.samples))
    assert 1 <= sampler.most(pilots) <= 2, sampler.most(pilots)
    assert 1 <= len(pilots) <= max(2, len(expected) // 3), pilots
    # a job seen RUNNING records its pilot; one that ran between two reads of the folder does not (see the report)
    assert {j["pilot"] for j in jobs} - {None} <= set(pilots)
    assert not [j["name"] for j in jobs if j.get("pilot_losses")]
    per_pilot = {p: r.get("jobs_done") for p, r in pilots.items()}
    print(f"\n{len(jobs)} jobs in {len(pilots)} pilots (jobs done per pilot: {per_pilot}); at most "
          f"{sampler.most(pilots)} in the queue over {len(sampler.samples)} samples; "
          f"{sum(not j['pilot'] for j in jobs)} jobs never seen RUNNING")  # fmt: skip
    return pilots


def all_started(jobs, n: int) -> bool:
    """``n`` jobs RUNNING in one pilot, each past its start (its ``jfr_started`` marker written)."""
    running = [j for j in jobs if j["state"] == "RUNNING" and j.get("pilot")]
    return (len(running) == n and len({j["pilot"] for j in running}) == 1
            and all(Path(j["run_dir"], "jfr_started").exists() for j in running))  # fmt: skip


def tickets_in(folder: Path) -> list:
    return sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []


# --- the tests ----------------------------------------------------------------------------


def test_slurm_flow_of_30_jobs_runs_in_few_pilots_never_more_than_max_jobs(bproj):
    bproj.rewrite("slurm", max_jobs=2, parallel_jobs=3)
    pilots = run_flow_and_check(bproj, chains=3, length=6, fan=10, timeout=180)
    assert len(pilots) <= 10
    for record in pilots.values():
        assert record["queue_id"] and record["worker"] == "batch"


def test_sge_flow_runs_in_few_pilots_never_more_than_max_jobs(bproj):
    bproj.rewrite("sge", max_jobs=2, parallel_jobs=3)
    pilots = run_flow_and_check(bproj, chains=2, length=3, fan=3, timeout=150)
    assert len(pilots) <= 4


def test_scancel_of_a_pilot_sends_its_jobs_back_and_they_complete_in_another(bproj):
    bproj.rewrite("slurm", max_jobs=1, parallel_jobs=3)
    flow = Flow([tj.sleep_add(20, i) for i in range(3)])
    submit_flow(flow, worker="batch")
    with bproj.start_runner():
        jobs = wait_jobs(bproj, lambda jobs: all_started(jobs, 3) and jobs, 120, "3 jobs started in one pilot")
        pilot = jobs[0]["pilot"]
        record = pilots_of(bproj, "batch")[pilot]
        subprocess.run(["scancel", record["queue_id"]], check=True, timeout=30)
        wait_jobs(bproj, lambda jobs: all(j["state"] == "COMPLETED" for j in jobs), 150, "the jobs to complete")
        held = Path(bproj.handle, "running", pilot)
        # the runner takes the tickets back at once, and removes what the pilot left at a later poll
        wait_for(lambda: not held.exists(), 30, message=f"{held} to be removed")
    jobs = bproj.jobs()
    assert [bproj.output(j) for j in jobs] == [0, 1, 2]
    for job in jobs:
        assert job["pilot_losses"] == 1, job
        assert pilot in job["last_error"] and "left the queue" in job["last_error"], job["last_error"]
        assert job["pilot"] and job["pilot"] != pilot
        assert out_of(job)["state"] == "COMPLETED"
    ended = pilots_of(bproj, "batch")[pilot]
    assert ended["state"] == "ended", ended
    print(f"\npilot {pilot} ended: {ended.get('end_reason')}; the jobs' last error: {jobs[0]['last_error']}")
    assert tickets_in(held) == []


def test_sge_pilot_starts_no_job_that_cannot_end_before_its_time_limit(bproj):
    # a real limit too (h_rt 50 s): a job started past its pilot's deadline would be killed, and lost
    bproj.rewrite("sge", max_jobs=1, parallel_jobs=2, max_time=40, time_margin=5,
                  resources="{queue: debug, walltime: '00:00:50'}")  # fmt: skip
    jobs = [tj.sleep_add(12, i) for i in range(6)]
    for job in jobs:
        set_run_config(job, resources={"expected_time": 15})
    submit_flow(Flow(jobs), worker="batch")
    started = {}  # pilot id -> its start, from its status file (removed once the pilot is gone)

    def look(jobs):
        for path in Path(bproj.handle, "pilots").glob("p*.json"):
            try:
                said = json.loads(path.read_text())
            except (OSError, ValueError):
                continue
            started.setdefault(said["pilot"], when(said["started"]))
        return all(j["state"] == "COMPLETED" for j in jobs)

    with bproj.start_runner():
        wait_jobs(bproj, look, 240, "all jobs to complete", interval=0.3)
    jobs = bproj.jobs()
    assert [bproj.output(j) for j in jobs] == list(range(6))
    assert not [j["name"] for j in jobs if j.get("pilot_losses")]
    by_pilot = Counter(j["pilot"] for j in jobs)
    assert len(by_pilot) >= 2, by_pilot  # the last ones did not fit in the first pilot
    for job in jobs:
        out = out_of(job)
        begin = started[job["pilot"]]  # written at the pilot's start, truncated to the second
        start, end = when(out["start_time"]), when(out["end_time"])
        # taken only while 15 s (expected) + 5 s (margin) fit in 40 s; 1.5 s for the job's own start
        assert (start - begin).total_seconds() <= 40 - 15 - 5 + 1.5, (job["name"], begin, out["start_time"])
        assert (end - begin).total_seconds() <= 40 - 5 + 1, (job["name"], begin, out["end_time"])
        print(f"job {job['db_id']} in pilot {job['pilot']}: from {(start - begin).total_seconds():.1f} s "
              f"to {(end - begin).total_seconds():.1f} s after the pilot's start")  # fmt: skip
    for pid, record in pilots_of(bproj, "batch").items():
        print(f"pilot {pid}: {record.get('state')}, {record.get('end_reason') or record.get('leaving')}")
    first = min(started, key=started.get)
    assert by_pilot[first] < 6


def test_job_stop_inside_a_pilot_ends_only_that_job(bproj):
    bproj.rewrite("slurm", max_jobs=1, parallel_jobs=3)
    victim = tj.sleep_add(300, 1)
    others = [tj.sleep_add(8, i) for i in (10, 20)]
    submit_flow(Flow([victim, *others]), worker="batch")
    with bproj.start_runner():
        jobs = wait_jobs(bproj, lambda jobs: all_started(jobs, 3) and jobs, 120, "3 jobs started in one pilot")
        stopped = next(j for j in jobs if j["uuid"] == victim.uuid)
        pid = int(Path(stopped["run_dir"], "jfr_started").read_text().split()[1])
        _, out, _ = bproj.jfr("job", "stop", str(stopped["db_id"]))
        assert "-> USER_STOPPED" in out
        wait_for(lambda: gone(pid), 30, message=f"the stopped job's process {pid} to end")
        wait_jobs(bproj, lambda jobs: sorted(j["state"] for j in jobs) == ["COMPLETED", "COMPLETED", "USER_STOPPED"],
                  120, "the other jobs to complete")  # fmt: skip
        # the stop request and the ended ticket are cleaned up by the runner
        folders = [Path(bproj.handle, name) for name in ("cancel", "done", "ready")]
        wait_for(lambda: not any(tickets_in(f) for f in folders), 30, message="cancel/, done/ and ready/ to be empty")
    jobs = {j["uuid"]: j for j in bproj.jobs()}
    assert jobs[victim.uuid]["state"] == "USER_STOPPED"
    outcome = out_of(jobs[victim.uuid])
    print(f"\nthe stopped job's jfr_out.json: {outcome and (outcome['state'], outcome.get('error'))}")
    assert outcome is None or (outcome["state"] != "COMPLETED" and outcome["error"].startswith("Terminated")), outcome
    for other, value in zip(others, (10, 20)):
        assert jobs[other.uuid]["pilot"] == stopped["pilot"]  # its pilot went on
        assert bproj.output(jobs[other.uuid]) == value
    assert tickets_in(Path(bproj.handle, "running", stopped["pilot"])) == []


def test_unwritable_jobs_handle_dir_is_a_remote_error_naming_it(bproj):
    handle = f"/root/jfr-batch-{uuid.uuid4().hex[:8]}/handle"  # the test user cannot write under /root
    bproj.rewrite("slurm", handle=handle, runner={"delta_retry": "[0.2, 0.5]", "max_step_attempts": 3})
    submit_flow(tj.add(1, 2), worker="batch")
    bproj.run_until_idle(timeout=120)
    [job] = bproj.jobs()
    assert job["state"] == "REMOTE_ERROR", job
    print(f"\nerror: {job['error']}")
    assert "\n" not in job["error"] and handle in job["error"], job["error"]
    assert "3 times" in job["error"], job["error"]
    _, out, _ = bproj.jfr("job", "info", str(job["db_id"]))
    assert "REMOTE_ERROR" in out and handle in out
    assert pilots_of(bproj, "batch") == {}
    assert not Path(handle).parent.exists()


def test_pilots_the_queue_refuses_end_their_jobs_in_remote_error(bproj):
    bproj.rewrite("slurm", resources="{partition: nosuchpartition}")
    submit_flow(tj.add(1, 2), worker="batch")
    with bproj.start_runner():
        wait_jobs(bproj, lambda jobs: jobs[0]["state"] == "REMOTE_ERROR", 15, "the job to end in REMOTE_ERROR")
    [job] = bproj.jobs()
    assert "nosuchpartition" in job["error"] and "\n" not in job["error"], job["error"]
    assert len(pilots_of(bproj, "batch")) <= 3  # runner.max_step_attempts submissions, not one per poll


def test_placement_srun_runs_each_job_as_its_own_slurm_step(bproj):
    bproj.rewrite("slurm", max_jobs=1, resources="{partition: debug, ntasks: 2}", placement="srun", parallel_jobs=2)
    probes = [tj.env_vars("SLURM_STEP_ID", "SLURM_JOB_ID", "JFR_PILOT") for _ in range(2)]
    submit_flow(Flow(probes), worker="batch")
    code, _, err = bproj.run_until_idle(timeout=240)
    assert code == 0, err
    jobs = bproj.jobs()
    got = [bproj.output(j) for j in jobs]
    assert all(g["JFR_PILOT"] and g["SLURM_STEP_ID"] not in (None, "batch") for g in got), got
    assert len({g["SLURM_JOB_ID"] for g in got}) == 1  # one allocation, two steps in it
    assert len({g["SLURM_STEP_ID"] for g in got}) == 2
    for job in jobs:  # an srun step runs the job where SLURM puts it: it starts cold
        out = json.loads(Path(job["run_dir"], "jfr_out.json").read_text())
        assert out["started"] == "cold"
