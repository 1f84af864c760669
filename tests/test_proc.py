"""Watching local processes through pidfds: the end of a job's process, and a reused pid."""

from __future__ import annotations

import os
import select
import subprocess
import sys

import pytest

from jfr_lib.proc import ProcessWatch, process_start

from conftest import wait_for

watch_needed = pytest.mark.skipif(not ProcessWatch().supported, reason="no pidfd on this system")


@watch_needed
def test_a_process_end_is_seen_and_wakes_a_select():
    watch = ProcessWatch()
    proc = subprocess.Popen(["bash", "-c", "read line"], stdin=subprocess.PIPE)
    try:
        start = process_start(proc.pid)
        assert start is not None and watch.alive("job", proc.pid, start)
        assert len(watch.fds()) == 1 and not select.select(watch.fds(), [], [], 0)[0]
        proc.stdin.close()  # the process ends
        assert select.select(watch.fds(), [], [], 30)[0]  # the wait ends with it, no polling
        proc.wait(timeout=30)
        assert not watch.alive("job", proc.pid, start)
    finally:
        proc.kill()
        watch.close()
    assert watch.fds() == []


@watch_needed
def test_a_reused_pid_or_another_program_is_not_the_job():
    watch = ProcessWatch()
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        wait_for(lambda: process_start(sleeper.pid), 10, message="the process to start")
        assert not watch.alive(1, sleeper.pid)  # a python process where a job's bash was expected
        bash = subprocess.Popen(["bash", "-c", "sleep 60; exit 0"])  # two commands: bash stays bash
        try:
            assert not watch.alive(2, bash.pid, start="1")  # same pid, other start time: a reuse
            assert watch.alive(3, bash.pid, process_start(bash.pid))
            watch.keep_only([])
            assert watch.fds() == []
        finally:
            bash.kill()
            bash.wait(timeout=30)
    finally:
        sleeper.kill()
        sleeper.wait(timeout=30)
    assert not watch.alive(4, 2**22 + 12345)  # no such process


def test_process_start_of_this_process():
    assert process_start(os.getpid()) is not None and process_start(2**22 + 12345) is None


@watch_needed
@pytest.mark.e2e
def test_local_jobs_end_without_ps(penv, tmp_path):
    """The monitor learns from pidfds that local shell jobs ended: a PATH without ps changes nothing."""
    import shutil

    from jobflow import Flow

    from jfr_lib import submit_flow

    import testjobs as tj

    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name in ("bash", "sh", "nohup", "cat", "env"):
        os.symlink(shutil.which(name), bin_dir / name)
    a = tj.add(1, 2)
    submit_flow(Flow([a, tj.add(a.output, 3)]))
    env = {**penv.env(), "PATH": str(bin_dir)}
    runner = [sys.executable, "-c", "import sys; from jfr_lib.cli import main; "
              "sys.exit(main(['runner', 'run', '--exit-when-idle']))"]  # fmt: skip
    proc = subprocess.run(runner, env=env, capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stderr
    jobs = penv.jobs()
    assert [j["state"] for j in jobs] == ["COMPLETED", "COMPLETED"] and penv.output(jobs[1]) == 6
    assert "queue status failed" not in (penv.root / "logs" / "test.log").read_text()


@watch_needed
def test_the_script_is_the_job_while_nohup_starts_it(tmp_path):
    """`nohup bash submit.sh`: for an instant the job's pid runs nohup, not yet bash."""
    import shutil

    fake = tmp_path / "nohup"  # a process whose command name is nohup
    os.symlink(shutil.which("sleep"), fake)
    proc = subprocess.Popen([str(fake), "60"])
    watch = ProcessWatch()
    try:
        wait_for(lambda: process_start(proc.pid), 10, message="the process to start")
        assert watch.alive("job", proc.pid, process_start(proc.pid))
    finally:
        proc.kill()
        proc.wait(timeout=30)
        watch.close()
