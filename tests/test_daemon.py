"""The runner as a daemon: lease, start/stop/kill/status, stop requests, retries, limits,
hot reload, concurrent user operations, and SIGKILL at random moments."""

from __future__ import annotations

import json
import multiprocessing
import os
import random
import signal
import subprocess
import sys
import threading
import time

import pytest
from jobflow import Flow

from jfr_lib import submit_flow

import testjobs as tj
from conftest import RUNNER_CHILDREN, children_of, gone, wait_for

pytestmark = pytest.mark.e2e


def lease_of(penv):
    from jfr_lib import lease

    with penv.db() as db:
        return lease.read(db)


def job_states(penv):
    return [j["state"] for j in penv.jobs()]


@pytest.fixture
def daemon(penv):
    """The project, and after the test no daemon left running, whatever the test did to the file."""
    from jfr_lib import lease

    project = penv.project  # read while the file is valid
    yield penv
    from jfr_lib.queue_db import open_queue_db

    with open_queue_db(project) as db:
        found = lease.read(db)
    if found and not gone(int(found["pid"])):
        os.kill(int(found["pid"]), signal.SIGTERM)
        try:
            wait_for(lambda: gone(int(found["pid"])), 30, message="the daemon to stop")
        except AssertionError:
            os.kill(int(found["pid"]), signal.SIGKILL)


def test_start_twice_status_stop(daemon):
    penv = daemon
    code, out, _ = penv.jfr("runner", "start")
    assert code == 0 and "runner started" in out
    first = lease_of(penv)
    code, out, _ = penv.jfr("runner", "start")
    assert code == 0 and "already running" in out
    assert lease_of(penv)["pid"] == first["pid"]  # still one runner
    # running as long as its process lives here, however late a loaded machine makes its heartbeat
    assert penv.jfr("runner", "status", check=False)[:2] == (0, "running\n")
    kids = wait_for(lambda: len(children_of(first["pid"])) == RUNNER_CHILDREN and children_of(first["pid"]), 60)
    wait_for(lambda: len(lease_of(penv)["children"]) == RUNNER_CHILDREN, 60, message="children in the lease")
    _, out, _ = penv.jfr("runner", "info", "--json")
    info = json.loads(out)
    assert info["status"] == "running" and info["pid"] == first["pid"]
    assert sorted(c["action"] for c in info["children"]) == sorted(
        ["checkout", "upload", "submit", "monitor", "download", "complete", "warm"])
    assert {c["pid"] for c in info["children"]} == set(kids)
    code, out, _ = penv.jfr("runner", "stop")
    assert code == 0 and "stopped" in out
    wait_for(lambda: all(gone(p) for p in [first["pid"], *kids]), 60, message="runner processes gone")
    assert penv.jfr("runner", "status", check=False)[:2] == (3, "stopped\n")
    _, out, _ = penv.jfr("runner", "logs", "-n", "200")
    assert "runner started" in out and "runner stopped" in out
    # cron discards what start prints: why it did nothing is in the log
    assert f"start: nothing to do, a runner already runs on {first['host']} (pid {first['pid']})" in out


def _break(penv) -> None:
    penv.path.write_text(penv.path.read_text() + "workers: [broken\n")  # a typo: the file no longer parses


def _one_warning(err: str) -> None:
    assert len(err.splitlines()) == 1 and err.startswith("jfr: warning: the project file is invalid ("), err


def test_runner_commands_work_when_the_project_file_turns_invalid(daemon):
    penv = daemon
    penv.jfr("runner", "start")
    first = lease_of(penv)
    _break(penv)
    assert penv.jfr("job", "list", check=False)[0] == 2  # other commands still refuse the file
    code, out, err = penv.jfr("runner", "status", check=False)
    assert (code, out) == (0, "running\n")
    _one_warning(err)
    code, out, err = penv.jfr("runner", "info", "--json", check=False)
    assert code == 0 and json.loads(out)["pid"] == first["pid"]
    code, out, err = penv.jfr("runner", "logs", "-n", "100", check=False)
    assert code == 0 and "runner started" in out
    _one_warning(err)
    code, out, err = penv.jfr("runner", "stop", check=False)
    assert code == 0 and f"pid {first['pid']}) stopped" in out
    _one_warning(err)
    wait_for(lambda: gone(first["pid"]), 60, message="the runner to stop")
    assert penv.jfr("runner", "status", check=False)[:2] == (3, "stopped\n")
    # kill too: start with a valid file, then break it again
    penv.write()
    penv.jfr("runner", "start")
    second = lease_of(penv)
    _break(penv)
    code, out, err = penv.jfr("runner", "kill", check=False)
    assert (code, out) == (0, f"runner (pid {second['pid']}) killed\n")
    _one_warning(err)
    assert gone(second["pid"]) and lease_of(penv) is None


def test_cron_line_runs_this_jfr_with_an_empty_path(daemon):
    penv = daemon
    code, out, _ = penv.jfr("runner", "cron-line", "--every", "7")
    assert code == 0 and len(out.splitlines()) == 1
    fields = out.strip().split(None, 5)
    assert fields[:5] == ["*/7", "*", "*", "*", "*"]
    command = fields[5].replace("\\%", "%")  # as cron hands it to sh
    assert f"JFR_PROJECTS_DIR={penv.projects}" in command and sys.executable in command
    cron_env = {"PATH": "", "HOME": os.environ.get("HOME", "/")}  # nothing found on PATH: no other `jfr`

    def from_cron():
        return subprocess.run(["/bin/sh", "-c", command], env=cron_env, cwd="/", stdin=subprocess.DEVNULL,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=120).returncode  # fmt: skip

    assert from_cron() == 0
    first = lease_of(penv)
    assert first is not None and not gone(first["pid"])
    assert penv.jfr("runner", "status", check=False)[:2] == (0, "running\n")
    assert from_cron() == 0  # every few minutes: the runner that runs is left alone
    assert lease_of(penv)["pid"] == first["pid"]
    _, log, _ = penv.jfr("runner", "logs", "-n", "100")
    assert "start: nothing to do, a runner already runs" in log
    penv.jfr("runner", "stop")
    wait_for(lambda: gone(first["pid"]), 60, message="the runner to stop")


def test_stale_lease_is_taken_over(penv):
    penv.jfr("runner", "start")
    old = lease_of(penv)
    kids = wait_for(lambda: len(children_of(old["pid"])) == RUNNER_CHILDREN and children_of(old["pid"]), 30)
    os.kill(old["pid"], signal.SIGKILL)
    wait_for(lambda: all(gone(p) for p in [old["pid"], *kids]), 10, message="children die with the parent")
    assert penv.jfr("runner", "status", check=False)[:2] == (1, "stale\n")
    code, out, _ = penv.jfr("runner", "start")
    assert code == 0 and "runner started" in out
    new = lease_of(penv)
    assert new["pid"] != old["pid"] and new["token"] != old["token"]
    submit_flow(tj.add(1, 1))
    wait_for(lambda: job_states(penv) == ["COMPLETED"], 60, message="the job to complete")
    penv.jfr("runner", "stop")


def _request_stop(projects_dir):
    """Another process (as on another host): only writes a stop request into the database."""
    os.environ["JFR_PROJECTS_DIR"] = projects_dir
    from jfr_lib import lease
    from jfr_lib.config import load_project
    from jfr_lib.queue_db import open_queue_db

    with open_queue_db(load_project("test")) as db:
        assert lease.request_stop(db) is not None


def test_stop_request_written_by_another_process(penv):
    with penv.start_runner() as runner:
        runner.wait_children()
        wait_for(lambda: lease_of(penv) is not None, 30)
        ctx = multiprocessing.get_context("spawn")
        p = ctx.Process(target=_request_stop, args=(str(penv.projects),))
        t0 = time.monotonic()
        p.start()
        p.join(60)
        assert p.exitcode == 0
        assert runner.proc.wait(timeout=30) == 0
        # the runner obeys within one heartbeat (0.5 s) plus the time to stop its processes
        assert time.monotonic() - t0 < 10
    assert lease_of(penv) is None


def test_transient_upload_failure_retries_then_remote_error_then_retry(penv):
    penv.work.parent.mkdir(parents=True, exist_ok=True)
    penv.work.write_text("a file where the run folders should go\n")  # uploads fail (even as root)
    submit_flow(tj.add(2, 3))
    with penv.start_runner():
        job = wait_for(lambda: [j for j in penv.jobs() if j["state"] == "REMOTE_ERROR"], 60,
                       message="REMOTE_ERROR")[0]  # fmt: skip
    assert job["previous_state"] == "CHECKED_OUT" and job["failed_step"] == "upload"
    assert job["error"].startswith("upload failed 3 times: cannot create folder")
    with penv.db() as db:  # a transient error, which a retry may fix: the flow is not FAILED
        assert db.get_flow(job["flow_uuid"])["state"] == "RUNNING"
    log = (penv.root / "logs" / "test.log").read_text()
    assert "failed (attempt 1), retry in 0.2 s" in log and "failed (attempt 2), retry in 0.5 s" in log
    penv.work.unlink()
    code, out, _ = penv.jfr("job", "retry", str(job["db_id"]))
    assert code == 0 and "REMOTE_ERROR -> CHECKED_OUT" in out
    penv.run_until_idle()
    assert job_states(penv) == ["COMPLETED"] and penv.output(penv.jobs()[0]) == 5


def test_max_jobs_is_never_exceeded(penv):
    penv.write(None, max_jobs=2)
    submit_flow(Flow([tj.sleep_add(0.4, i) for i in range(8)]))
    seen, stop = [], threading.Event()

    def sample():
        with penv.db() as db:
            while not stop.is_set():
                seen.append(db.count_jobs({"worker": "local", "state": ["SUBMITTED", "RUNNING"]}))
                time.sleep(0.02)

    sampler = threading.Thread(target=sample)
    sampler.start()
    try:
        penv.run_until_idle()
    finally:
        stop.set()
        sampler.join()
    assert job_states(penv) == ["COMPLETED"] * 8
    assert max(seen) == 2 and len(seen) > 50


def test_hot_reload_ignores_invalid_edits_and_applies_valid_ones(penv):
    penv.write(None, max_jobs=1)
    submit_flow(Flow([tj.sleep_add(2.0, i) for i in range(8)]))
    with penv.start_runner() as runner:
        runner.wait_children()
        wait_for(lambda: job_states(penv).count("RUNNING") == 1, 30)
        good = penv.path.read_text()
        penv.path.write_text(good + "workers: [broken\n")
        log = penv.root / "logs" / "test.log"
        wait_for(lambda: "invalid, keeping the last valid one" in log.read_text(), 20, message="the log line")
        assert runner.proc.poll() is None
        with penv.db() as db:
            assert db.count_jobs({"state": ["SUBMITTED", "RUNNING"]}) <= 1
        penv.write(None, max_jobs=4)
        peak = wait_for(lambda: job_states(penv).count("RUNNING") + job_states(penv).count("SUBMITTED") >= 3,
                        30, interval=0.05, message="more than one job at once after the edit")  # fmt: skip
        assert peak
        wait_for(lambda: job_states(penv) == ["COMPLETED"] * 8, 120)


def _operate(projects_dir, owner, seconds, out_path):
    """One of 4 concurrent user processes: pause, resume, re-prioritize its own jobs."""
    os.environ["JFR_PROJECTS_DIR"] = projects_dir
    from jfr_lib import control
    from jfr_lib.config import load_project
    from jfr_lib.errors import StateError
    from jfr_lib.queue_db import open_queue_db

    rng = random.Random(owner)
    last_priority, ok, refused = {}, 0, 0
    deadline = time.monotonic() + seconds
    with open_queue_db(load_project("test")) as db:
        mine = [j["db_id"] for j in db.find_jobs() if j["db_id"] % 4 == owner]
        while time.monotonic() < deadline:
            job = db.get_job(db_id=rng.choice(mine))
            op = rng.choice(["pause", "resume", "priority"])
            try:
                if op == "priority":
                    value = rng.randint(-50, 50)
                    control.set_priority(db, job, value)
                    last_priority[job["db_id"]] = value
                else:
                    getattr(control, op)(db, job)
                ok += 1
            except StateError:
                refused += 1
        def resumed(db_id) -> bool:
            job = db.get_job(db_id=db_id)
            if job["state"] != "PAUSED":
                return True
            try:
                control.resume(db, job)
            except StateError:  # the runner holds it for a moment
                return False
            return True

        for db_id in mine:  # leave nothing paused
            wait_for(lambda db_id=db_id: resumed(db_id), 120, interval=0.05, message=f"job {db_id} resumed")
    with open(out_path, "w") as f:
        json.dump({"last_priority": last_priority, "ok": ok, "refused": refused}, f)


def test_concurrent_user_operations_lose_no_update(penv):
    penv.write(None, max_jobs=2)
    submit_flow(Flow([tj.add(i, 1) for i in range(60)]))
    ctx = multiprocessing.get_context("spawn")
    with penv.start_runner() as runner:
        runner.wait_children()
        procs = [ctx.Process(target=_operate, args=(str(penv.projects), n, 30, str(penv.root / f"ops{n}.json")))
                 for n in range(4)]  # fmt: skip
        for p in procs:
            p.start()
        for p in procs:
            p.join(120)
            assert p.exitcode == 0
        wait_for(lambda: job_states(penv) == ["COMPLETED"] * 60, 180, interval=0.5, message="all jobs done")
    jobs = {j["db_id"]: j for j in penv.jobs()}
    total_ok = 0
    for n in range(4):
        result = json.loads((penv.root / f"ops{n}.json").read_text())
        total_ok += result["ok"]
        for db_id, value in result["last_priority"].items():
            assert jobs[int(db_id)]["priority"] == value  # the last accepted change stands
    assert total_ok > 100
    assert [j for j in jobs.values() if j["lock_id"]] == []


def test_sigkill_at_random_moments_runs_every_job_exactly_once(penv):
    lines = penv.root / "ran.txt"
    jobs = []
    for chain in range(10):
        prev = None
        for link in range(10):
            # each job takes 3 s, so the flow lasts long enough for every kill to hit it
            j = tj.append_line(str(lines), f"job-{chain}-{link}", after=prev.output if prev else None, seconds=3)
            jobs.append(j)
            prev = j
    submit_flow(Flow(jobs))
    rng = random.Random(1234)
    kills = {"parent": 0, "child": 0}
    runner = penv.start_runner()
    try:
        deadline = time.monotonic() + 400
        while time.monotonic() < deadline:
            if job_states(penv) == ["COMPLETED"] * 100:
                break
            time.sleep(rng.uniform(0.3, 2.0))
            kids = children_of(runner.pid)
            if kills["parent"] + kills["child"] >= 24 or not kids:
                continue
            if (kills["parent"] + kills["child"]) % 2:  # alternate: half parents, half children
                os.kill(runner.pid, signal.SIGKILL)
                runner.proc.wait()
                kills["parent"] += 1
                runner = penv.start_runner()
            else:
                os.kill(rng.choice(kids), signal.SIGKILL)
                kills["child"] += 1
    finally:
        runner.stop()
    assert kills["parent"] >= 10 and kills["child"] >= 10 and sum(kills.values()) >= 20
    assert job_states(penv) == ["COMPLETED"] * 100
    ran = lines.read_text().split()
    assert sorted(ran) == sorted(f"job-{c}-{k}" for c in range(10) for k in range(10))  # once each
    assert [j for j in penv.jobs() if j["lock_id"]] == []
