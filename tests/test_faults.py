"""Faults of the machine pass: a full disk, a locked JobStore, a damaged queue database.

A full disk is made real: a tiny tmpfs mounted for the test (as root), filled up,
then emptied.
"""

from __future__ import annotations

import json
import os
import subprocess
import uuid
from pathlib import Path

import pytest
from jobflow import Flow

from jfr_lib import submit_flow

import testjobs as tj
from conftest import wait_for


@pytest.fixture
def tiny_fs(tmp_path):
    """A 16 MB tmpfs, unmounted afterwards."""
    mount = tmp_path / "tiny"
    mount.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", str(mount)],
                          capture_output=True, text=True, timeout=30)  # fmt: skip
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], capture_output=True, timeout=30)


def fill(folder: Path) -> Path:
    """Take every free byte of ``folder``'s file system."""
    filler = folder / f"filler-{uuid.uuid4().hex[:6]}"
    with open(filler, "wb", buffering=0) as f:
        for size in (1 << 20, 4096, 1):  # megabytes, then the last pages and bytes
            try:
                while f.write(b"\0" * size):
                    pass
            except OSError:
                pass
    return filler


def info(penv) -> dict:
    return json.loads(penv.jfr("runner", "info", "--json")[1])


@pytest.mark.e2e
def test_a_full_jobstore_disk_waits_and_resumes(penv, tiny_fs):
    penv.write(penv.path.read_text() + (
        f"jobstore:\n  docs_store:\n    type: SQLiteStore\n    collection_name: outputs\n"
        f"    database_path: {tiny_fs}\n  additional_stores:\n    data:\n      type: SQLiteStore\n"
        f"      collection_name: outputs_data\n      database_path: {tiny_fs}\n"))  # fmt: skip
    first = tj.add(1, 2)
    submit_flow(Flow([first]))
    penv.run_until_idle()  # the store exists and works
    filler = fill(tiny_fs)
    a = tj.big_text(2)  # 2 MB: cannot be stored now
    submit_flow(Flow([a, tj.length(a.output)]))
    with penv.start_runner() as runner:
        def fault_shown():
            children = info(penv).get("children") or []
            return [c for c in children if c.get("fault")]

        shown = wait_for(fault_shown, 60, message="the fault in jfr runner info")
        assert shown[0]["action"] == "complete" and "full" in shown[0]["fault"]
        assert {j["state"] for j in penv.jobs()[1:]} <= {"DOWNLOADED", "WAITING"}  # not FAILED
        assert runner.proc.poll() is None  # the runner goes on
        filler.unlink()
        wait_for(lambda: [j["state"] for j in penv.jobs()] == ["COMPLETED"] * 3, 120, message="all COMPLETED")
        wait_for(lambda: not fault_shown(), 30, message="the fault gone from runner info")
    assert penv.output(penv.jobs()[2]) == 2 * 1024 * 1024
    log = (penv.root / "logs" / "test.log").read_text()
    assert "the complete step met a fault" in log and "database or disk is full" in log


@pytest.mark.e2e
def test_a_full_data_disk_stops_nothing_for_good(penv, tiny_fs):
    """The queue database itself cannot be written for a while: the runner survives it."""
    penv.write(penv.path.read_text().replace(f"base_dir: {penv.base}", f"base_dir: {tiny_fs / 'data'}"))
    a = tj.sleep_add(2, 1, 2)
    submit_flow(Flow([a, tj.add(a.output, 3)]))
    with penv.start_runner() as runner:
        wait_for(lambda: penv.jobs()[0]["state"] == "RUNNING", 60, message="the first job running")
        filler = fill(tiny_fs)  # its end cannot be recorded now
        log = penv.root / "logs" / "test.log"
        # the lease cannot be renewed: the actions stop (another runner could take over) and wait
        wait_for(lambda: "the action processes stop until the queue database answers" in log.read_text(), 60,
                 message="the actions stopped by the fault")  # fmt: skip
        assert runner.proc.poll() is None
        filler.unlink()
        wait_for(lambda: "the action processes start again" in log.read_text(), 60, message="the restart")
        wait_for(lambda: [j["state"] for j in penv.jobs()] == ["COMPLETED", "COMPLETED"], 120,
                 message="both COMPLETED")  # fmt: skip
        assert runner.proc.poll() is None
    assert penv.output(penv.jobs()[1]) == 6


def test_a_truncated_queue_database_is_an_error_not_a_new_queue(penv, capsys):
    from test_job_cmd import run_main

    submit_flow(tj.add(1, 1))
    path = penv.project.queue_db_path
    for suffix in ("-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    path.write_bytes(b"")
    code, _, err = run_main(capsys, "job", "list")
    assert code == 5 and "empty (0 bytes" in err and len(err.strip().splitlines()) == 1
    assert path.stat().st_size == 0  # not turned into a new, empty queue
    code, out, _ = run_main(capsys, "runner", "status")
    assert code != 0 and "running" not in out


def test_a_half_written_queue_database_is_reported_corrupt(penv, capsys):
    from test_job_cmd import run_main

    submit_flow(Flow([tj.add(i, 1) for i in range(200)]))
    path = penv.project.queue_db_path
    with penv.db() as db:
        db.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2] + b"\xff" * 1024)
    code, out, err = run_main(capsys, "runner", "status")
    assert code != 0 and "running" not in out and str(path) in err


def test_a_corrupt_output_file_is_named_in_one_line(tmp_path):
    from jfr_lib.actions.complete import read_output
    from jfr_lib.errors import JobFailure

    (tmp_path / "jfr_out.json").write_text('{"state": "COMPLETED", "response": {')
    with pytest.raises(JobFailure) as info_:
        read_output(str(tmp_path))
    message = str(info_.value)
    assert message.startswith(f"{tmp_path / 'jfr_out.json'}: corrupt") and "\n" not in message
    (tmp_path / "jfr_out.json").write_bytes(b"\xff\xfe not text")
    with pytest.raises(JobFailure, match="jfr_out.json: corrupt"):
        read_output(str(tmp_path))


def test_outputs_never_stay_behind_a_failed_job(penv):
    """The response cannot be applied (a permanent error after the outputs were stored)."""
    from jfr_lib.actions import ActionContext, complete
    from jfr_lib.rundir import StoreEncoder

    (job_id,) = submit_flow(tj.add(1, 2))
    with penv.db() as db:
        job = db.get_job(db_id=job_id)
    folder = penv.root / "fake-run"
    folder.mkdir()
    (folder / "jfr_out.json").write_text(json.dumps({"state": "COMPLETED", "response": {"addition": "nonsense"}}))
    doc = {"uuid": job["uuid"], "index": 1, "output": 3, "name": "add", "metadata": {}, "hosts": []}
    (folder / "jfr_store.json").write_text(json.dumps({"docs": [doc], "additional": {}}, cls=StoreEncoder))
    with penv.db() as db:
        db.update_job(job_id, {"state": "DOWNLOADED", "run_dir": str(folder), "local_dir": str(folder)})
    ctx = ActionContext(penv.project, "complete")
    try:
        assert complete.step(ctx) == 0
    finally:
        ctx.close()
    (job,) = penv.jobs()
    assert job["state"] == "FAILED"
    from jfr_lib.jobstore import get_jobstore

    assert get_jobstore(penv.project).docs_store.count({"uuid": job["uuid"]}) == 0
