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


def test_mongodb_queue_backup_and_restore(tmp_path, monkeypatch):
    """A pure-Python dump of a MongoDB queue (mongomock here) restores into another database."""
    from jfr_lib import backup
    from jfr_lib.config import load_project_file
    from jfr_lib.errors import UsageError
    from jfr_lib.queue_db import open_queue_db

    def project(name, database):
        path = tmp_path / f"{name}.yaml"
        path.write_text(f"name: {name}\nbase_dir: {tmp_path / name}\nworkers:\n  local:\n    work_dir: /tmp\n"
                        f"queue:\n  backend: mongodb\n  uri: mongomock://\n  database: {database}\n")  # fmt: skip
        return load_project_file(path)

    source, target = project("src", "one"), project("dst", "two")
    monkeypatch.setenv("JFR_PROJECTS_DIR", str(tmp_path))
    submit_flow(Flow([tj.add(1, 2), tj.add(3, 4)], name="m"), project=source)
    manifest = backup.create(source, tmp_path / "bk")
    assert manifest["queue"] == "mongodb" and manifest["jobs"] == 2 and manifest["flows"] == 1
    backup.restore(target, tmp_path / "bk")
    with open_queue_db(target) as db:
        assert [j["name"] for j in db.find_jobs(sort=[("db_id", 1)])] == ["add", "add"]
        assert db.find_flows()[0]["name"] == "m" and db.schema_version() == 1
    with pytest.raises(Exception, match="not empty"):
        backup.restore(target, tmp_path / "bk")  # never merges into existing jobs
    sqlite_project = load_project_file(_sqlite_file(tmp_path))
    with pytest.raises(UsageError, match="cannot be restored into a sqlite one"):
        backup.restore(sqlite_project, tmp_path / "bk")


def _sqlite_file(tmp_path):
    path = tmp_path / "lite.yaml"
    path.write_text(f"name: lite\nbase_dir: {tmp_path / 'lite'}\nworkers:\n  local:\n    work_dir: /tmp\n")
    return path


@pytest.mark.parametrize("bad", ["../outside.txt", "/etc/passwd", "jobstore/../../outside.txt", ""])
def test_restore_refuses_paths_that_leave_the_data_folder(penv, tmp_path, capsys, bad):
    from test_job_cmd import run_main

    submit_flow(tj.add(1, 1))  # makes the queue database
    backup = tmp_path / "backup"
    assert run_main(capsys, "backup", "create", str(backup))[0] == 0
    manifest = json.loads((backup / "manifest.json").read_text())
    (backup / "outside.txt").write_text("x")
    manifest["files"].append(bad)
    (backup / "manifest.json").write_text(json.dumps(manifest))
    before = sorted(p.name for p in penv.base.iterdir())
    code, _, err = run_main(capsys, "backup", "restore", str(backup))
    assert code == 2 and "manifest.json: file" in err and len(err.strip().splitlines()) == 1
    assert not (penv.base.parent / "outside.txt").exists() and not (tmp_path / "outside.txt").exists()
    assert sorted(p.name for p in penv.base.iterdir()) == before  # nothing moved aside or copied
