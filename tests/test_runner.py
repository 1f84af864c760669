"""The foreground runner: --once passes, signals, stale locks, restarted children."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys

import pytest

from jfr_lib import submit_flow

import testjobs as tj
from conftest import ROOT, RUNNER_CHILDREN, children_of, gone, wait_for

pytestmark = pytest.mark.e2e


def states(penv):
    return [j["state"] for j in penv.jobs()]


def test_once_does_one_pass_and_exits(penv):
    a = tj.add(1, 2)
    submit_flow([a, tj.add(a.output, 3)])
    code, _, _ = penv.jfr("runner", "run", "--once")
    assert code == 0
    first = states(penv)
    assert first[0] in ("SUBMITTED", "RUNNING", "RUN_FINISHED") and first[1] == "WAITING"

    def one_more_pass():  # each pass moves what can move, until both are done
        if states(penv) == ["COMPLETED", "COMPLETED"]:
            return True
        penv.jfr("runner", "run", "--once")
        return False

    wait_for(one_more_pass, 120, message="both jobs COMPLETED through --once passes")
    assert penv.output(penv.jobs()[1]) == 6


def test_sigterm_stops_the_runner_and_its_action_processes(penv):
    with penv.start_runner() as runner:
        kids = runner.wait_children()
        assert len(kids) == RUNNER_CHILDREN  # one process per action, and the warm server
        runner.proc.send_signal(signal.SIGTERM)
        assert runner.proc.wait(timeout=30) == 0
        for pid in kids:
            assert gone(pid)


def test_a_killed_action_process_is_restarted(penv):
    proc = subprocess.Popen([sys.executable, str(ROOT / "jfr.py"), "runner", "run"], env=penv.env(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)  # fmt: skip
    try:
        wait_for(lambda: len(children_of(proc.pid)) >= RUNNER_CHILDREN, 30, message="the runner's processes")
        victim = children_of(proc.pid)[0]
        os.kill(victim, signal.SIGKILL)
        wait_for(lambda: len(kids := children_of(proc.pid)) == RUNNER_CHILDREN and victim not in kids, 30,
                 message="the killed action process replaced")  # fmt: skip
        submit_flow(tj.add(2, 2))  # and the runner still works
        wait_for(lambda: states(penv) == ["COMPLETED"], 60, message="the job COMPLETED")
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    assert "restarting" in proc.stderr.read()


def test_stale_locks_are_released_at_start(penv):
    submit_flow(tj.add(3, 4))
    with penv.db() as db:
        assert db.claim_job({"state": "READY"}, "dead-runner:123:checkout:0") is not None
    penv.run_until_idle()
    assert states(penv) == ["COMPLETED"]
    assert penv.jobs()[0]["lock_id"] is None


def test_an_action_that_grew_is_replaced_by_a_fresh_process(penv):
    """A large output leaves memory behind in the processes it went through: they are replaced."""
    penv.write(runner={"recycle_memory_mb": 20})
    big = tj.big_text(40)  # 40 MB through upload (its child reads it) and complete
    with penv.start_runner() as runner:
        runner.wait_children()
        before = wait_for(lambda: len(action_pids(runner)) == RUNNER_CHILDREN and action_pids(runner), 30,
                          message="the action processes named")  # fmt: skip
        submit_flow([big, tj.length(big.output)])
        wait_for(lambda: states(penv) == ["COMPLETED", "COMPLETED"], 120, message="both jobs COMPLETED")
        log = penv.root / "logs" / "test.log"
        line = wait_for(lambda: re.search(r"action (\w+) grew from \d+ to \d+ MB", log.read_text()), 30,
                        message="the recycle line")  # fmt: skip
        after = wait_for(lambda: len(action_pids(runner)) == RUNNER_CHILDREN and action_pids(runner), 30,
                         message="every action process back")  # fmt: skip
    assert penv.output(penv.jobs()[1]) == 40 * 1024 * 1024
    grown = line.group(1)  # the process reading the output (upload) and the one storing it (complete)
    assert grown in ("upload", "complete") and after[grown] != before[grown]
    assert after["checkout"] == before["checkout"] and after["monitor"] == before["monitor"]
    assert "restarting in" not in log.read_text()  # a replacement, not a crash with its back-off


def action_pids(runner) -> dict:
    out = {}
    for pid in children_of(runner.pid):
        if gone(pid):  # a process that ended and is not reaped yet
            continue
        try:
            with open(f"/proc/{pid}/comm") as f:
                name = f.read().strip()
        except OSError:
            continue
        if name.startswith("jfr-") and name != "jfr-job":
            out[name[4:]] = pid
    return out


def test_a_sigterm_while_the_runner_starts_stops_it_at_once(penv):
    """A child forked just before the signal, that had no handler of its own yet, still stops
    (it used to run on until the parent's 60-s grace ran out)."""
    proc = subprocess.Popen([sys.executable, str(ROOT / "jfr.py"), "runner", "run"], env=penv.env(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)  # fmt: skip
    try:
        wait_for(lambda: children_of(proc.pid), 60, interval=0.01, message="the first action process")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
