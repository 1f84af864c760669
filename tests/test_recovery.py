"""Jobs are neither lost nor run twice when the runner, a job's script or its process is killed."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

from jfr_lib import submit_flow

import testjobs as tj
from conftest import gone, wait_for

pytestmark = pytest.mark.e2e


def the_job(penv) -> dict:
    (job,) = penv.jobs()
    return job


def worker_pid(job) -> int:
    """The job's own process, from its started marker."""
    marker = Path(job["run_dir"]) / "jfr_started"
    return int(marker.read_text().split()[1])


def started(penv) -> dict:
    return wait_for(lambda: (j := the_job(penv))["state"] == "RUNNING" and j.get("queue_id")
                    and (Path(j["run_dir"]) / "jfr_started").exists() and j, 60, message="the job running")  # fmt: skip


@pytest.mark.parametrize("keep", ["jfr_submit.out", "jfr_queue_id"])
def test_a_queue_id_lost_at_a_kill_is_found_in_the_run_folder(penv, capsys, keep):
    """The runner was killed after the queue took the job and before the database heard of it."""
    from test_job_cmd import run_main

    submit_flow(tj.sleep_add(300, 1, 1))
    with penv.start_runner():
        job = started(penv)
    queue_id, pid = job["queue_id"], worker_pid(job)
    for name in ("jfr_submit.out", "jfr_queue_id"):
        if name != keep:
            (Path(job["run_dir"]) / name).unlink()
    with penv.db() as db:  # what the killed runner left: the job uploaded, no queue id recorded
        db.update_job(job["db_id"], {"state": "UPLOADED", "queue_id": None, "queue_proc_start": None})
    with penv.start_runner():
        job = wait_for(lambda: (j := the_job(penv))["state"] == "RUNNING" and j, 60, message="RUNNING again")
        assert job["queue_id"] == queue_id and not gone(pid)  # not submitted a second time
        code, out, _ = run_main(capsys, "job", "stop", str(job["db_id"]))
        assert code == 0 and "USER_STOPPED" in out
        wait_for(lambda: gone(pid), 60, message="the job's process to end")


def test_a_job_whose_processes_died_fails_with_a_reason(penv):
    submit_flow(tj.sleep_add(300, 1, 1))
    with penv.start_runner():
        job = started(penv)
        with penv.db() as db:  # and its queue id was never recorded
            db.update_job(job["db_id"], {"queue_id": None, "queue_proc_start": None})
        for pid in (worker_pid(job), int(job["queue_id"])):
            os.kill(pid, signal.SIGKILL)
        job = wait_for(lambda: (j := the_job(penv))["state"] == "FAILED" and j, 30, message="FAILED")
    assert "without writing jfr_out.json" in job["error"]


def test_a_job_outlives_its_killed_script_and_completes(penv):
    """A cold job's process goes on when its script is killed: it must complete, not fail."""
    penv.write(runner={"warm_start": "false"})
    submit_flow(tj.sleep_add(4, 20, 22))
    with penv.start_runner():
        job = started(penv)
        pid = worker_pid(job)
        os.kill(int(job["queue_id"]), signal.SIGKILL)  # the script, not the job
        wait_for(lambda: gone(int(job["queue_id"])), 30, message="the script to end")
        assert the_job(penv)["state"] in ("SUBMITTED", "RUNNING") and not gone(pid)
        job = wait_for(lambda: (j := the_job(penv))["state"] in ("COMPLETED", "FAILED") and j, 60,
                       message="the job to end")  # fmt: skip
    assert job["state"] == "COMPLETED" and penv.output(job) == 42


def test_a_rerun_never_overlaps_a_live_run(penv, capsys):
    from test_job_cmd import run_main

    submit_flow(tj.sleep_add(300, 1, 1))
    with penv.start_runner():
        job = started(penv)
    pid = worker_pid(job)
    with penv.db() as db:  # marked FAILED while its process runs on (as an older jfr could)
        db.update_job(job["db_id"], {"state": "FAILED"})
    code, _, err = run_main(capsys, "job", "rerun", str(job["db_id"]))
    assert code == 4 and f"its last run is still going (pid {pid}" in err
    os.kill(pid, signal.SIGKILL)
    wait_for(lambda: gone(pid), 30, message="the old run to end")
    code, out, _ = run_main(capsys, "job", "rerun", str(job["db_id"]))
    assert code == 0 and "FAILED -> READY" in out
