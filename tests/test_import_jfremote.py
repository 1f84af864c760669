"""A jobflow-remote 1.0.1 queue brought into jfr (``jfr_lib/import_jfremote.py``, ``jfr_lib/jfremote.py``).

The source is a mongomock database filled with documents laid out as jobflow-remote
1.0.1 writes them (``jobs/data.py``: ``JobDoc.as_db_dict``, ``FlowDoc``, the auxiliary
counters; ``jobs/jobcontroller.py``: ``add_flow``, ``_append_flow``; ``jobs/run.py``:
what its worker leaves in a run folder), the target a real SQLite jfr project, and
jfr's real runner finishes what was left.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from jobflow import Flow, JobStore
from maggma.stores import JSONStore
from monty.json import jsanitize
from monty.serialization import dumpfn
from test_job_cmd import run_main

from jfr_lib.cli import main
from jfr_lib.errors import StateError
from jfr_lib.import_jfremote import Importer, detect_jobflow_remote
from jfr_lib.jfremote import source_from_project

import testjobs as tj

mongomock = pytest.importorskip("mongomock")

#: MongoDB hands back naive datetimes in UTC.
CREATED = datetime(2024, 5, 1, 12, 0, 0, 250000)
UPDATED = CREATED + timedelta(hours=1)
TRACEBACK = 'Traceback (most recent call last):\n  File "x.py", line 1, in f\nRuntimeError: this job always fails\n'


# --- jobflow-remote's documents --------------------------------------------------
def job_doc(job, db_id, state, parents=(), worker="local", priority=0, remote=None, **fields) -> dict:
    """A job document as ``get_initial_job_doc_dict`` and the runner leave it (``JobDoc.as_db_dict``)."""
    doc = {
        "job": jsanitize(job, strict=True, allow_bson=True), "uuid": job.uuid, "index": job.index,
        "db_id": str(db_id), "worker": worker, "state": state,
        "remote": {"step_attempts": 0, "queue_state": None, "process_id": None, "retry_time_limit": None,
                   "error": None, "prerun_cleanup": False, "queue_out": None, "queue_err": None, **(remote or {})},
        "parents": list(parents), "previous_state": None, "error": None, "lock_id": None, "lock_time": None,
        "run_dir": None, "start_time": None, "end_time": None, "created_on": CREATED, "updated_on": UPDATED,
        "priority": priority, "exec_config": None, "resources": None, "stored_data": None,
    }  # fmt: skip
    doc.update(fields)
    return doc


def flow_doc(flow, docs, state="RUNNING") -> dict:
    """A flow document (``FlowDoc``): its jobs' uuids, ``ids`` and parents per uuid and index."""
    parents = {}
    for d in docs:
        parents.setdefault(d["uuid"], {})[str(d["index"])] = d["parents"]
    return {"uuid": flow.uuid, "jobs": list(dict.fromkeys(d["uuid"] for d in docs)), "state": state,
            "name": flow.name, "lock_id": None, "lock_time": None, "created_on": CREATED, "updated_on": UPDATED,
            "metadata": flow.metadata or {}, "parents": parents,
            "ids": [[d["db_id"], d["uuid"], d["index"]] for d in docs], "jobstore": None}  # fmt: skip


def store_source(db, flows, next_id, runner=None) -> None:
    for flow, docs, state in flows:
        db["flows"].insert_one(flow_doc(flow, docs, state))
        db["jobs"].insert_many(docs)
    db["jf_auxiliary"].insert_many([{"next_id": next_id}, {"running_runner": runner}, {"runner_pings": []}])


def worker_run(job, run_dir: Path, ended: bool = True, error: str | None = None) -> str:
    """What jobflow-remote's worker (``jobs/run.py``) leaves in a run folder; returns the folder."""
    run_dir.mkdir(parents=True, exist_ok=True)
    start = datetime.now(timezone.utc)
    out = run_dir / "jfremote_out.json"
    if not ended:
        dumpfn({"start_time": start}, out)
    elif error:
        dumpfn({"response": None, "error": error, "start_time": start, "end_time": start}, out)
    else:
        store = JobStore(JSONStore(str(run_dir / "remote_job_data.json"), read_only=False))
        store.connect()
        response = job.run(store=store)
        store.close()
        response.output = None
        dumpfn({"response": response, "error": None, "start_time": start, "end_time": start}, out)
    return str(run_dir)


#: The jobs of the flow "states": add(i, i + 1) in order (``failed`` raises).
LONE = ["ready", "checked_out", "uploaded", "submitted", "running", "run_finished", "terminated", "downloaded",
        "completed", "failed", "remote_error", "paused", "stopped", "user_stopped", "batch_submitted",
        "batch_running"]  # fmt: skip


def build_queue(penv, db) -> dict:
    """Three flows: one half done, one job in each other state, one with a replaced job.

    Returns name -> (jobflow-remote document, jobflow job).
    """
    from jfr_lib.jobstore import get_jobstore

    store = get_jobstore(penv.project)
    runs = penv.root / "jfremote-runs"
    made = {}

    def add(name, job, *args, **kwargs):
        made[name] = (job_doc(job, *args, **kwargs), job)
        return made[name][0]

    # half done: a COMPLETED (its output in the project's JobStore), b READY, c WAITING
    a = tj.add(1, 2)
    a.metadata = {"tag": "first"}
    b = tj.add(a.output, 10)
    c = tj.add(b.output, 100)
    store.update({"uuid": a.uuid, "index": 1, "output": 3, "completed_at": UPDATED.isoformat(),
                  "metadata": {"tag": "first"}, "hosts": [], "name": "add"}, key=["uuid", "index"])  # fmt: skip
    half = Flow([a, b, c], name="half done")
    half.metadata = {"campaign": "x"}
    docs = [add("a", a, 10, "COMPLETED", run_dir=str(runs / "a"), start_time=CREATED, end_time=UPDATED,
                remote={"process_id": "4242"}, resources={"time": "01:00:00"}),
            add("b", b, 11, "READY", parents=[a.uuid], priority=5, exec_config="with_env"),
            add("c", c, 13, "WAITING", parents=[b.uuid], exec_config={"export": {"X": "1"}, "modules": None,
                                                                      "pre_run": None, "post_run": None})]  # fmt: skip
    flows = [(half, docs, "RUNNING")]

    # every other state, each job on its own (db_ids with gaps)
    lone = {name: tj.add(i, i + 1) for i, name in enumerate(LONE)}  # outputs 2 i + 1
    lone["failed"] = tj.fail()
    fields = {
        "ready": ("READY", {}),
        "checked_out": ("CHECKED_OUT", {"lock_id": "jf-lock", "lock_time": UPDATED}),
        "uploaded": ("UPLOADED", {"run_dir": str(runs / "uploaded"), "lock_id": "jf-lock"}),
        "submitted": ("SUBMITTED", {"run_dir": worker_run(lone["submitted"], runs / "submitted")}),
        "running": ("RUNNING", {"run_dir": worker_run(lone["running"], runs / "running", error=TRACEBACK)}),
        "run_finished": ("RUN_FINISHED", {"run_dir": worker_run(lone["run_finished"], runs / "run_finished")}),
        "terminated": ("TERMINATED", {"run_dir": str(runs / "terminated")}),
        "downloaded": ("DOWNLOADED", {"run_dir": worker_run(lone["downloaded"], runs / "downloaded")}),
        "completed": ("COMPLETED", {"stored_data": {"energy": -1.5}, "remote": {"process_id": "777"}}),
        "failed": ("FAILED", {"error": TRACEBACK, "run_dir": str(runs / "failed"), "start_time": CREATED}),
        "remote_error": ("REMOTE_ERROR", {"previous_state": "UPLOADED", "run_dir": str(runs / "remote_error"),
                                          "remote": {"error": "Traceback ...\nRemoteError: submission failed",
                                                     "step_attempts": 3}}),
        "paused": ("PAUSED", {"previous_state": "READY"}),
        "stopped": ("STOPPED", {}),
        "user_stopped": ("USER_STOPPED", {"previous_state": "READY"}),
        "batch_submitted": ("BATCH_SUBMITTED", {"run_dir": worker_run(lone["batch_submitted"], runs / "bs")}),
        "batch_running": ("BATCH_RUNNING", {"run_dir": worker_run(lone["batch_running"], runs / "br")}),
    }  # fmt: skip
    (runs / "uploaded").mkdir()
    docs = [add(name, lone[name], 20 + 2 * i, state, priority=i, **extra)
            for i, (name, (state, extra)) in enumerate(fields.items())]  # fmt: skip
    flows.append((Flow(list(lone.values()), name="states"), docs, "FAILED"))

    # dynamic: r replaced itself (r index 2 stores the replacement's output), d waits for r
    r = tj.replace_with_add(1, 2)
    d = tj.add(r.output, 1000)
    response = r.run(store=store)  # r's own document, as jobflow-remote's complete stores it
    docs = [add("r", r, 60, "COMPLETED", priority=7), add("d", d, 61, "WAITING", parents=[r.uuid], priority=7)]
    for i, (job, parents) in enumerate(response.replace.iterflow()):  # jobs/jobcontroller.py: _append_flow
        name = "r2" if job.uuid == r.uuid else f"new{i}"
        docs.append(add(name, job, 70 + i, "WAITING" if parents else "READY", parents=parents, priority=7))
    flows.append((Flow([r, d], name="dynamic"), docs, "RUNNING"))
    store_source(db, flows, next_id=80)
    return made


# --- the import --------------------------------------------------------------------
def test_a_whole_queue_comes_in_with_every_field_and_runs_on_under_jfr(penv):
    from jfr_lib import submit_flow

    source = mongomock.MongoClient()["jfremote"]
    made = build_queue(penv, source)
    with penv.db() as db:
        importer = Importer(penv.project, db, source).read()
        assert importer.blockers == [] and importer.keep_ids
        assert importer.write() == len(made)
        assert importer.rows[("TERMINATED", "DOWNLOADED")] == 1 and importer.rows[("UPLOADED", "READY")] == 1
    by_old = {j["jfremote_db_id"]: j for j in penv.jobs()}
    jobs = {name: by_old[doc["db_id"]] for name, (doc, _) in made.items()}
    for name, (doc, job) in made.items():  # db_ids, uuids, indexes, names, workers, parents, times kept
        got = jobs[name]
        assert (got["db_id"], got["uuid"], got["index"], got["name"]) == (int(doc["db_id"]), job.uuid, job.index,
                                                                          job.name), name  # fmt: skip
        assert got["worker"] == "local" and got["parents"] == doc["parents"] and got["lock_id"] is None
        assert got["created_on"] == "2024-05-01T12:00:00.250+00:00" and got["job"]["uuid"] == job.uuid
        assert got["priority"] == doc["priority"]
    states = {name: j["state"] for name, j in jobs.items()}
    assert states == {
        "a": "COMPLETED", "b": "READY", "c": "WAITING", "ready": "READY", "checked_out": "READY",
        "uploaded": "READY", "submitted": "DOWNLOADED", "running": "DOWNLOADED", "run_finished": "DOWNLOADED",
        "terminated": "DOWNLOADED", "downloaded": "DOWNLOADED", "completed": "COMPLETED", "failed": "FAILED",
        "remote_error": "REMOTE_ERROR", "paused": "PAUSED", "stopped": "STOPPED", "user_stopped": "USER_STOPPED",
        "batch_submitted": "DOWNLOADED", "batch_running": "DOWNLOADED", "r": "COMPLETED", "d": "WAITING",
        "r2": "WAITING", "new0": "READY", "new1": "WAITING",
    }  # fmt: skip
    a, b, c = jobs["a"], jobs["b"], jobs["c"]
    assert a["run_dir"].endswith("jfremote-runs/a") and a["queue_id"] == "4242" and a["metadata"] == {"tag": "first"}
    assert a["start_time"] == "2024-05-01T12:00:00.250+00:00" and a["end_time"] == "2024-05-01T13:00:00.250+00:00"
    assert b["exec_config"] == "with_env" and a["resources"] == {"time": "01:00:00"} and b["priority"] == 5
    assert c["exec_config"] == {"export": {"X": "1"}} and c["allow_failed_parents"] is False
    assert jobs["failed"]["error"] == "RuntimeError: this job always fails"
    assert jobs["failed"]["traceback"] == TRACEBACK and jobs["failed"]["run_dir"].endswith("failed")
    err = jobs["remote_error"]
    assert (err["previous_state"], err["failed_step"], err["error"]) == ("READY", "submit", "RemoteError: submission "
                                                                         "failed")  # fmt: skip
    assert "run_dir" not in err and err["jfremote_run_dir"].endswith("remote_error")
    assert "run_dir" not in jobs["uploaded"] and jobs["uploaded"]["jfremote_run_dir"].endswith("uploaded")
    assert jobs["completed"]["stored_data"] == {"energy": -1.5} and jobs["completed"]["queue_id"] == "777"
    assert jobs["paused"]["previous_state"] == "READY"
    assert jobs["r2"]["created_by"] == {"uuid": jobs["r"]["uuid"], "index": 1, "kind": "replace"}
    assert jobs["r2"]["parents"] == [jobs["new1"]["uuid"]] and jobs["d"]["priority"] == 7
    assert Path(jobs["submitted"]["local_dir"], "jfr_out.json").exists()
    with penv.db() as db:
        flows = {f["name"]: f for f in db.find_flows()}
        assert {n: (f["state"], f["n_jobs"]) for n, f in flows.items()} == {
            "half done": ("RUNNING", 3),
            "states": ("FAILED", 16),
            "dynamic": ("RUNNING", 5),
        }
        assert flows["half done"]["metadata"] == {"campaign": "x"} and flows["half done"]["imported_from"]
    # new jobs are numbered after the imported ones (the highest is 72)
    assert submit_flow(tj.add(5, 5), project=penv.project) == [73]
    assert main(["job", "retry", str(jobs["remote_error"]["db_id"])]) == 0

    penv.run_until_idle()

    done = {j["db_id"]: j for j in penv.jobs()}
    after = {name: done[j["db_id"]] for name, j in jobs.items()}
    assert after["b"]["state"] == after["c"]["state"] == "COMPLETED"
    assert penv.output(after["b"]) == 13 and penv.output(after["c"]) == 113  # b read a's stored output
    assert penv.output(after["d"]) == 1103 and penv.output(after["r2"]) == 103  # the replacement ran on
    for name in ("submitted", "run_finished", "downloaded", "batch_submitted", "batch_running"):  # ended runs:
        assert after[name]["state"] == "COMPLETED", name  # outputs from their remote_job_data.json
        assert penv.output(after[name]) == 2 * LONE.index(name) + 1, name
    assert after["running"]["state"] == "FAILED" and after["running"]["error"] == "RuntimeError: this job always fails"
    assert after["terminated"]["state"] == "FAILED"
    assert after["terminated"]["error"] == "jobflow-remote's run ended without writing jfremote_out.json"
    for name in ("ready", "checked_out", "uploaded", "remote_error"):  # run by jfr, in its own run folders
        assert after[name]["state"] == "COMPLETED" and after[name]["run_dir"].startswith(str(penv.work)), name
        assert penv.output(after[name]) == 2 * LONE.index(name) + 1, name
    for name in ("paused", "stopped", "user_stopped", "failed", "completed"):
        assert after[name]["state"] == jobs[name]["state"], name


def test_a_second_import_is_refused_in_one_line_and_a_dry_run_only_counts(penv, capsys):
    from jfr_lib.queue_db import _mock_client

    name = f"jfremote_cli_{penv.root.name}"
    source = _mock_client()[name]
    a, b = tj.add(1, 1), tj.add(2, 2)
    flow = Flow([a, b], name="pair")
    store_source(source, [(flow, [job_doc(a, 1, "READY"), job_doc(b, 2, "PAUSED", previous_state="READY")],
                           "READY")], next_id=3)  # fmt: skip
    args = ["admin", "import-jobflow-remote", "--uri", "mongomock://x", "--database", name]
    code, out, err = run_main(capsys, *args, "--dry-run")
    assert (code, err) == (0, "")
    assert out.splitlines() == [
        "1 flows, 2 jobs (db_ids kept)",
        "  jobflow-remote state  jfr state       jobs",
        "  PAUSED                PAUSED          1",
        "  READY                 READY           1",
    ]
    assert penv.jobs() == []
    code, out, err = run_main(capsys, *args)
    assert code == 0 and out.endswith(f"imported 1 flows and 2 jobs from database {name!r} (mongomock://x)\n")
    assert [(j["db_id"], j["state"]) for j in penv.jobs()] == [(1, "READY"), (2, "PAUSED")]
    code, out, err = run_main(capsys, *args)
    assert (code, out) == (4, "")
    assert err == f"jfr: error: flow {flow.uuid} (pair) is already in jfr's queue: nothing imported\n"
    assert len(penv.jobs()) == 2
    code, out, _ = run_main(capsys, *args, "--dry-run")
    assert code == 0 and out.splitlines()[-1] == (f"the import would stop: flow {flow.uuid} (pair) is already in "
                                                  "jfr's queue: nothing imported")  # fmt: skip


def test_a_project_file_names_the_queue(penv, capsys, tmp_path):
    from jfr_lib.queue_db import _mock_client

    name = f"jfremote_proj_{penv.root.name}"
    a = tj.add(3, 4)
    store_source(_mock_client()[name], [(Flow([a]), [job_doc(a, "jf-7", "READY")], "READY")], next_id=8)
    project = tmp_path / "jf.yaml"
    project.write_text(f"name: old\nqueue:\n  store:\n    type: MongoURIStore\n    uri: mongomock://x\n"
                       f"    database: {name}\n    collection_name: jobs\n  db_id_prefix: jf-\n")  # fmt: skip
    code, out, err = run_main(capsys, "admin", "import-jobflow-remote", "--from-project", str(project))
    assert (code, err) == (0, "") and "db_ids kept" in out
    assert [(j["db_id"], j["jfremote_db_id"]) for j in penv.jobs()] == [(7, "jf-7")]
    project.write_text("name: old\nqueue:\n  store:\n    type: MongoStore\n    host: db.example\n    port: 27018\n"
                       "    username: me\n    password: p@ss\n    database: q\n    collection_name: queue\n"
                       "  flows_collection: fl\n")  # fmt: skip
    assert source_from_project(project) == {"uri": "mongodb://me:p%40ss@db.example:27018/", "database": "q",
                                            "options": {}, "jobs": "queue", "flows": "fl", "aux": "jf_auxiliary",
                                            "db_id_prefix": None}  # fmt: skip
    code, out, err = run_main(capsys, "admin", "import-jobflow-remote", "--from-project", str(project), "--uri", "x")
    assert code == 2 and err.count("\n") == 1


def test_into_a_mongodb_queue_from_its_own_database(penv, capsys):
    """A project made from jobflow-remote's file keeps jfr's queue in the same database: no option needed."""
    from jfr_lib import submit_flow
    from jfr_lib.queue_db import _mock_client

    name = f"shared_{penv.root.name}"
    penv.write(penv.path.read_text() + f"queue:\n  backend: mongodb\n  uri: mongomock://\n  database: {name}\n"
               "  prefix: jobs\n")  # fmt: skip
    a, b = tj.add(1, 1), tj.add(2, 2)
    docs = [job_doc(a, 3, "COMPLETED"), job_doc(b, 9, "READY", priority=4)]
    store_source(_mock_client()[name], [(Flow([a, b]), docs, "RUNNING")], next_id=10)
    with penv.db() as db:
        assert detect_jobflow_remote(db.client[name]).startswith("this database holds jobflow-remote's queue (2 jobs")
    code, out, err = run_main(capsys, "admin", "import-jobflow-remote")
    assert (code, err) == (0, "") and out.endswith(f"from database {name!r} (the project's MongoDB)\n")
    assert [(j["db_id"], j["state"], j["priority"]) for j in penv.jobs()] == [(3, "COMPLETED", 0), (9, "READY", 4)]
    assert submit_flow(tj.add(3, 3), project=penv.project) == [10]  # the counter passed the imported ids
    with penv.db() as db:
        assert detect_jobflow_remote(db.client[name]) is None


def test_an_unreachable_source_is_one_line_without_the_password(penv, capsys):
    import socket

    penv.write(penv.path.read_text() + "queue:\n  connect_timeout: 0.5\n")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    uri = f"mongodb://me:hunter2@127.0.0.1:{port}/"
    code, out, err = run_main(capsys, "admin", "import-jobflow-remote", "--uri", uri, "--database", "q")
    assert (code, out) == (5, "") and err.count("\n") == 1 and "hunter2" not in err
    assert err.startswith(f"jfr: error: mongodb://me:***@127.0.0.1:{port}/: cannot read jobflow-remote's queue: ")


def test_taken_db_ids_give_new_ones_and_the_old_is_kept(penv):
    from jfr_lib import submit_flow

    submit_flow(tj.add(0, 0), project=penv.project)  # jfr's job 1
    source = mongomock.MongoClient()["jfremote"]
    a, b = tj.add(1, 1), tj.add(2, 2)
    store_source(source, [(Flow([a, b]), [job_doc(a, 1, "READY"), job_doc(b, 2, "READY")], "READY")], next_id=3)
    with penv.db() as db:
        importer = Importer(penv.project, db, source).read()
        importer.write()
    assert not importer.keep_ids and "jfr's queue already has job 1" in importer.notes[0]
    assert [(j["db_id"], j.get("jfremote_db_id")) for j in penv.jobs()] == [(1, None), (2, "1"), (3, "2")]


def test_jobs_still_running_under_jobflow_remote_are_refused_or_run_again(penv):
    source = mongomock.MongoClient()["jfremote"]
    a, b = tj.add(1, 1), tj.add(2, 2)
    runs = penv.root / "jfremote-runs"
    docs = [job_doc(a, 5, "RUNNING", run_dir=worker_run(a, runs / "a", ended=False), remote={"process_id": "99"}),
            job_doc(b, 6, "BATCH_SUBMITTED", run_dir=str(runs / "b"))]  # fmt: skip
    store_source(source, [(Flow([a, b]), docs, "RUNNING")], next_id=7)
    with penv.db() as db:
        importer = Importer(penv.project, db, source).read()
        assert importer.rows == {("RUNNING", "still running"): 1, ("BATCH_SUBMITTED", "still running"): 1}
        with pytest.raises(StateError, match=r"^2 jobs still run under jobflow-remote \(db_id 5, db_id 6\): "):
            importer.write()
        assert db.count_jobs() == 0
        importer = Importer(penv.project, db, source, rerun_running=True).read()
        importer.write()
    jobs = penv.jobs()
    assert [(j["db_id"], j["state"], j.get("run_dir"), j.get("jfremote_queue_id")) for j in jobs] == [
        (5, "READY", None, "99"),
        (6, "READY", None, None),
    ]
    assert jobs[0]["jfremote_run_dir"] == str(runs / "a")
    penv.run_until_idle()
    assert [penv.output(j) for j in penv.jobs()] == [2, 4]


def test_a_running_jobflow_remote_runner_stops_the_import(penv):
    source = mongomock.MongoClient()["jfremote"]
    a = tj.add(1, 1)
    store_source(source, [(Flow([a]), [job_doc(a, 1, "READY")], "READY")], next_id=2,
                 runner={"hostname": "login1", "project_name": "old"})  # fmt: skip
    with penv.db() as db:
        importer = Importer(penv.project, db, source).read()
        with pytest.raises(StateError, match="jobflow-remote's runner is running on login1: stop it first"):
            importer.write()
        assert db.count_jobs() == 0


def test_a_document_that_cannot_be_mapped_is_named(penv):
    from jfr_lib.errors import ConfigError, QueueDBError

    source = mongomock.MongoClient()["jfremote"]
    a = tj.add(1, 1)
    store_source(source, [(Flow([a]), [job_doc(a, 3, "LOST")], "READY")], next_id=4)
    with penv.db() as db, pytest.raises(QueueDBError, match=rf"^jobflow-remote job db_id 3 \({a.uuid}\): unknown"):
        Importer(penv.project, db, source).read()
    source["jobs"].update_one({}, {"$set": {"state": "READY", "worker": "gone"}})
    unknown = rf"^jobflow-remote job db_id 3 \({a.uuid}\): unknown worker 'gone' \(known: local\)$"
    with penv.db() as db, pytest.raises(ConfigError, match=unknown):
        Importer(penv.project, db, source).read()
    source["jobs"].update_one({}, {"$set": {"state": "RUNNING", "run_dir": "/nowhere"}})  # its run folder is read
    with penv.db() as db, pytest.raises(ConfigError, match=unknown):
        Importer(penv.project, db, source).read()
    b = tj.add(2, 2)
    source["jobs"].insert_one(job_doc(b, 9, "READY"))
    source["jobs"].update_one({"db_id": "3"}, {"$set": {"worker": "local"}})
    with penv.db() as db, pytest.raises(QueueDBError, match=rf"job db_id 9 \({b.uuid}\): belongs to no flow"):
        Importer(penv.project, db, source).read()


def test_a_parent_output_missing_from_the_jobstore_stops_the_import(penv):
    source = mongomock.MongoClient()["jfremote"]
    a = tj.add(1, 1)
    b = tj.add(a.output, 1)
    docs = [job_doc(a, 1, "COMPLETED"), job_doc(b, 2, "READY", parents=[a.uuid])]
    store_source(source, [(Flow([a, b]), docs, "RUNNING")], next_id=3)
    with penv.db() as db:
        importer = Importer(penv.project, db, source).read()
    assert len(importer.blockers) == 1
    assert str(importer.blockers[0]).startswith(
        f"jobflow-remote job db_id 1 ({a.uuid}) is COMPLETED but its output "
        "is not in this project's JobStore (job db_id 2 needs it)"
    )


def test_detection_hint_until_jfr_holds_flows_there():
    from jfr_lib.queue_db.mongo import MongoQueueDB

    client = mongomock.MongoClient()
    db = client["shared"]
    assert detect_jobflow_remote(db) is None  # nothing there
    a = tj.add(1, 1)
    store_source(db, [(Flow([a]), [job_doc(a, 1, "READY")], "READY")], next_id=2)
    hint = ("this database holds jobflow-remote's queue (1 jobs in 'jobs'); import it with "
            "`jfr admin import-jobflow-remote --database shared`")  # fmt: skip
    assert detect_jobflow_remote(db) == hint
    queue = MongoQueueDB(database="shared", prefix="jobs", client=client)  # jfr's collections, still empty
    assert detect_jobflow_remote(db) == hint
    queue.insert_flow({"uuid": "f", "name": "f", "state": "READY"}, [])
    assert detect_jobflow_remote(db) is None
    assert detect_jobflow_remote(client["other"]) is None


def test_the_converted_output_is_what_jfr_worker_writes(penv, tmp_path):
    """A dynamic response in jobflow-remote's output becomes the graph jfr's complete step reads."""
    from jfr_lib.hosts.local import LocalHost
    from jfr_lib.jfremote import ended_output, write_jfr_files

    r = tj.detour_add(5)
    run_dir = worker_run(r, tmp_path / "run")
    host = LocalHost()
    state = write_jfr_files(host, run_dir, ended_output(host, run_dir), tmp_path / "jfr", ["data"])
    out = json.loads((tmp_path / "jfr" / "jfr_out.json").read_text())
    stored = json.loads((tmp_path / "jfr" / "jfr_store.json").read_text())
    assert state == out["state"] == "COMPLETED" and out["start_time"].endswith("+00:00")
    detour = out["response"]["detour"]
    assert [j["parents"] for j in detour["jobs"]] == [[]] and detour["leaves"] == [detour["jobs"][0]["job"]["uuid"]]
    assert [(d["uuid"], d["output"]) for d in stored["docs"]] == [(r.uuid, 5)] and stored["additional"] == {"data": []}


def test_job_list_says_how_to_import_the_queue_beside_it(penv, capsys):
    from jfr_lib.queue_db import _mock_client

    name = f"beside_{penv.root.name}"
    penv.write(penv.path.read_text() + f"queue:\n  backend: mongodb\n  uri: mongomock://\n  database: {name}\n"
               "  prefix: jobs\n")  # fmt: skip
    a = tj.add(1, 1)
    store_source(_mock_client()[name], [(Flow([a]), [job_doc(a, 1, "READY")], "READY")], next_id=2)
    for command in (["job", "list"], ["flow", "list"]):
        code, out, err = run_main(capsys, *command)
        assert code == 0 and err == (f"jfr: note: this database holds jobflow-remote's queue (1 jobs in 'jobs'); "
                                     f"import it with `jfr admin import-jobflow-remote --database {name}`\n")
    assert run_main(capsys, "admin", "import-jobflow-remote")[0] == 0
    code, out, err = run_main(capsys, "job", "list")
    assert code == 0 and err == "" and "READY" in out  # imported: no more note
