"""submit_flow and set_run_config: what gets stored, and what is refused with nothing stored."""

from __future__ import annotations

import threading

import pytest
from jobflow import Flow, job

from jfr_lib import set_run_config, submit_flow
from jfr_lib.errors import SubmitError

import testjobs as tj


@job(other_store=True)
def saves_elsewhere(a):
    return a


def two_workers(penv):
    penv.write(
        f"name: test\nbase_dir: {penv.base}\nworkers:\n"
        f"  local:\n    type: local\n    work_dir: {penv.work}\n"
        f"  second:\n    type: local\n    work_dir: {penv.work}/2\n"
        "exec_config:\n  with_env:\n    export: {X: '1'}\n"
    )


def snapshot(penv):
    with penv.db() as db:
        return ([(j["db_id"], j["uuid"], j["state"], j["updated_on"]) for j in db.find_jobs()],
                [(f["uuid"], f["state"]) for f in db.find_flows()])  # fmt: skip


def test_submit_stores_jobs_with_states_and_parents(penv):
    a = tj.add(1, 2)
    b = tj.add(a.output, 3)
    ids = submit_flow(Flow([a, b], name="pair"))
    assert ids == [1, 2]
    with penv.db() as db:
        ja, jb = db.get_job(db_id=1), db.get_job(db_id=2)
        flow = db.get_flow(ja["flow_uuid"])
    assert (ja["state"], jb["state"]) == ("READY", "WAITING")
    assert jb["parents"] == [a.uuid]
    assert ja["worker"] == "local" and ja["priority"] == 0
    assert ja["job"]["function"]["@callable"] == "add"
    assert flow["name"] == "pair" and flow["state"] == "READY" and flow["n_jobs"] == 2


def test_parents_follow_the_flow_graph_including_linear_order(penv):
    from jobflow import JobOrder

    a, b = tj.add(1, 1), tj.add(2, 2)
    inner = Flow([a, b], order=JobOrder.LINEAR)  # b waits for a without reading its output
    c, d = tj.add(3, 3), tj.add(4, 4)
    submit_flow(Flow([inner, c, Flow([d])], order=JobOrder.LINEAR))
    with penv.db() as db:
        parents = {j["uuid"]: j["parents"] for j in db.find_jobs()}
        states = {j["uuid"]: j["state"] for j in db.find_jobs()}
    assert parents == {a.uuid: [], b.uuid: [a.uuid], c.uuid: [b.uuid], d.uuid: [c.uuid]}
    assert [states[u] for u in (a.uuid, b.uuid, c.uuid, d.uuid)] == ["READY", "WAITING", "WAITING", "WAITING"]


def test_execution_config_objects_are_stored_as_mappings(penv):
    from jfr_lib import ExecutionConfig

    a, b, c = tj.add(1, 1), tj.add(2, 2), tj.add(3, 3)
    set_run_config(b, exec_config=tj.JfremoteExecutionConfig(modules=["gcc"], pre_run="ulimit -s unlimited"))
    c.update_config({"manager_config": {"exec_config": tj.JfremoteExecutionConfig(export={"X": "1"})}})
    submit_flow(Flow([a, b, c]), exec_config=ExecutionConfig(export={"Y": "2"}))
    with penv.db() as db:
        stored = [j["exec_config"] for j in db.find_jobs(sort=[("db_id", 1)])]
    assert stored == [{"export": {"Y": "2"}}, {"modules": ["gcc"], "pre_run": "ulimit -s unlimited"},
                      {"export": {"X": "1"}}]  # fmt: skip


def test_unknown_exec_config_keys_are_refused_at_submission(penv):
    before = snapshot(penv)
    with pytest.raises(SubmitError, match="exec_config has unknown keys: modlues"):
        submit_flow(tj.add(1, 1), exec_config={"modlues": ["gcc"]})
    assert snapshot(penv) == before


def test_single_job_is_wrapped_in_a_flow(penv):
    (db_id,) = submit_flow(tj.add(1, 1))
    with penv.db() as db:
        j = db.get_job(db_id=db_id)
        assert db.get_flow(j["flow_uuid"]) is not None


def test_job_settings_win_over_submit_arguments(penv):
    two_workers(penv)
    a, b = tj.add(1, 2), tj.add(3, 4)
    set_run_config(a, worker="second", priority=7, exec_config="with_env", resources={"job_name": "n"})
    submit_flow(Flow([a, b]), worker="local", priority=2, exec_config={"export": {"Y": "2"}})
    with penv.db() as db:
        ja, jb = db.get_job(uuid=a.uuid), db.get_job(uuid=b.uuid)
    assert (ja["worker"], ja["priority"], ja["exec_config"], ja["resources"]) == (
        "second", 7, "with_env", {"job_name": "n"})
    assert (jb["worker"], jb["priority"], jb["exec_config"]) == ("local", 2, {"export": {"Y": "2"}})


def test_set_run_config_filters_by_name(penv):
    two_workers(penv)
    a, b = tj.add(1, 2), tj.length([1])
    flow = Flow([a, b])
    set_run_config(flow, name_filter="length", worker="second")
    submit_flow(flow)
    with penv.db() as db:
        assert db.get_job(uuid=a.uuid)["worker"] == "local"
        assert db.get_job(uuid=b.uuid)["worker"] == "second"


def _main_function(x):
    return x


_main_function.__module__ = "__main__"


def _with_lock(j):
    j.metadata["lock"] = threading.Lock()  # cannot be written as JSON
    return j


@pytest.mark.parametrize(
    "make, kwargs, message",
    [
        (lambda: tj.add(1, 2), {"worker": "nowhere"}, "unknown worker 'nowhere'"),
        (lambda: tj.add(1, 2), {"exec_config": "nothing"}, "unknown exec_config 'nothing'"),
        (lambda: _with_lock(tj.add(1, 2)), {}, "cannot be serialized"),
        (lambda: job(_main_function)(1), {}, "defined in the __main__ script"),
        (lambda: saves_elsewhere(1), {}, "additional store 'other_store', which the JobStore lacks"),
        (lambda: tj.add(tj.add(1, 1).output, 2), {}, "not found in the jobs array"),
    ],
)
def test_bad_submissions_are_refused_and_change_nothing(penv, make, kwargs, message):
    submit_flow(tj.add(0, 0))  # something already in the database
    before = snapshot(penv)
    with pytest.raises(SubmitError, match=message.replace("(", r"\(").replace(")", r"\)")):
        submit_flow(make(), **kwargs)
    assert snapshot(penv) == before


def test_a_flow_is_submitted_only_once(penv):
    flow = Flow([tj.add(1, 2)])
    submit_flow(flow)
    before = snapshot(penv)
    with pytest.raises(SubmitError, match="already submitted"):
        submit_flow(flow)
    assert snapshot(penv) == before


def test_external_references_when_allowed(penv):
    first = tj.add(1, 1)
    submit_flow(first)
    second = tj.add(first.output, 1)
    (db_id,) = submit_flow(second, allow_external_references=True)
    with penv.db() as db:
        j = db.get_job(db_id=db_id)
    assert j["parents"] == [first.uuid] and j["state"] == "WAITING"  # its parent has not run yet
