"""Backups taken while the runner works restore into a fresh folder with every job and output."""

from __future__ import annotations

import json

import pytest
from jobflow import Flow

from jfr_lib import submit_flow

import testjobs as tj
from conftest import ProjectEnv, wait_for

pytestmark = pytest.mark.e2e


def test_backup_during_a_run_restores_into_a_fresh_folder(penv, tmp_path):
    submit_flow(Flow([tj.add(i, 1) for i in range(50)]))
    backup = tmp_path / "backup"
    with penv.start_runner():
        wait_for(lambda: sum(j["state"] == "COMPLETED" for j in penv.jobs()) >= 5, 120, message="5 jobs done")
        code, out, _ = penv.jfr("backup", "create", str(backup), "--json")
        manifest = json.loads(out)
        wait_for(lambda: all(j["state"] == "COMPLETED" for j in penv.jobs()), 240, interval=0.5)
    assert code == 0 and manifest["jobs"] == 50 and manifest["embedded_jobstore"]
    code, _, err = penv.jfr("backup", "create", str(backup), check=False)
    assert code == 2 and "must be new or empty" in err

    fresh = ProjectEnv(tmp_path / "elsewhere", name="restored")
    fresh.write()
    code, out, _ = fresh.jfr("backup", "restore", str(backup))
    assert code == 0 and "restored 50 jobs" in out
    jobs = fresh.jobs()
    assert len(jobs) == 50
    done = [j for j in jobs if j["state"] == "COMPLETED"]
    assert len(done) >= 5
    for job in done:  # every output recorded as done is in the restored JobStore
        assert fresh.output(job) == job["job"]["function_args"][0] + 1
    # locks taken mid-step at backup time are dropped by the next runner, which finishes the rest
    fresh.run_until_idle()
    assert all(j["state"] == "COMPLETED" for j in fresh.jobs())
