"""jobflow-remote 1.0.1's commands and options in jfr: aliases, argument orders, the commands it has
that jfr lacked (set-state, info --pid, files delete, flow clean, unlock-flow, unlock-runner, project
remove, runner shutdown --all), and errors reported by the sub-command that got the bad option."""

from __future__ import annotations

import json
import time
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from jobflow import Flow
from test_job_cmd import run_main

from jfr_lib import submit_flow

import testjobs as tj
from conftest import wait_for


@pytest.fixture
def two(penv):
    """Flow 1: three 'relax' jobs (metadata material=Si); flow 2: job 4 'static' on worker 'other'."""
    penv.write(None, workers=f"  other:\n    type: local\n    work_dir: {penv.work}/other\n")
    relax = [tj.add(i, 1) for i in range(3)]
    for job in relax:
        job.name = f"relax-{job.name}"
        job.metadata = {"material": "Si", "calc": {"kind": "relax"}}
    submit_flow(Flow(relax, name="first"))
    static = tj.add(9, 9)
    static.name = "static"
    submit_flow(Flow([static], name="second"), worker="other")
    return penv


def ids(capsys, *args) -> list:
    code, out, err = run_main(capsys, *args, "--json")
    assert code == 0, err
    return [row["db_id"] for row in json.loads(out)]


def one_line_error(err: str, start: str) -> bool:
    return len(err.splitlines()) == 1 and err.startswith(start) and "Traceback" not in err


def job(penv, db_id: int) -> dict:
    with penv.db() as db:
        return db.get_job(db_id=db_id)


# --- errors name the sub-command --------------------------------------------------------------


@pytest.mark.parametrize("args, prog", [
    (["job", "list", "--bogus"], "jfr job list"),
    (["job", "set", "worker", "W", "1", "--bogus"], "jfr job set worker"),
    (["job", "--bogus", "list"], "jfr job"),
    (["flow", "clean", "--bogus"], "jfr flow clean"),
    (["runner", "status", "extra"], "jfr runner status"),
    (["--bogus", "job", "list"], "jfr"),
])  # fmt: skip
def test_an_unknown_option_is_reported_by_its_sub_command(penv, capsys, args, prog):
    code, out, err = run_main(capsys, *args)
    assert (code, out) == (2, "")
    assert one_line_error(err, f"{prog}: error: unrecognized arguments: ")
    assert err.rstrip().endswith(f"(see {prog} --help)")


# --- selection aliases ------------------------------------------------------------------------


def test_job_selection_aliases(two, capsys):
    uuid4 = job(two, 4)["uuid"]
    assert ids(capsys, "job", "list", "-did", "2", "-did", "3") == [2, 3]
    assert ids(capsys, "job", "list", "--db-id", "1") == [1]
    assert ids(capsys, "job", "list", "-jid", uuid4) == [4]
    assert ids(capsys, "job", "list", "-jid", f"{uuid4}:1") == [4]
    assert ids(capsys, "job", "list", "-fid", "2") == [4]
    assert ids(capsys, "job", "list", "--flow-id", "1", "-fid", "2") == [1, 2, 3, 4]
    assert ids(capsys, "job", "list", "-wk", "other") == [4]
    assert ids(capsys, "job", "list", "-s", "READY", "-did", "1") == [1]
    assert ids(capsys, "job", "list", "-s", "PAUSED", "-did", "1") == []  # IDs and filters: both hold
    assert ids(capsys, "job", "list", "-meta", "material=Si") == [1, 2, 3]
    assert ids(capsys, "job", "list", "-meta", '{"material": "Si", "calc.kind": "relax"}') == [1, 2, 3]
    assert ids(capsys, "job", "list", "--metadata", "material=Si,calc.kind=static") == []
    assert ids(capsys, "job", "list", "-m", "2") == [3, 4]
    assert ids(capsys, "job", "list", "--max-results", "2", "-revs") == [1, 2]
    assert ids(capsys, "job", "list", "-lf", "1") == [4]
    assert ids(capsys, "job", "list", "-v", "-vv") == [1, 2, 3, 4]  # jobflow-remote's verbosity: accepted
    assert run_main(capsys, "job", "list", "--count", "-did", "1", "-did", "2")[1].strip() == "2"
    code, _, err = run_main(capsys, "job", "list", "-jid", f"{uuid4}:7")
    assert code == 3 and "no job" in err
    code, _, err = run_main(capsys, "job", "list", "-did", uuid4)
    assert code == 2 and one_line_error(err, "jfr: error: -did") and "-jid" in err
    with two.db() as db:
        db.update_job(2, {"lock_id": "host:1:upload:0"})
        db.update_job(3, {"state": "FAILED"})
        db.update_job(4, {"state": "SUBMITTED"})
    assert (ids(capsys, "job", "list", "-l"), ids(capsys, "job", "list", "-e"), ids(capsys, "job", "list", "-run")) == (
        [2], [3], [4])


def test_dates_days_and_hours(two, capsys):
    ahead = (datetime.now() + timedelta(minutes=2)).strftime("%H:%M:%S")  # its latest occurrence: yesterday
    assert ids(capsys, "job", "list", "-sdate", ahead) == [1, 2, 3, 4]
    assert ids(capsys, "job", "list", "-edate", ahead) == []
    assert ids(capsys, "job", "list", "--start-date", "1h", "--end-date", "2099-01-01") == [1, 2, 3, 4]
    assert ids(capsys, "job", "list", "-sdate", "2099-01-01") == []
    assert ids(capsys, "job", "list", "-ds", "1") == [1, 2, 3, 4]
    assert ids(capsys, "job", "list", "--hours", "1") == [1, 2, 3, 4]
    code, _, err = run_main(capsys, "job", "list", "-ds", "1", "-sdate", "1h")
    assert code == 2 and one_line_error(err, "jfr: error: --since and --days")
    code, _, err = run_main(capsys, "job", "list", "-sdate", "25:00")
    assert code == 2 and "HH:MM:SS" in err


def test_dash_n_is_the_number_on_listings_and_the_name_elsewhere(two, capsys):
    assert ids(capsys, "job", "list", "-n", "1") == [4]
    code, out, err = run_main(capsys, "job", "list", "-n", "relax*")
    assert (code, out) == (2, "") and one_line_error(err, "jfr job list: error: argument -n") and "--name" in err
    code, _, err = run_main(capsys, "flow", "list", "-n", "first")
    assert code == 2 and "--name" in err
    code, out, _ = run_main(capsys, "job", "pause", "-n", "relax-*", "-y")
    assert code == 0 and out.count("READY -> PAUSED") == 3
    assert ids(capsys, "job", "list", "-s", "PAUSED") == [1, 2, 3]


def test_a_uuid_and_an_index(two, capsys):
    uuid = job(two, 2)["uuid"]
    assert json.loads(run_main(capsys, "job", "info", uuid, "1", "--json")[1])["db_id"] == 2
    assert json.loads(run_main(capsys, "job", "info", f"{uuid}:1", "--json")[1])["db_id"] == 2
    code, _, err = run_main(capsys, "job", "info", uuid, "3")
    assert code == 3 and f"no job {uuid} with index 3" in err
    code, _, err = run_main(capsys, "job", "info", "2", "1")
    assert code == 2 and "goes with a uuid" in err
    code, out, err = run_main(capsys, "job", "pause", uuid, "1")  # jf: one job with index 1; jfr: two jobs
    assert (code, out) == (2, "") and one_line_error(err, "jfr: error:") and f"{uuid}:1" in err
    assert ids(capsys, "job", "list", "-s", "PAUSED") == []
    code, out, _ = run_main(capsys, "job", "pause", f"{uuid}:1")
    assert code == 0 and "job 2: READY -> PAUSED" in out


def test_refused_options_say_why(two, capsys):
    code, _, err = run_main(capsys, "job", "rerun", "1", "-bl")
    assert code == 2 and one_line_error(err, "jfr job rerun: error: -bl:") and "jfr admin unlock" in err
    code, _, err = run_main(capsys, "job", "list", "-q", '{"state": "READY"}')
    assert code == 2 and "not supported" in err


def test_job_info_show_none(two, capsys):
    shown = run_main(capsys, "job", "info", "1")[1]
    everything = run_main(capsys, "job", "info", "1", "-n")[1]
    assert "exec_config" not in shown and "exec_config " in everything


def test_delete_all_is_output_and_files(two, capsys):
    code, out, _ = run_main(capsys, "job", "delete", "-did", "4", "-a")
    assert code == 0 and out == "job 4: deleted\n"
    code, out, _ = run_main(capsys, "job", "delete", "-jid", job(two, 3)["uuid"], "-o", "-fi")
    assert code == 0 and out == "job 3: deleted\n"
    assert [j["db_id"] for j in two.jobs()] == [1, 2]


# --- job set ----------------------------------------------------------------------------------


def test_set_takes_jobflow_remotes_order_and_values(two, capsys):
    assert run_main(capsys, "job", "set", "worker", "-did", "1", "other")[0] == 0
    assert run_main(capsys, "job", "set", "priority", "-did", "2", "-did", "3", "7", "-y")[0] == 0
    code, out, _ = run_main(capsys, "job", "set", "resources", "-did", "1", "nodes=2,time=1:00:00")
    assert code == 0 and '{"nodes": 2, "time": "1:00:00"}' in out
    assert run_main(capsys, "job", "set", "exec-config", "-fid", "2", "with_env")[0] == 0
    assert (job(two, 1)["worker"], job(two, 1)["resources"]) == ("other", {"nodes": 2, "time": "1:00:00"})
    assert [job(two, i)["priority"] for i in (2, 3)] == [7, 7] and job(two, 4)["exec_config"] == "with_env"
    code, _, _ = run_main(capsys, "job", "set", "resources", "-did", "1", "-qr", "nodes=3,job_name=x")
    res = job(two, 1)["resources"]
    assert code == 0 and res["@class"] == "QResources" and (res["nodes"], res["job_name"]) == (3, "x")
    assert "time" not in res  # a QResources replaces
    code, _, err = run_main(capsys, "job", "set", "resources", "-did", "1", "--qresources", "flavour=x")
    assert code == 2 and "not a QResources field" in err
    code, _, err = run_main(capsys, "job", "set", "resources", "-did", "1", "nodes")
    assert code == 2 and one_line_error(err, "jfr: error: resources")


def test_set_refuses_what_the_runner_holds(two, capsys):
    with two.db() as db:
        db.update_job(1, {"lock_id": "host:1:upload:0", "lock_time": time.time()})
        db.update_job(2, {"state": "SUBMITTED"})
        db.update_job(3, {"state": "REMOTE_ERROR", "run_dir": str(two.work / "x"), "previous_state": "UPLOADED"})
    code, _, err = run_main(capsys, "job", "set", "worker", "other", "1")
    assert code == 4 and "being worked on by the runner" in err
    code, _, err = run_main(capsys, "job", "set", "priority", "3", "2")
    assert code == 4 and "is SUBMITTED" in err
    code, _, err = run_main(capsys, "job", "set", "worker", "other", "3")
    assert code == 4 and "a retry would go on" in err
    code, _, _ = run_main(capsys, "job", "set", "priority", "5", "3")  # what only a submission reads: allowed
    assert code == 0 and job(two, 3)["priority"] == 5
    assert (job(two, 1)["worker"], job(two, 2)["priority"]) == ("local", 0)
    code, out, err = run_main(capsys, "job", "set", "priority", "9", "-did", "1", "-did", "4", "-y", "-re")
    assert code == 4 and out == ""  # -re: the first refusal stops the command
    assert job(two, 4)["priority"] == 0


# --- set-state --------------------------------------------------------------------------------


def test_set_state_is_for_experts(two, capsys):
    code, out, err = run_main(capsys, "job", "set-state", "COMPLETED", "1", stdin="n\n")
    assert (code, out) == (1, "") and "bypasses jfr's rules" in err and "nothing done" in err
    assert job(two, 1)["state"] == "READY"
    code, out, err = run_main(capsys, "job", "set-state", "completed", "1", stdin="y\n")
    assert code == 0 and out == "job 1: READY -> COMPLETED\n"
    code, out, err = run_main(capsys, "job", "set-state", "FAILED", "-did", "2", "-did", "3", "--force")
    assert code == 0 and out.count("READY -> FAILED") == 2 and err == ""
    assert [job(two, i)["state"] for i in (1, 2, 3)] == ["COMPLETED", "FAILED", "FAILED"]
    assert job(two, 2)["previous_state"] == "READY"
    with two.db() as db:
        assert db.get_flow(db_id=1)["state"] == "FAILED"  # the flow's state follows
        db.update_job(4, {"lock_id": "host:1:submit:0"})
    code, _, err = run_main(capsys, "job", "set-state", "READY", "4", "-f")
    assert code == 4 and "being worked on" in err and job(two, 4)["state"] == "READY"
    code, _, err = run_main(capsys, "job", "set-state", "DONE", "4", "-f")
    assert code == 2 and "unknown state 'DONE'" in err
    code, _, err = run_main(capsys, "job", "set-state", "READY", "99", "-f")
    assert code == 3


# --- flows ------------------------------------------------------------------------------------


def test_flow_selection_by_job_as_jobflow_remote_names_flows(two, capsys):
    uuid4 = job(two, 4)["uuid"]
    assert ids(capsys, "flow", "list", "-did", "4") == [2]
    assert ids(capsys, "flow", "list", "-jid", uuid4, "-did", "1") == [1, 2]
    assert ids(capsys, "flow", "list", "-fid", "1") == [1]
    assert ids(capsys, "flow", "list", "-meta", "material=Si") == []  # the flows carry no metadata
    assert ids(capsys, "flow", "list", "-m", "1") == [2]
    assert ids(capsys, "flow", "list", "--sort", "created_on", "-revs", "-m", "1") == [1]
    assert ids(capsys, "flow", "list", "-sdate", "2099-01-01") == []
    assert run_main(capsys, "flow", "list", "--count", "-did", "2")[1].strip() == "1"
    assert json.loads(run_main(capsys, "flow", "info", "4", "-j", "--json")[1])["name"] == "second"
    assert "j4" in run_main(capsys, "flow", "graph", "-j", uuid4, "-m")[1]


def test_flow_delete_with_jobflow_remote_options(two, capsys):
    code, _, err = run_main(capsys, "flow", "delete", "-s", "READY", "-m", "1", "-y")
    assert code == 4 and "more than --max 1" in err
    code, out, _ = run_main(capsys, "flow", "delete", "-did", "4", "-y")  # the flow of job 4: flow 2
    assert code == 0 and out == "flow 2: deleted with 1 jobs\n"
    code, _, err = run_main(capsys, "flow", "delete", "-y")
    assert code == 2 and "name flows by ID or select them" in err
    assert [j["db_id"] for j in two.jobs()] == [1, 2, 3]


# --- admin ------------------------------------------------------------------------------------


def test_unlock_flow(two, capsys):
    with two.db() as db:
        for db_id in (1, 2, 4):
            db.update_job(db_id, {"lock_id": f"gone:{db_id}", "lock_time": time.time()})
    code, out, _ = run_main(capsys, "admin", "unlock-flow", "1", "-y")
    assert code == 0 and out == "job 1: unlocked\njob 2: unlocked\n"
    assert job(two, 4)["lock_id"] == "gone:4"
    code, out, _ = run_main(capsys, "admin", "unlock-flow", "-did", "4")
    assert code == 0 and out == "job 4: unlocked\n"
    code, out, _ = run_main(capsys, "admin", "unlock-flow")
    assert code == 0 and out == "no locked job\n"


def _lease(penv, **changes) -> dict:
    from jfr_lib import lease

    doc = {**lease.new_lease(1, 3), **changes}  # this test process: a live runner on this host
    with penv.db() as db:
        db.set_meta(lease.KEY, doc)
    return doc


def test_unlock_runner(two, capsys):
    from jfr_lib import lease

    code, out, _ = run_main(capsys, "admin", "unlock-runner")
    assert code == 0 and "nothing to unlock" in out
    _lease(two)
    code, _, err = run_main(capsys, "admin", "unlock-flow", "1", "-y")
    assert code == 4 and "a runner is running" in err
    code, _, err = run_main(capsys, "admin", "unlock-runner")
    assert code == 4 and "is running" in err and "--force" in err
    with two.db() as db:
        assert lease.read(db) is not None
    code, out, _ = run_main(capsys, "admin", "unlock-runner", "--force")
    assert code == 0 and "dropped the lease" in out
    with two.db() as db:
        assert lease.read(db) is None
    _lease(two, host="elsewhere", heartbeat=time.time() - 3600)  # stale: its heartbeat stopped an hour ago
    code, out, _ = run_main(capsys, "admin", "unlock-runner")
    assert code == 0 and "stale" in out
    with two.db() as db:
        assert lease.read(db) is None


# --- projects ---------------------------------------------------------------------------------


def _second_project(penv, capsys, name="other") -> Path:
    base = penv.root / f"{name}-data"
    assert run_main(capsys, "project", "init", name, "--base-dir", str(base))[0] == 0
    return base


def test_project_default(penv, capsys):
    code, out, err = run_main(capsys, "project", "default")
    assert (code, out) == (3, "") and "no default project" in err
    _second_project(penv, capsys)
    code, _, err = run_main(capsys, "job", "list")
    assert code == 2 and "several projects" in err
    code, _, err = run_main(capsys, "project", "default", "nope")
    assert code == 3 and "no project named 'nope'" in err
    assert run_main(capsys, "project", "default", "test")[0] == 0
    assert run_main(capsys, "project", "default")[1] == "test\n"
    assert run_main(capsys, "job", "list")[0] == 0  # the default chooses
    code, _, err = run_main(capsys, "project", "default", "test", "--unset")
    assert code == 2
    assert run_main(capsys, "project", "default", "--unset")[0] == 0
    assert run_main(capsys, "project", "default")[0] == 3


def test_project_remove(penv, capsys):
    assert run_main(capsys, "-p", "test", "job", "list")[0] == 0  # makes the data folder of project test
    base = _second_project(penv, capsys)
    path = penv.projects / "other.yaml"
    run_main(capsys, "project", "default", "other")
    assert run_main(capsys, "-p", "other", "job", "list")[0] == 0  # makes its queue database
    assert (base / "queue.db").exists()
    code, _, err = run_main(capsys, "project", "remove", "other", stdin="n\n")
    assert code == 1 and path.exists() and "nothing done" in err
    code, _, err = run_main(capsys, "project", "remove", "nope", "-y")
    assert code == 3
    from jfr_lib import lease
    from jfr_lib.config import load_project_file
    from jfr_lib.queue_db import open_queue_db

    with open_queue_db(load_project_file(path)) as db:
        db.set_meta(lease.KEY, lease.new_lease(1, 3))  # a live runner (this process)
    code, _, err = run_main(capsys, "project", "remove", "other", "--data", "-y")
    assert code == 4 and "stop it first" in err and path.exists()
    with open_queue_db(load_project_file(path)) as db:
        db.set_meta(lease.KEY, {"token": None})
    code, out, _ = run_main(capsys, "project", "remove", "other", "--data", stdin="y\n")
    assert code == 0 and not path.exists() and not base.exists()
    assert "was the default project" in out and run_main(capsys, "project", "default")[0] == 3
    assert (penv.projects / "test.yaml").exists() and penv.base.exists()


# --- with the real runner ---------------------------------------------------------------------


@pytest.mark.e2e
def test_run_folders_queue_ids_and_finished_jobs(penv, capsys):
    submit_flow(Flow([tj.add(1, 2), tj.fail("boom")], name="ran"))
    submit_flow(Flow([tj.add(3, 4)], name="also"))
    penv.run_until_idle()
    done, failed, other = (job(penv, i) for i in (1, 2, 3))
    assert (done["state"], failed["state"], other["state"]) == ("COMPLETED", "FAILED", "COMPLETED")
    # info --pid: by the queue id (here a pid of the shell queue)
    code, out, _ = run_main(capsys, "job", "info", "--pid", str(failed["queue_id"]), "--json")
    assert code == 0 and json.loads(out)["db_id"] == 2
    code, _, err = run_main(capsys, "job", "info", "--pid", "no-such-id")
    assert code == 3 and "no job with queue id" in err
    code, _, err = run_main(capsys, "job", "info", "1", "--pid", "1")
    assert code == 2
    # set on finished jobs (for a rerun)
    assert run_main(capsys, "job", "set", "priority", "4", "1", "2", "-y")[0] == 0
    assert run_main(capsys, "job", "set", "exec-config", "with_env", "2")[0] == 0
    assert (job(penv, 1)["priority"], job(penv, 2)["exec_config"]) == (4, "with_env")
    # files ls and get as jobflow-remote writes them (ID INDEX, -p PATH)
    code, out, _ = run_main(capsys, "job", "files", "ls", done["uuid"], "1")
    assert code == 0 and "jfr_out.json" in out
    code, out, _ = run_main(capsys, "job", "files", "get", done["uuid"], "jfr_out.json", "-i", "1", "-p",
                            str(penv.root / "got"))  # fmt: skip
    assert code == 0 and (penv.root / "got" / "jfr_out.json").is_file()
    # files delete: the folder goes, the job and its output stay
    code, out, _ = run_main(capsys, "job", "files", "delete", "1")
    assert code == 0 and out == f"job 1: deleted {done['run_dir']}\n"
    assert not Path(done["run_dir"]).exists() and Path(failed["run_dir"]).exists()
    assert job(penv, 1)["state"] == "COMPLETED" and job(penv, 1)["lock_id"] is None
    assert penv.output(done) == 3
    code, _, err = run_main(capsys, "job", "files", "delete", "1")
    assert code == 3 and "gone already" in err
    with penv.db() as db:
        db.update_job(2, {"lock_id": "host:1:download:0"})
        db.update_job(3, {"state": "REMOTE_ERROR"})
    code, _, err = run_main(capsys, "job", "files", "delete", "2")
    assert code == 4 and "the runner is working on it" in err and Path(failed["run_dir"]).exists()
    code, _, err = run_main(capsys, "job", "files", "delete", "3")
    assert code == 4 and "a retry goes on in it" in err and Path(other["run_dir"]).exists()
    with penv.db() as db:
        db.update_job(2, {"lock_id": None})
        db.update_job(3, {"state": "COMPLETED", "run_dir": "/tmp"})
    code, _, err = run_main(capsys, "job", "files", "delete", "3")
    assert code == 4 and "not inside the work_dir" in err and Path("/tmp").is_dir()
    with penv.db() as db:
        db.update_job(3, {"run_dir": other["run_dir"]})
    submit_flow(Flow([tj.add(5, 5)], name="waiting"))
    code, _, err = run_main(capsys, "job", "files", "delete", "4")
    assert code == 3 and "has no run folder" in err
    # flow clean: every flow's finished run folders, after a question
    code, _, err = run_main(capsys, "flow", "clean", stdin="n\n")
    assert code == 1 and Path(failed["run_dir"]).exists()
    code, out, err = run_main(capsys, "flow", "clean", "-fid", "1", stdin="y\n")
    assert code == 0 and out == f"job 2: deleted {failed['run_dir']}\n" and Path(other["run_dir"]).exists()
    assert "1 gone already" in err
    with penv.db() as db:
        db.update_job(3, {"state": "RUNNING"})
    code, out, err = run_main(capsys, "flow", "clean", "--all-states", "-y")
    assert (code, out) == (0, "") and "kept for their state: 1 RUNNING" in err and Path(other["run_dir"]).exists()
    with penv.db() as db:
        db.update_job(3, {"state": "COMPLETED"})
    code, out, _ = run_main(capsys, "flow", "clean", "-y")
    assert code == 0 and out == f"job 3: deleted {other['run_dir']}\n" and not Path(other["run_dir"]).exists()
    assert [j["state"] for j in penv.jobs()] == ["COMPLETED", "FAILED", "COMPLETED", "READY"]


@pytest.mark.e2e
def test_runner_foreground_and_shutdown_all(penv, capsys):
    from jfr_lib.cli import build_parser

    parser = build_parser()
    assert parser.parse_args(["runner", "foreground"]).func is parser.parse_args(["runner", "run"]).func
    assert parser.parse_args(["runner", "shutdown"]).func is parser.parse_args(["runner", "stop"]).func
    assert [parser.parse_args(["runner", "stop", *a]).wait for a in (["-w"], ["--wait", "5"], ["-m", "7"])] == [
        120.0, 5.0, 7.0]
    code, out, _ = run_main(capsys, "runner", "shutdown", "--all")
    assert code == 0 and "no runner runs on this host" in out
    with penv.start_runner() as runner:
        wait_for(lambda: run_main(capsys, "runner", "status")[0] == 0, 60, message="the runner to run")
        runner.wait_children()  # a stop during start-up waits for the children's own timeout
        code, out, err = run_main(capsys, "runner", "shutdown", "--all")
        assert code == 0, err
        assert out.startswith(f"test: runner (pid {runner.pid}) stopped")
        assert runner.proc.wait(timeout=60) == 0
    assert run_main(capsys, "runner", "status")[0] == 3

