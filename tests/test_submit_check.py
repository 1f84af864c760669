"""Bad calls of submit_flow: each is a one-line SubmitError (or ConfigError for a bad project)
naming the job and the cause, and the queue database is left exactly as it was."""

from __future__ import annotations

import math
import threading
import uuid
from dataclasses import dataclass

import pytest
from jobflow import Flow, Maker, job

from jfr_lib import submit_flow
from jfr_lib.errors import ConfigError, SubmitError

import testjobs as tj


@dataclass
class AddMaker(Maker):
    name: str = "add maker"

    @job
    def make(self, a):
        return a


def _local_function_job():
    @job
    def inner(x):
        return x

    return inner(1)


def _local_function():
    def inner(x):
        return x

    return inner


def _changed(attribute, value):
    def make():
        j = tj.add(1, 2)
        if attribute == "manager_config":
            j.config.manager_config = value
        else:
            setattr(j, attribute, value)
        return j

    return make


def _with_lock_in_metadata():
    j = tj.add(1, 2)
    j.metadata["lock"] = threading.Lock()
    return j


def _cycle():
    a = tj.add(1, 1)
    b = tj.add(a.output, 1)
    a.function_args = (b.output, 1)
    return Flow([a, b], name="cyclic")


def _flow_holding(thing):
    def make():
        flow = Flow([tj.add(1, 1)], name="odd")
        flow.jobs = (*flow.jobs, thing)  # jobflow's setter does not check
        return flow

    return make


def add12():
    return tj.add(1, 2)


# (what to submit, keyword arguments, text of the error, whether the error names the job)
BAD_CALLS = {
    "None": (lambda: None, {}, "takes a jobflow Flow, a Job or a list of them, not None", False),
    "a number": (lambda: 3, {}, "not int 3", False),
    "a string": (lambda: "flow", {}, "not str 'flow'", False),
    "an empty list": (lambda: [], {}, "nothing to submit", False),
    "an empty flow": (lambda: Flow([], name="empty"), {}, "has no jobs: nothing to submit", False),
    "a list with a number": (lambda: [tj.add(1, 1), 3], {}, "not int 3", False),
    "a flow holding a string": (_flow_holding("x"), {}, "contains str 'x', which is neither a Job nor a Flow", False),
    "a Maker": (lambda: AddMaker(), {}, "AddMaker is a Maker, not a job", False),
    "a job function": (lambda: tj.add, {}, "add is a job function, not a job", False),
    "a cycle": (_cycle, {}, "flow cyclic (", False),
    "bytes argument": (lambda: tj.add(b"\x00\x01", 1), {}, "cannot be serialized", True),
    "a lock in metadata": (_with_lock_in_metadata, {}, "cannot be serialized", True),
    "a lambda argument": (lambda: tj.apply(lambda x: x, 1), {}, "argument 1 holds a lambda", True),
    "a local function argument": (lambda: tj.apply(_local_function(), 1), {}, "local function", True),
    "a local job function": (_local_function_job, {}, "its function is local or a lambda", True),
    "config a string": (_changed("config", "nope"), {}, "config must be a jobflow JobConfig", True),
    "manager_config a number": (_changed("manager_config", 5), {}, "manager_config must be a mapping", True),
    "priority in manager_config": (_changed("manager_config", {"priority": "high"}), {},
                                   "priority must be a whole number, not str 'high'", True),
    "metadata a number": (_changed("metadata", 3), {}, "metadata must be a mapping", True),
    "name None": (_changed("name", None), {}, "name must be a string", True),
    "an external reference": (lambda: tj.add(tj.add(1, 1).output, 2), {}, "not found in the jobs array", False),
    "worker a number": (add12, {"worker": 3}, "worker must be the name of a worker, not int 3", False),
    "worker a list": (add12, {"worker": ["local"]}, "worker must be the name of a worker", False),
    "unknown worker": (add12, {"worker": "nowhere"}, "unknown worker 'nowhere'", True),
    "project a number": (add12, {"project": 3}, "project must be a project name or a Project", False),
    "exec_config a number": (add12, {"exec_config": 3}, "exec_config must be a name, a mapping", True),
    "exec_config a list": (add12, {"exec_config": ["x"]}, "exec_config must be a name, a mapping", True),
    "unknown exec_config": (add12, {"exec_config": "nothing"}, "unknown exec_config 'nothing'", True),
    "exec_config modules a number": (add12, {"exec_config": {"modules": 3}}, "modules must be a list", True),
    "exec_config export a list": (add12, {"exec_config": {"export": [1]}}, "export must map variable names", True),
    "resources a list": (add12, {"resources": [1, 2]}, "resources must be a mapping or a QResources", True),
    "resources a string": (add12, {"resources": "abc"}, "resources must be a mapping", True),
    "resources with number keys": (add12, {"resources": {1: "x"}}, "resources must be a mapping of scheduler", True),
    "resources not serializable": (add12, {"resources": {"a": object()}}, "cannot be stored", True),
    "priority 'x'": (add12, {"priority": "x"}, "priority must be a whole number, not str 'x'", True),
    "priority 1.5": (add12, {"priority": 1.5}, "priority must be a whole number", True),
    "priority nan": (add12, {"priority": math.nan}, "priority must be a whole number", True),
    "priority inf": (add12, {"priority": math.inf}, "priority must be a whole number", True),
    "priority True": (add12, {"priority": True}, "priority must be a whole number, not bool", True),
    "a huge priority": (add12, {"priority": 10**30}, "out of range", True),
    "allow_external_references 'yes'": (add12, {"allow_external_references": "yes"},
                                        "allow_external_references must be True or False", False),
}  # fmt: skip


def mongo_project(penv):
    """The test project on an in-memory MongoDB (mongomock), a fresh database each time."""
    pytest.importorskip("mongomock")
    penv.write(penv.path.read_text() + f"queue:\n  backend: mongodb\n  uri: mongomock://\n"
               f"  database: t{uuid.uuid4().hex[:12]}\n")  # fmt: skip


def everything(penv):
    """Every job and flow document of the queue database, whole."""
    with penv.db() as db:
        return db.find_jobs(sort=[("db_id", 1)]), db.find_flows(sort=[("db_id", 1)]), db.get_meta("counter_jobs")


@pytest.fixture(params=["sqlite", "mongodb"])
def backend_penv(request, penv):
    if request.param == "mongodb":
        mongo_project(penv)
    submit_flow(tj.add(0, 0))  # something already in the database
    return penv


@pytest.mark.parametrize("case", list(BAD_CALLS))
def test_every_bad_call_is_one_line_naming_the_job_and_changes_nothing(backend_penv, case):
    make, kwargs, message, names_job = BAD_CALLS[case]
    thing = make()
    before = everything(backend_penv)
    with pytest.raises(SubmitError) as err:
        submit_flow(thing, **kwargs)
    text = str(err.value)
    assert type(err.value) is SubmitError
    assert message in text and "\n" not in text
    if names_job:
        jobs = thing if isinstance(thing, list) else [thing]
        assert any(f"job {j.name} ({j.uuid}): " in text for j in jobs), text
    assert everything(backend_penv) == before


def test_an_integer_mongodb_cannot_hold_is_refused_before_anything_is_written(penv):
    mongo_project(penv)
    submit_flow(tj.add(0, 0))
    before = everything(penv)
    big = tj.add(10**30, 1)  # fine in JSON (and for the SQLite file), not in BSON
    with pytest.raises(SubmitError, match=rf"job add \({big.uuid}\): cannot be stored in MongoDB"):
        submit_flow(big)
    assert everything(penv) == before


def test_a_missing_or_invalid_project_is_a_config_error(penv):
    before = everything(penv)
    with pytest.raises(ConfigError, match="no project named 'nosuch'"):
        submit_flow(tj.add(1, 2), project="nosuch")
    (penv.projects / "broken.yaml").write_text("workers:\n  w:\n    work_dir: relative\n")
    with pytest.raises(ConfigError, match="broken.yaml: workers.w.work_dir: must be an absolute path"):
        submit_flow(tj.add(1, 2), project="broken")
    assert everything(penv) == before


def test_good_calls_still_pass(penv):
    a = tj.add(1, 2)
    ids = submit_flow([a, tj.add(a.output, 1)], priority=2.0, resources={"time": "1:00:00"},
                      exec_config={"modules": "gcc", "export": {"N": 4}})  # fmt: skip
    with penv.db() as db:
        stored = [db.get_job(db_id=i) for i in ids]
    assert [j["priority"] for j in stored] == [2, 2]
    assert stored[0]["resources"] == {"time": "1:00:00"}
