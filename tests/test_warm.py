"""Warm starts of local shell jobs: the job forks from the runner's warm server,
in its own environment, and still stops, fails and reports like a cold one."""

from __future__ import annotations

import json
import os
import signal
import socket
import sys
from pathlib import Path

import pytest
from jobflow import Flow

from jfr_lib import set_run_config, submit_flow
from jfr_lib.warm import mismatch, shadowed, socket_path

import testjobs as tj
from conftest import gone, wait_for


def request(**changes) -> dict:
    """What a client on this machine, with this Python and environment, would send."""
    base = {"host": socket.gethostname(), "executable": sys.executable, "path": ["/run/dir", *sys.path[1:]],
            "env": dict(os.environ), "cwd": "/run/dir", "argv": ["/run/dir"]}  # fmt: skip
    return {**base, **changes}


def test_mismatch_names_what_would_differ(tmp_path):
    assert mismatch(request()) is None
    assert mismatch(request(env={**os.environ, "JFR_SOMETHING": "x", "PATH": "/elsewhere"})) is None
    assert mismatch(request(path=[str(tmp_path), *sys.path])) is None  # an added folder is fine
    assert mismatch(request(env={**os.environ, "PYTHONPATH": str(tmp_path)})) is None  # judged by sys.path

    assert "runs on other-host" in mismatch(request(host="other-host"))
    assert "Python is /opt/other/python3" in mismatch(request(executable="/opt/other/python3"))
    why = mismatch(request(env={**os.environ, "OMP_NUM_THREADS": "3", "LD_PRELOAD": "/x.so"}))
    assert why == "environment variables read at import time differ: LD_PRELOAD, OMP_NUM_THREADS"
    (tmp_path / "json").mkdir()  # a package that would hide the loaded standard json module
    (tmp_path / "json" / "__init__.py").write_text("")
    assert shadowed([str(tmp_path), *sys.path]) == "json"
    assert "would load json from another place" in mismatch(request(path=[str(tmp_path), *sys.path]))


def run_info(job: dict) -> tuple:
    """(the run folder's jfr_out.json, its queue.err)."""
    folder = Path(job["run_dir"])
    out = json.loads((folder / "jfr_out.json").read_text()) if (folder / "jfr_out.json").exists() else None
    err = (folder / "queue.err").read_text() if (folder / "queue.err").exists() else ""
    return out, err


@pytest.mark.e2e
def test_jobs_start_warm_in_their_own_environment(penv):
    penv.write(penv.path.read_text().replace(
        "exec_config:\n", "exec_config:\n  threads:\n    export:\n      OMP_NUM_THREADS: '3'\n"))  # fmt: skip
    first, second = tj.random_draws(), tj.random_draws()
    exported = tj.env_vars("JFR_TEST_VAR", "OMP_NUM_THREADS")
    threads = tj.env_vars("OMP_NUM_THREADS")
    square = tj.spawn_square(7)  # multiprocessing's spawn method works from a warm job
    flow = Flow([first, second, exported, threads, square, tj.add(first.output["random"], 1)])
    set_run_config(exported, exec_config="with_env")
    set_run_config(threads, exec_config="threads")
    submit_flow(flow)
    penv.run_until_idle()
    jobs = {j["uuid"]: j for j in penv.jobs()}
    assert {j["state"] for j in jobs.values()} == {"COMPLETED"}
    started = {uuid: j.get("started") for uuid, j in jobs.items()}
    assert started.pop(threads.uuid) == "cold"
    assert set(started.values()) == {"warm"}

    a, b = penv.output(jobs[first.uuid]), penv.output(jobs[second.uuid])
    assert a["pid"] != b["pid"]
    assert a["random"] != b["random"] and a["numpy"] != b["numpy"]  # generators reseeded per job
    assert penv.output(jobs[exported.uuid]) == {"JFR_TEST_VAR": "from-exec-config", "OMP_NUM_THREADS": None}
    assert penv.output(jobs[threads.uuid]) == {"OMP_NUM_THREADS": "3"}
    assert penv.output(jobs[square.uuid]) == 49
    _, err = run_info(jobs[threads.uuid])
    assert "starting cold: environment variables read at import time differ: OMP_NUM_THREADS" in err
    assert run_info(jobs[exported.uuid])[1] == ""  # a warm start says nothing


@pytest.mark.e2e
def test_warm_start_can_be_turned_off(penv):
    penv.write(runner={"warm_start": "false"})
    submit_flow(tj.add(1, 2))
    penv.run_until_idle()
    (job,) = penv.jobs()
    assert job["state"] == "COMPLETED" and job["started"] == "cold"
    assert "--warm" not in (Path(job["run_dir"]) / "submit.sh").read_text()


def started_pid(penv) -> int:
    """The pid of the job's own process, from its started marker, once it runs."""

    def find():
        for job in penv.jobs():
            marker = Path(job.get("run_dir") or "/nonexistent") / "jfr_started"
            if marker.exists() and marker.read_text().strip():
                return int(marker.read_text().split()[1])
        return None

    return wait_for(find, 60, message="the job to start")


@pytest.mark.e2e
@pytest.mark.parametrize("warm", [True, False])
def test_job_stop_terminates_the_job_itself(penv, warm):
    penv.write(runner={"warm_start": str(warm).lower()})
    submit_flow(tj.sleep_add(300, 1, 1))
    with penv.start_runner():
        pid = started_pid(penv)
        wait_for(lambda: penv.jobs()[0]["state"] == "RUNNING" and not penv.jobs()[0].get("lock_id"), 30,
                 message="RUNNING and unlocked")  # fmt: skip
        if warm:  # its own command line, not the runner's (`pkill -f "jfr runner"` must not hit it)
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode().strip()
            assert cmdline == f"jfr-job {penv.jobs()[0]['run_dir']}"
        if warm:  # `jfr runner info` shows the warm server and what it started
            def warm_server():
                info = json.loads(penv.jfr("runner", "info", "--json")[1])
                return [c for c in info["children"] if c["action"] == "warm" and c.get("jobs") == 1]

            assert wait_for(warm_server, 10, message="the warm server in runner info")[0]["state"] == "listening"
        code, out, err = penv.jfr("job", "stop", "1", check=False)
        (job,) = penv.jobs()
        assert code == 0, (err, job)
        wait_for(lambda: gone(pid), 60, message=f"the job's process {pid} to end")
        assert job["state"] == "USER_STOPPED"
        out, _ = wait_for(lambda: run_info(job)[0] and run_info(job), 60, message="jfr_out.json")
        assert out["state"] == "FAILED" and "terminated by signal 15" in out["error"]
        assert out["started"] == ("warm" if warm else "cold")


@pytest.mark.e2e
def test_a_killed_script_terminates_its_warm_job(penv):
    submit_flow(tj.sleep_add(300, 1, 1))
    with penv.start_runner():
        pid = started_pid(penv)
        (job,) = penv.jobs()

        def client():
            for entry in os.listdir("/proc"):
                try:
                    cmd = Path(f"/proc/{entry}/cmdline").read_bytes().split(b"\0")
                except OSError:
                    continue
                if b"--warm" in cmd and job["run_dir"].encode() in cmd:
                    return int(entry)
            return None

        os.kill(wait_for(client, 10, message="the job's script"), signal.SIGKILL)
        wait_for(lambda: gone(pid), 20, message="the job's process to end")
        job = wait_for(lambda: penv.jobs()[0]["state"] == "FAILED" and penv.jobs()[0], 60, message="FAILED")
        assert "terminated by signal 15" in job["error"]
        assert run_info(job)[0]["started"] == "warm"


def test_the_jobs_own_folder_is_looked_into(tmp_path):
    import queue  # noqa: F401  (loaded, as in the runner: a queue.py beside the job would hide it)

    run_dir = str(tmp_path)
    for name in ("jfr_in.json", "queue.out", "queue.err", "submit.sh"):  # what a run folder holds
        (tmp_path / name).write_text("")
    assert mismatch(request(path=[run_dir, *sys.path[1:]], cwd=run_dir)) is None
    assert mismatch(request(path=["", *sys.path[1:]], cwd=run_dir)) is None
    (tmp_path / "queue.py").write_text("")  # would hide the standard queue module
    assert "would load queue from another place" in mismatch(request(path=["", *sys.path[1:]], cwd=run_dir))


def test_a_long_data_folder_gets_a_short_private_socket(tmp_path):
    assert socket_path(tmp_path) == tmp_path / "wake" / "warm.sock"
    path = socket_path(tmp_path / ("d" * 90))  # too long for a socket name
    assert len(os.fsencode(path)) <= 100 and path.parent.name == f"jfr-{os.getuid()}"
    assert socket_path(tmp_path / ("d" * 90)) == path != socket_path(tmp_path / ("e" * 90))


@pytest.mark.e2e
def test_a_long_data_folder_still_starts_warm(penv):
    penv.write(penv.path.read_text().replace(f"base_dir: {penv.base}", f"base_dir: {penv.root / ('d' * 90)}"))
    submit_flow(tj.add(1, 2))
    penv.run_until_idle()
    (job,) = penv.jobs()
    assert job["state"] == "COMPLETED" and job["started"] == "warm"
    assert (socket_path(penv.project.base_dir).parent.stat().st_mode & 0o777) == 0o700
    assert not socket_path(penv.project.base_dir).exists()  # the stopped server took its socket away


@pytest.mark.e2e
def test_a_warm_job_gets_the_sys_path_of_a_cold_one(penv, tmp_path):
    """The warm client starts without site; the server works out the same sys.path a cold start has."""
    extra = tmp_path / "extra"
    extra.mkdir()
    penv.write(penv.path.read_text().replace(
        "exec_config:\n", f"exec_config:\n  cold:\n    export:\n      OMP_NUM_THREADS: '2'\n"
                          f"      PYTHONPATH: {extra}:$PYTHONPATH\n"
                          f"  warm:\n    export:\n      PYTHONPATH: {extra}:$PYTHONPATH\n"))  # fmt: skip
    warm, cold = tj.python_path(), tj.python_path()
    set_run_config(warm, exec_config="warm")
    set_run_config(cold, exec_config="cold")  # a thread count differs: this one starts cold
    submit_flow(Flow([warm, cold]))
    penv.run_until_idle()
    jobs = {j["uuid"]: j for j in penv.jobs()}
    assert (jobs[warm.uuid]["started"], jobs[cold.uuid]["started"]) == ("warm", "cold")
    script = (Path(jobs[warm.uuid]["run_dir"]) / "submit.sh").read_text()
    assert " -S -c " in script and "jfr_lib.warm_client" in script
    w, c = penv.output(jobs[warm.uuid]), penv.output(jobs[cold.uuid])
    assert w["path"][0] == w["cwd"] == jobs[warm.uuid]["run_dir"] and c["path"][0] == c["cwd"]

    def own_folder_named(out):  # each job has its own folder; the rest must be the same
        return ["FOLDER" if entry == out["cwd"] else entry for entry in out["path"]]

    assert w["path"][1] == str(extra) and own_folder_named(w) == own_folder_named(c)
