"""Batch workers on this machine: pilots (local shell queue jobs) that run many jobs each.

The same code runs pilots under SLURM and SGE (tests/test_batch_remote.py); here
the pilots are background processes, so the rules are checked fast: never more
pilots than ``max_jobs``, a job run once, a lost pilot's jobs back to READY, no
job started that cannot end before the pilot's time is up, stop and cancel.
"""

from __future__ import annotations

import json
import os
import random
import signal
import threading
import time
from pathlib import Path

import pytest
from jobflow import Flow

from jfr_lib import batch, set_run_config, submit_flow

import testjobs as tj
from conftest import gone, wait_for

# --- the exchange, without processes ---------------------------------------------------


def test_ticket_names_put_higher_priority_first():
    names = [batch.ticket_name(f"/w/ab/cd/u{p}_1", p) for p in (0, 10, -3, 10**9)]
    assert all(batch.TICKET.match(n) for n in names)
    assert sorted(names) == [names[3], names[1], names[0], names[2]]


@pytest.mark.parametrize("value, unit, expected", [
    (90, 1, 90.0), (5, 60, 300.0), ("01:02:03", 1, 3723.0), ("02:30", 1, 150.0), ("1-02", 1, 93600.0),
    ("1-00:00:10", 1, 86410.0), ("30", 60, 1800.0), ("soon", 1, None), (-1, 1, None), (True, 1, None),
])  # fmt: skip
def test_durations(value, unit, expected):
    assert batch.seconds(value, unit) == expected


def test_declared_time_reads_the_first_time_key():
    assert batch.declared_time({"expected_time": 20, "time": "01:00:00"}) == 20.0
    assert batch.declared_time({"time": 2}) == 120.0  # SLURM's bare number counts minutes
    assert batch.declared_time({"walltime": "00:10:00"}) == 600.0
    assert batch.declared_time({"partition": "debug"}) is None


def test_snapshot_of_a_real_folder(tmp_path):
    import subprocess

    home = tmp_path / "handle"
    for name in batch.FOLDERS:
        (home / name).mkdir(parents=True)
    (home / "ready" / "500000_a_1").write_text("{}")
    (home / "ready" / ".500000_b_1.x7").write_text("{")  # an atomic write in progress
    (home / "running" / "p0123456789").mkdir()
    (home / "running" / "p0123456789" / "500000_c_1").write_text("{}")
    (home / "done" / "500000_d_1").write_text("{}")
    (home / "pilots" / "p0123456789.json").write_text(json.dumps({"state": "running", "jobs_done": 4}))
    (home / "pilots" / "p0000000000.json").write_text('{"state": "runn')  # caught mid-write
    (home / "done" / "500000_e_1").write_text("{}")
    command = batch.snapshot_command(str(home), remove=["done/500000_e_1", "running/p9999999999/"])
    out = subprocess.run(["bash", "-c", command], capture_output=True, text=True, timeout=30).stdout
    snap = batch.parse_snapshot(out)
    assert snap.ready == {"500000_a_1"} and snap.done == {"500000_d_1"}
    assert snap.running == {"p0123456789": {"500000_c_1"}}
    assert snap.pilots == {"p0123456789": {"state": "running", "jobs_done": 4}}
    assert snap.where("500000_c_1") == ("running", "p0123456789") and snap.where("x") == (None, None)
    assert not (home / "done" / "500000_e_1").exists()
    missing = subprocess.run(["bash", "-c", batch.snapshot_command(str(tmp_path / "nope"))], capture_output=True,
                             text=True, timeout=30).stdout  # fmt: skip
    assert batch.parse_snapshot(missing).missing


def test_pilot_records_survive_racing_writers(penv):
    def add(name):
        with penv.db() as db:  # a connection of its own, as each process has
            batch.update_pilots(db, "w", lambda pilots: pilots.__setitem__(name, {"state": "queued"}))

    threads = [threading.Thread(target=add, args=(f"p{i}",)) for i in range(10)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    with penv.db() as db:
        assert sorted(batch.read_pilots(db, "w")) == sorted(f"p{i}" for i in range(10))


def test_batch_section_errors_name_their_key(penv):
    from jfr_lib.config import load_project_file
    from jfr_lib.errors import ConfigError

    penv.write(None, batch="{jobs_handle_dir: relative, parallel_jobs: 0, max_time: 10, placement: srun, x: 1}")
    with pytest.raises(ConfigError) as info:
        load_project_file(penv.path)
    lines = str(info.value).splitlines()
    for key, why in [("batch.x", "unknown key"), ("batch.jobs_handle_dir", "must be an absolute path"),
                     ("batch.work_dir", "is required"), ("batch.parallel_jobs", "must be at least 1"),
                     ("batch.placement", "srun needs scheduler_type slurm"),
                     ("batch.max_time", "must be more than time_margin")]:  # fmt: skip
        assert any(f"workers.local.{key}: {why}" in line for line in lines), (key, lines)


# --- pilots for real ---------------------------------------------------------------------


def pilot_processes(home: Path) -> list:
    """pids of the pilot processes serving ``home`` (not their forks: a fork shows its parent's
    command line until it takes its own)."""
    found = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            argv = Path(f"/proc/{entry}/cmdline").read_bytes().split(b"\0")
            parent = int(Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        if b"jfr_lib.pilot" in argv and os.fsencode(str(home)) in argv:
            found[int(entry)] = parent
    return [pid for pid, parent in found.items() if parent not in found]


@pytest.fixture
def bproj(penv):
    """A project whose local worker is a batch worker; its pilots are killed at the end."""
    home = penv.root / "handle"

    def write(max_jobs=2, runner=None, **batch_keys):
        keys = {"jobs_handle_dir": str(home), "work_dir": str(penv.root / "pilots"), "parallel_jobs": 3,
                "max_wait": 3, "sleep_time": 0.05, **batch_keys}  # fmt: skip
        penv.write(None, runner=runner, batch=json.dumps(keys), max_jobs=max_jobs)

    write()
    penv.rewrite, penv.home = write, home
    yield penv
    for pid in pilot_processes(home):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def ran(record: Path) -> list:
    return record.read_text().split() if record.exists() else []


def pilots(penv) -> dict:
    with penv.db() as db:
        return batch.read_pilots(db, "local")


def test_thirty_jobs_in_few_pilots_never_more_than_max_jobs(bproj):
    record = bproj.root / "ran.txt"
    jobs, expected = [], {}
    for c in range(4):  # chains of 4
        prev = None
        for k in range(4):
            prev = tj.chaos_step(str(record), f"c{c}-{k}", c * 10 + k, 0.2, prev.output if prev else None)
            jobs.append(prev)
            expected[prev.uuid] = c * 10 + k
    for i in range(14):  # a fan-out
        job = tj.chaos_step(str(record), f"f{i}", 100 + i, 0.3)
        jobs.append(job)
        expected[job.uuid] = 100 + i
    submit_flow(Flow(jobs))
    seen, stop = [], threading.Event()

    def sample():
        while not stop.is_set():
            seen.append(len(pilot_processes(bproj.home)))
            time.sleep(0.05)

    sampler = threading.Thread(target=sample)
    sampler.start()
    try:
        code, _, err = bproj.run_until_idle(timeout=240)
    finally:
        stop.set()
        sampler.join(timeout=30)
    assert code == 0, err
    done = bproj.jobs()
    assert {j["state"] for j in done} == {"COMPLETED"}
    assert {j["uuid"]: bproj.output(j) for j in done} == expected
    assert sorted(ran(record)) == sorted([f"c{c}-{k}" for c in range(4) for k in range(4)] +
                                         [f"f{i}" for i in range(14)])  # fmt: skip
    assert max(seen) <= 2 and max(seen) >= 1, max(seen)
    records = pilots(bproj)
    assert 1 <= len(records) <= 10
    assert all(j.get("pilot") in records for j in done)  # each ran inside a pilot
    # a warm start inside the pilot: the job forked from the pilot's warm server
    out = json.loads(Path(done[-1]["run_dir"], "jfr_out.json").read_text())
    assert out["started"] == "warm", Path(done[-1]["run_dir"], "queue.err").read_text()


def test_a_cancelled_pilot_sends_its_jobs_back_and_they_complete_elsewhere(bproj):
    bproj.rewrite(max_jobs=1, parallel_jobs=3)
    record = bproj.root / "ran.txt"
    jobs = [tj.chaos_step(str(record), f"s{i}", i, 6.0) for i in range(3)]
    submit_flow(Flow(jobs))
    with bproj.start_runner():
        first = wait_for(lambda: [j for j in bproj.jobs() if j["state"] == "RUNNING" and j.get("pilot")], 90,
                         message="jobs running in a pilot")  # fmt: skip
        wait_for(lambda: len([j for j in bproj.jobs() if j["state"] == "RUNNING"]) == 3, 60,
                 message="three jobs running in the pilot")  # fmt: skip
        wait_for(lambda: len(ran(record)) == 3, 60, message="the three functions started")
        victim = first[0]["pilot"]
        queue_id = pilots(bproj)[victim]["queue_id"]
        code, out, err = bproj.jfr("batch", "info", victim)
        assert code == 0 and queue_id in out
        import subprocess

        from jfr_lib.queue import QueueAdapter

        subprocess.run(["bash", "-c", QueueAdapter("shell").cancel_command(queue_id)], timeout=30)  # a cancel
        wait_for(lambda: pilots(bproj)[victim]["state"] == "ended", 60, message="the pilot seen gone")
        wait_for(lambda: {j["state"] for j in bproj.jobs()} == {"COMPLETED"}, 120, message="all jobs completed")
    done = bproj.jobs()
    assert all(j["pilot_losses"] == 1 and victim in j["last_error"] for j in done), done
    assert all(j["pilot"] != victim for j in done)
    assert [bproj.output(j) for j in done] == [0, 1, 2]
    assert not (bproj.home / "running" / victim).exists() or not os.listdir(bproj.home / "running" / victim)
    # each started twice (the first run killed), completed once
    assert sorted(ran(record)) == sorted(["s0", "s1", "s2"] * 2)


def test_no_job_starts_that_cannot_end_before_the_pilot_must(bproj):
    bproj.rewrite(max_jobs=1, parallel_jobs=1, max_time=8, time_margin=1)
    jobs = [tj.sleep_add(2.0, i, 0) for i in range(5)]
    for job in jobs:
        set_run_config(job, resources={"expected_time": 3})
    submit_flow(Flow(jobs))
    code, _, err = bproj.run_until_idle(timeout=240)
    assert code == 0, err
    done = bproj.jobs()
    assert {j["state"] for j in done} == {"COMPLETED"} and [bproj.output(j) for j in done] == list(range(5))
    records = pilots(bproj)
    assert len(records) >= 2  # 8 s hold two 3-s jobs and the margin: the others went to later pilots
    from datetime import datetime

    starts = {}  # pilot -> when each of its jobs started (the pilot started before the first of them)
    for job in done:
        assert job.get("pilot_losses") in (None, 0)
        out = json.loads(Path(job["run_dir"], "jfr_out.json").read_text())
        starts.setdefault(job["pilot"], []).append(datetime.fromisoformat(out["start_time"]).timestamp())
    for pilot, begun in starts.items():
        # a third job would start about 6 s in: 6 + 3 + 1 > 8, which the pilot must refuse
        assert len(begun) <= 2 and max(begun) - min(begun) + 3 + 1 <= 8 + 1.0, (pilot, begun)
    reasons = {r.get("end_reason") for r in records.values()}
    assert any("can end" in (r or "") or "time" in (r or "") for r in reasons), reasons


def test_a_job_declaring_more_than_a_pilot_has_fails_with_the_reason(bproj):
    bproj.rewrite(max_time=60, time_margin=10)
    job = tj.add(1, 1)
    set_run_config(job, resources={"expected_time": 3600})
    submit_flow(job)
    code, _, err = bproj.run_until_idle(timeout=120)
    [done] = bproj.jobs()
    assert done["state"] == "FAILED" and "expects to run 3600 s" in done["error"]


def test_stop_one_job_inside_a_pilot_and_stop_a_pilot(bproj):
    bproj.rewrite(max_jobs=1, parallel_jobs=2, max_wait=30)
    long, short = tj.sleep_add(120, 1, 1), tj.sleep_add(2, 2, 2)
    submit_flow(Flow([long, short]))
    with bproj.start_runner():
        wait_for(lambda: {j["state"] for j in bproj.jobs()} == {"RUNNING"}, 90, message="both running")
        ids = {j["uuid"]: j["db_id"] for j in bproj.jobs()}
        code, out, err = bproj.jfr("job", "stop", str(ids[long.uuid]), "-y")
        assert code == 0, err
        wait_for(lambda: Path(bproj.jobs()[0]["run_dir"], "jfr_out.json").exists(), 60,
                 message="the stopped job's process to end")  # fmt: skip
        out_doc = json.loads(Path(bproj.jobs()[0]["run_dir"], "jfr_out.json").read_text())
        assert out_doc["state"] == "FAILED" and out_doc["error"].startswith("Terminated")
        wait_for(lambda: [j["state"] for j in bproj.jobs()] == ["USER_STOPPED", "COMPLETED"], 60,
                 message="the other job completed")  # fmt: skip
        [pilot] = [p for p, r in pilots(bproj).items() if batch.alive(r)]
        code, out, err = bproj.jfr("batch", "list")
        assert code == 0 and pilot in out
        code, out, err = bproj.jfr("batch", "stop", pilot)
        assert code == 0 and "asked to stop" in out
        wait_for(lambda: pilots(bproj)[pilot]["state"] == "ended", 60, message="the pilot gone")
    assert pilots(bproj)[pilot]["end_reason"] == "asked to stop"
    assert pilot_processes(bproj.home) == []


def test_an_unusable_handle_folder_is_a_one_line_remote_error(bproj, capsys):
    blocker = bproj.root / "a-file"
    blocker.write_text("not a folder")
    bproj.rewrite(jobs_handle_dir=str(blocker / "handle"))
    submit_flow(tj.add(1, 2))
    code, _, err = bproj.run_until_idle(timeout=120)
    [job] = bproj.jobs()
    assert job["state"] == "REMOTE_ERROR", job
    assert str(blocker / "handle") in job["error"] and "\n" not in job["error"]
    code, out, _ = bproj.jfr("job", "info", str(job["db_id"]))
    assert code == 0 and "REMOTE_ERROR" in out


def test_killing_the_runner_while_pilots_run_loses_nothing(bproj):
    bproj.rewrite(max_jobs=2, parallel_jobs=2, max_wait=20)
    record = bproj.root / "ran.txt"
    jobs = []
    for c in range(6):
        prev = None
        for k in range(4):
            prev = tj.chaos_step(str(record), f"c{c}-{k}", c * 10 + k, 0.4, prev.output if prev else None)
            jobs.append(prev)
    submit_flow(Flow(jobs))
    rng = random.Random(11)
    runner = bproj.start_runner()
    kills = 0
    try:
        deadline = time.monotonic() + 200
        while kills < 12 and time.monotonic() < deadline:
            time.sleep(rng.uniform(0.3, 1.2))  # the pace of the kills
            os.kill(runner.pid, signal.SIGKILL)
            runner.proc.wait(timeout=30)
            assert gone(runner.pid)
            kills += 1
            runner = bproj.start_runner()
    finally:
        runner.stop()
    code, _, err = bproj.run_until_idle(timeout=300)
    assert code == 0, err
    assert kills >= 10
    done = bproj.jobs()
    assert {j["state"] for j in done} == {"COMPLETED"}, [(j["db_id"], j["state"]) for j in done]
    assert sorted(ran(record)) == sorted(f"c{c}-{k}" for c in range(6) for k in range(4))  # each once
    assert [bproj.output(j) for j in done] == [c * 10 + k for c in range(6) for k in range(4)]


def test_each_job_gets_its_own_devices(bproj, monkeypatch):
    bproj.rewrite(max_jobs=1, parallel_jobs=3)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1,2,3")  # what the allocation gives the pilot
    probes = [tj.env_vars("CUDA_VISIBLE_DEVICES", "JFR_PILOT") for _ in range(2)]
    for probe in probes:
        set_run_config(probe, resources={"gpus": 2})
    plain = tj.env_vars("CUDA_VISIBLE_DEVICES")
    gate = tj.sleep_add(1.5)  # keeps the pilot busy so that the three run side by side
    submit_flow(Flow([gate, *probes, plain]))
    code, _, err = bproj.run_until_idle(timeout=120)
    assert code == 0, err
    got = {j["uuid"]: bproj.output(j) for j in bproj.jobs()}
    seen = sorted(got[p.uuid]["CUDA_VISIBLE_DEVICES"] for p in probes)
    assert seen == ["0,1", "2,3"] and all(got[p.uuid]["JFR_PILOT"] for p in probes)
    assert got[plain.uuid] == {"CUDA_VISIBLE_DEVICES": "0,1,2,3"}  # asked for none: the pilot's view


def test_a_chain_keeps_to_one_pilot_and_each_job_names_it(bproj):
    bproj.rewrite(max_jobs=4, parallel_jobs=2, max_wait=10)
    prev = tj.add(0, 1)
    jobs = [prev]
    for _ in range(7):
        prev = tj.add(prev.output, 1)
        jobs.append(prev)
    submit_flow(Flow(jobs))
    code, _, err = bproj.run_until_idle(timeout=120)
    assert code == 0, err
    done = bproj.jobs()
    assert [bproj.output(j) for j in done] == list(range(1, 9))
    records = pilots(bproj)
    assert len(records) == 1, records  # a running pilot with a free slot takes the next link: no new pilot
    assert {j["pilot"] for j in done} == set(records)  # even the jobs that ran between two looks of the monitor
