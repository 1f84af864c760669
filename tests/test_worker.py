"""The worker contract: python -m jfr_lib.worker RUN_DIR always writes jfr_out.json, runs once."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from monty.json import MontyEncoder

import testjobs as tj
from conftest import ROOT, TESTS


def prepare(run_dir, job, store_names=("data",)):
    run_dir.mkdir(parents=True, exist_ok=True)
    doc = {"job": json.loads(json.dumps(job.as_dict(), cls=MontyEncoder)), "resolved": True,
           "store_names": list(store_names)}  # fmt: skip
    (run_dir / "jfr_in.json").write_text(json.dumps(doc))


def run_worker(run_dir):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(TESTS), str(ROOT)]))
    return subprocess.run([sys.executable, "-m", "jfr_lib.worker", str(run_dir)], env=env,
                          capture_output=True, text=True, timeout=120)  # fmt: skip


def test_success_writes_output_and_store(tmp_path):
    job = tj.add_more(5)
    prepare(tmp_path / "r", job)
    proc = run_worker(tmp_path / "r")
    assert proc.returncode == 0, proc.stderr
    out = json.loads((tmp_path / "r" / "jfr_out.json").read_text())
    assert out["state"] == "COMPLETED" and out["start_time"] <= out["end_time"]
    added = out["response"]["addition"]["jobs"]
    assert len(added) == 1 and added[0]["job"]["function"]["@callable"] == "add"
    store = json.loads((tmp_path / "r" / "jfr_store.json").read_text())
    assert store["docs"][0]["output"] == 5 and store["docs"][0]["uuid"] == job.uuid


def test_failure_is_written_with_traceback(tmp_path):
    prepare(tmp_path / "r", tj.fail("nope"))
    proc = run_worker(tmp_path / "r")
    assert proc.returncode == 1
    out = json.loads((tmp_path / "r" / "jfr_out.json").read_text())
    assert out["state"] == "FAILED" and out["error"] == "RuntimeError: nope"
    assert "Traceback (most recent call last)" in out["traceback"]


def test_missing_input_still_writes_output(tmp_path):
    (tmp_path / "r").mkdir()
    assert run_worker(tmp_path / "r").returncode == 1
    out = json.loads((tmp_path / "r" / "jfr_out.json").read_text())
    assert out["state"] == "FAILED" and "FileNotFoundError" in out["error"]


def test_a_run_folder_runs_only_once(tmp_path):
    marker = tmp_path / "lines.txt"
    prepare(tmp_path / "r", tj.append_line(str(marker), "ran"))
    assert run_worker(tmp_path / "r").returncode == 0
    first = (tmp_path / "r" / "jfr_out.json").read_text()
    again = run_worker(tmp_path / "r")
    assert again.returncode == 3 and "already started" in again.stderr
    assert marker.read_text() == "ran\n"
    assert (tmp_path / "r" / "jfr_out.json").read_text() == first
