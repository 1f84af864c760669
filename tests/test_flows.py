"""End to end on the local worker: real runner, real job processes, real SQLite and MontyStore.

Every flow is submitted first and one runner pass completes them all; each test
then checks the states and outputs of its own flow.
"""

from __future__ import annotations

import math
from datetime import datetime
from pathlib import Path

import pytest
from jobflow import Flow
from qtoolkit.core.data_objects import QResources

from jfr_lib import ExecutionConfig, set_run_config, submit_flow

import testjobs as tj

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def ran(module_penv):
    """Submit every flow of this module, run the runner until idle, return the handles."""
    f = {}

    a = tj.add(1, 5)
    b = tj.add(a.output, 5)
    f["chain"] = Flow([a, b], name="chain")

    top = tj.add(1, 1)
    left, right = tj.add(top.output, 10), tj.add(top.output, 20)
    bottom = tj.add(left.output, right.output)
    grand = tj.add(bottom.output, 1)
    f["diamond"] = Flow([top, left, right, bottom, grand], name="diamond")

    f["callable"] = Flow([tj.apply(func=math.sqrt, value=16.0)], name="callable")

    bad = tj.fail()
    f["failing"] = Flow([bad, tj.add(bad.output, 1)], name="failing")

    env_job = tj.read_env("JFR_TEST_VAR")
    set_run_config(env_job, exec_config="with_env")
    f["export"] = Flow([env_job], name="export")

    big = tj.big_output(5000)
    f["big"] = Flow([big, tj.length(big.output)], name="big")

    r = tj.replace_with_add(1, 2)
    f["replace"] = Flow([r, tj.add(r.output, 1)], name="replace")

    m = tj.add_more(5)
    f["addition"] = Flow([m, tj.add(m.output, 1)], name="addition")

    d = tj.detour_add(3)
    d_child = tj.add(d.output, 1)
    f["detour"] = Flow([d, d_child], name="detour")

    s = tj.stop_children_job(1)
    s_child = tj.add(s.output, 1)
    f["stop_children"] = Flow([s, s_child, tj.add(s_child.output, 1)], name="stop_children")

    sj = tj.stop_flow_job(1)
    f["stop_jobflow"] = Flow([sj, tj.add(sj.output, 1), tj.add(sj.output, 2)], name="stop_jobflow")

    f["stored_data"] = Flow([tj.store_data(4)], name="stored_data")

    many = [tj.add(i, i) for i in range(49)]
    f["fifty"] = Flow([*many, tj.add_many(*[j.output for j in many])], name="fifty")

    # jobflow-remote's objects: an ExecutionConfig (ours, or a pydantic one with its fields) and a QResources
    f["exec_object"] = Flow([tj.read_env("JFR_TEST_VAR")], name="exec_object")
    by_setting = tj.read_env("JFR_TEST_VAR")
    set_run_config(by_setting, exec_config=tj.JfremoteExecutionConfig(export={"JFR_TEST_VAR": "from-pydantic"}))
    in_config = tj.read_env("JFR_TEST_VAR")
    in_config.update_config({"manager_config": {
        "exec_config": tj.JfremoteExecutionConfig(export={"JFR_TEST_VAR": "in-manager-config"})}})
    f["exec_jfremote"] = Flow([by_setting, in_config], name="exec_jfremote")
    q_set = tj.add(1, 1)
    set_run_config(q_set, resources=QResources(job_name="qres-set"))
    f["qresources"] = Flow([q_set, tj.add(2, 2)], name="qresources")

    special = {"addition": {"exec_config": "with_env"},
               "exec_object": {"exec_config": ExecutionConfig(export={"JFR_TEST_VAR": "from-object"})},
               "qresources": {"resources": QResources(job_name="qres-submit")}}  # fmt: skip
    for name, flow in f.items():
        submit_flow(flow, project=module_penv.project, **special.get(name, {}))
    module_penv.run_until_idle(timeout=400)
    with module_penv.db() as db:
        return {"env": module_penv, "flows": f, "jobs": db.find_jobs(sort=[("db_id", 1)]),
                "flow_docs": {x["uuid"]: x for x in db.find_flows()}}


def jobs_of(ran, name) -> list:
    return [j for j in ran["jobs"] if j["flow_uuid"] == ran["flows"][name].uuid]


def flow_state(ran, name) -> str:
    return ran["flow_docs"][ran["flows"][name].uuid]["state"]


def outputs(ran, name) -> list:
    return [ran["env"].output(j) if j["state"] == "COMPLETED" else None for j in jobs_of(ran, name)]


def test_chain(ran):
    assert [j["state"] for j in jobs_of(ran, "chain")] == ["COMPLETED", "COMPLETED"]
    assert outputs(ran, "chain") == [6, 11]
    assert flow_state(ran, "chain") == "COMPLETED"


def test_diamond(ran):
    assert outputs(ran, "diamond") == [2, 12, 22, 34, 35]
    jobs = jobs_of(ran, "diamond")
    bottom = jobs[3]
    # the join started only after both of its parents had finished
    for parent in jobs[1:3]:
        assert datetime.fromisoformat(bottom["start_time"]) >= datetime.fromisoformat(parent["end_time"])
    assert flow_state(ran, "diamond") == "COMPLETED"


def test_callable_keyword_argument(ran):
    assert outputs(ran, "callable") == [4.0]


def test_failing_job(ran):
    bad, child = jobs_of(ran, "failing")
    assert bad["state"] == "FAILED"
    assert "RuntimeError: this job always fails" in bad["error"]
    assert "Traceback" in bad["traceback"] and "testjobs.py" in bad["traceback"]
    assert bad["previous_state"] == "DOWNLOADED"
    assert child["state"] == "WAITING"
    assert flow_state(ran, "failing") == "FAILED"


def test_exec_config_export(ran):
    (job,) = jobs_of(ran, "export")
    assert job["exec_config"] == "with_env"
    assert ran["env"].output(job) == "from-exec-config"


def test_execution_config_objects(ran):
    (job,) = jobs_of(ran, "exec_object")
    assert job["exec_config"] == {"export": {"JFR_TEST_VAR": "from-object"}}
    assert ran["env"].output(job) == "from-object"
    by_setting, in_config = jobs_of(ran, "exec_jfremote")
    assert ran["env"].output(by_setting) == "from-pydantic"
    assert ran["env"].output(in_config) == "in-manager-config"
    assert in_config["exec_config"] == {"export": {"JFR_TEST_VAR": "in-manager-config"}}


def test_qresources_objects(ran):
    q_set, q_submit = jobs_of(ran, "qresources")
    assert [j["state"] for j in (q_set, q_submit)] == ["COMPLETED", "COMPLETED"]
    assert (q_set["resources"]["@class"], q_set["resources"]["job_name"]) == ("QResources", "qres-set")
    assert q_submit["resources"]["job_name"] == "qres-submit"
    script = (Path(q_submit["run_dir"]) / "submit.sh").read_text()
    assert "qres-submit" in script  # qtoolkit wrote the job name into the script


def test_additional_store(ran):
    from jfr_lib.jobstore import get_jobstore

    big, length = jobs_of(ran, "big")
    assert ran["env"].output(big) == list(range(5000))
    assert ran["env"].output(length) == 5000
    store = get_jobstore(ran["env"].project)
    raw = store.docs_store.query_one({"uuid": big["uuid"]})
    assert raw["output"]["store"] == "data"  # the docs store holds a reference...
    blob = store.additional_stores["data"].query_one({"blob_uuid": raw["output"]["blob_uuid"]})
    assert blob["data"] == list(range(5000))  # ...and the data store holds the value


def test_replace(ran):
    jobs = jobs_of(ran, "replace")
    original = jobs[0]
    replaced = [j for j in jobs if j["uuid"] == original["uuid"]]
    assert [j["index"] for j in replaced] == [1, 2]
    assert all(j["state"] == "COMPLETED" for j in jobs)
    assert ran["env"].output(replaced[-1]) == 103  # add(1, 2) then add(3, 100)
    child = jobs[1]
    assert ran["env"].output(child) == 104
    assert len(jobs) == 5  # original, child, two replacement jobs, the index-2 job
    assert flow_state(ran, "replace") == "COMPLETED"


def test_addition_inherits_settings(ran):
    jobs = jobs_of(ran, "addition")
    assert len(jobs) == 3
    maker, child, extra = jobs
    assert ran["env"].output(maker) == 5
    assert ran["env"].output(child) == 6
    assert ran["env"].output(extra) == 1005
    assert extra["parents"] == [maker["uuid"]]
    assert extra["exec_config"] == maker["exec_config"] == "with_env"
    assert extra["worker"] == maker["worker"]


def test_detour_delays_children(ran):
    jobs = jobs_of(ran, "detour")
    maker, child, extra = jobs
    assert ran["env"].output(extra) == 10
    assert ran["env"].output(child) == 4
    assert extra["uuid"] in child["parents"]
    assert datetime.fromisoformat(child["start_time"]) >= datetime.fromisoformat(extra["end_time"])


def test_stop_children(ran):
    jobs = jobs_of(ran, "stop_children")
    assert [j["state"] for j in jobs] == ["COMPLETED", "STOPPED", "STOPPED"]
    assert flow_state(ran, "stop_children") == "STOPPED"


def test_stop_jobflow(ran):
    jobs = jobs_of(ran, "stop_jobflow")
    assert [j["state"] for j in jobs] == ["COMPLETED", "STOPPED", "STOPPED"]
    assert flow_state(ran, "stop_jobflow") == "STOPPED"


def test_stored_data(ran):
    (job,) = jobs_of(ran, "stored_data")
    assert job["stored_data"] == {"note": "kept", "value": 4}


def test_fifty_job_flow(ran):
    jobs = jobs_of(ran, "fifty")
    assert len(jobs) == 50
    assert all(j["state"] == "COMPLETED" for j in jobs)
    assert ran["env"].output(jobs[-1]) == sum(2 * i for i in range(49))
    assert flow_state(ran, "fifty") == "COMPLETED"


def test_nothing_left_locked(ran):
    assert [j["db_id"] for j in ran["jobs"] if j.get("lock_id")] == []


def test_priorities_with_max_jobs_one(penv):
    penv.write(None, max_jobs=1)
    order = [3, 10, 1, 7, 5]
    for p in order:
        submit_flow(tj.add(p, 0), priority=p)
    penv.run_until_idle()
    jobs = penv.jobs()
    assert all(j["state"] == "COMPLETED" for j in jobs)
    by_start = sorted(jobs, key=lambda j: j["start_time"])
    assert [j["priority"] for j in by_start] == sorted(order, reverse=True)
    # max_jobs: 1 -> no two runs overlapped
    for earlier, later in zip(by_start, by_start[1:]):
        assert datetime.fromisoformat(later["start_time"]) >= datetime.fromisoformat(earlier["end_time"])
