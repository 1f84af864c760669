"""JobController: jobflow-remote's notebook API over a real project, with the CLI's state rules."""

from __future__ import annotations

import subprocess
import sys
import time
from datetime import datetime, timedelta, timezone
from enum import Enum
from types import SimpleNamespace

import pytest
from jobflow import Flow

from jfr_lib import JobController, submit_flow
from jfr_lib.errors import NotFoundError, StateError, UsageError
from jfr_lib.jobcontroller import FlowInfo, InfoList, JobInfo
from jfr_lib.states import FlowState, JobState

import testjobs as tj
from conftest import gone, wait_for


class RemoteState(Enum):
    """Stands for jobflow-remote's JobState: another enum with the same values."""

    COMPLETED = "COMPLETED"
    BATCH_RUNNING = "BATCH_RUNNING"


def submit_mixed(env, run: bool = False) -> dict:
    """Flow "mixed" (relax-first -> add; fail -> add, left WAITING) and flow "second" (static, worker other).

    Returns the jobs by role: uuid, db_id, flow uuid.
    """
    env.write(None, workers=f"  other:\n    type: local\n    work_dir: {env.work}/other\n")
    a = tj.add(1, 2)
    a.name, a.metadata = "relax-first", {"material": "Si", "n": 1, "cell": {"kind": "cubic"}}
    b, f = tj.add(a.output, 3), tj.fail("boom")
    c = tj.add(f.output, 1)
    d = tj.add(9, 9)
    d.name = "static"
    mixed = Flow([a, b, f, c], name="mixed", metadata={"campaign": "c1"})
    second = Flow([d], name="second")
    ids = submit_flow(mixed, project=env.project) + submit_flow(second, worker="other", project=env.project)
    if run:
        env.run_until_idle()
    jobs = dict(zip("abfcd", (SimpleNamespace(uuid=j.uuid, db_id=i) for j, i in zip((a, b, f, c, d), ids))))
    return {**jobs, "mixed": mixed.uuid, "second": second.uuid}


@pytest.fixture(scope="module")
def ran(module_penv):
    """The two flows after a real run: relax-first and add COMPLETED, fail FAILED, its child WAITING."""
    jobs = submit_mixed(module_penv, run=True)
    jc = JobController.from_project(module_penv.project)
    yield jc, jobs
    jc.close()


def ids(infos) -> list:
    return [i.db_id for i in infos]


@pytest.mark.e2e
def test_the_run_gives_the_expected_states(ran):
    jc, j = ran
    states = {i.db_id: i.state for i in jc.get_jobs_info()}
    assert states == {j["a"].db_id: JobState.COMPLETED, j["b"].db_id: JobState.COMPLETED,
                      j["f"].db_id: JobState.FAILED, j["c"].db_id: JobState.WAITING,
                      j["d"].db_id: JobState.COMPLETED}  # fmt: skip


@pytest.mark.e2e
def test_job_filters(ran):
    jc, j = ran
    a, b, f, c, d = (j[k].db_id for k in "abfcd")
    assert ids(jc.get_jobs_info()) == [a, b, f, c, d]
    assert ids(jc.get_jobs_info(states=JobState.FAILED)) == [f]
    assert ids(jc.get_jobs_info(states=["completed", RemoteState.COMPLETED])) == [a, b, d]
    assert ids(jc.get_jobs_info(states="WAITING,FAILED")) == [f, c]
    assert ids(jc.get_jobs_info(db_ids=[a, str(f)])) == [a, f]  # ints, and jobflow-remote's strings
    assert ids(jc.get_jobs_info(db_ids=str(b))) == [b]
    assert ids(jc.get_jobs_info(job_ids=(j["f"].uuid, 1))) == [f]  # one pair
    assert ids(jc.get_jobs_info(job_ids=[(j["a"].uuid, 1), [j["b"].uuid, 1]])) == [a, b]
    assert ids(jc.get_jobs_info(job_ids=(j["f"].uuid, 2))) == []
    assert ids(jc.get_jobs_info(job_ids=[j["c"].uuid])) == [c]  # a bare uuid: any index
    assert ids(jc.get_jobs_info(flow_ids=j["second"])) == [d]
    assert ids(jc.get_jobs_info(flow_ids=[1])) == [a, b, f, c]  # a flow db_id
    assert ids(jc.get_jobs_info(flow_ids="2")) == [d]
    assert ids(jc.get_jobs_info(flow_ids=["no-such-flow"])) == []
    assert ids(jc.get_jobs_info(workers="other")) == [d]
    assert ids(jc.get_jobs_info(workers=["local"], states="COMPLETED")) == [a, b]
    assert ids(jc.get_jobs_info(name="add")) == [b, c]  # the whole name, as jobflow-remote matches it
    assert ids(jc.get_jobs_info(name="ad")) == []
    assert ids(jc.get_jobs_info(name="relax*")) == [a]
    assert ids(jc.get_jobs_info(metadata={"material": "Si", "n": 1})) == [a]
    assert ids(jc.get_jobs_info(metadata={"cell.kind": "cubic"})) == [a]  # dotted keys reach nested values
    assert ids(jc.get_jobs_info(metadata={"n": "1"})) == []  # exact values, not their text
    assert ids(jc.get_jobs_info(custom_query={"worker": "other"})) == [d]
    assert ids(jc.get_jobs_info(locked=True)) == []


@pytest.mark.e2e
def test_dates_sort_limit_skip_and_counts(ran):
    jc, j = ran
    a, b, f, c, d = (j[k].db_id for k in "abfcd")
    hour = timedelta(hours=1)
    assert ids(jc.get_jobs_info(start_date=datetime.now() - hour)) == [a, b, f, c, d]  # naive: local time
    assert ids(jc.get_jobs_info(end_date=datetime.now(timezone.utc) - hour)) == []
    assert ids(jc.get_jobs_info(start_date=datetime.now(timezone.utc) + hour)) == []
    assert ids(jc.get_jobs_info(start_date="1h")) == [a, b, f, c, d]
    infos = jc.get_jobs_info()
    latest = max(i.updated_on for i in infos)
    since = jc.get_jobs_info(start_date=latest)
    assert since and all(i.updated_on >= latest for i in since)
    assert len(since) < len(infos)
    assert ids(jc.get_jobs_info(end_date=latest)) == [i.db_id for i in infos if i.updated_on < latest]
    assert ids(jc.get_jobs_info(sort=[("db_id", -1)])) == [d, c, f, b, a]
    assert ids(jc.get_jobs_info(sort="name"))[:2] == [b, c]  # "add" first, ties by db_id
    assert ids(jc.get_jobs_info(limit=2)) == [a, b]
    assert ids(jc.get_jobs_info(limit=2, skip=1)) == [b, f]
    assert ids(jc.get_jobs_info(metadata={"material": "Si"}, limit=1, skip=1)) == []
    assert jc.count_jobs() == 5
    assert jc.count_jobs(states="COMPLETED") == 3
    assert jc.count_jobs(query={"state": "FAILED"}) == 1
    assert jc.count_jobs(metadata={"material": "Si"}) == 1
    assert jc.count_jobs(job_ids=[(j["a"].uuid, 1), (j["d"].uuid, 1)]) == 2
    assert jc.count_jobs(flow_ids=[j["mixed"]], states=["WAITING"]) == 1


@pytest.mark.e2e
def test_flows_info_and_count(ran):
    jc, j = ran
    flows = jc.get_flows_info()
    assert [f.name for f in flows] == ["mixed", "second"]
    mixed = flows[0]
    assert isinstance(mixed, FlowInfo) and mixed.flow_id == mixed.uuid == j["mixed"]
    assert mixed.state == FlowState.FAILED and mixed.n_jobs == 4
    assert mixed.db_ids == [j[k].db_id for k in "abfc"]
    assert mixed.job_ids == [j[k].uuid for k in "abfc"] and mixed.job_indexes == [1, 1, 1, 1]
    assert mixed.job_states == [JobState.COMPLETED, JobState.COMPLETED, JobState.FAILED, JobState.WAITING]
    assert mixed.job_names == ["relax-first", "add", "fail", "add"] and mixed.workers == ["local"] * 4
    assert mixed.metadata == mixed.flow_metadata == {"campaign": "c1"} and mixed.jobs_info is None
    assert [f.name for f in jc.get_flows_info(states=FlowState.COMPLETED)] == ["second"]
    assert [f.name for f in jc.get_flows_info(states="FAILED")] == ["mixed"]
    assert [f.name for f in jc.get_flows_info(name="mix*")] == ["mixed"]
    assert [f.name for f in jc.get_flows_info(job_ids=j["d"].uuid)] == ["second"]
    assert [f.name for f in jc.get_flows_info(db_ids=[str(j["f"].db_id)])] == ["mixed"]
    assert [f.name for f in jc.get_flows_info(flow_ids=[j["second"]])] == ["second"]
    assert [f.name for f in jc.get_flows_info(metadata={"campaign": "c1"})] == ["mixed"]
    assert [f.name for f in jc.get_flows_info(sort=[("db_id", -1)], limit=1)] == ["second"]
    assert [f.name for f in jc.get_flows_info(skip=1)] == ["second"]
    assert jc.get_flows_info(locked=True) == []
    full = jc.get_flows_info(flow_ids=j["mixed"], with_jobs_info=True, jobs_sort=[("db_id", -1)])[0]
    assert [i.db_id for i in full.jobs_info] == [j[k].db_id for k in "cfba"]
    assert all(isinstance(i, JobInfo) for i in full.jobs_info)
    assert jc.count_flows() == 2
    assert jc.count_flows(states=[FlowState.FAILED]) == 1
    assert jc.count_flows(metadata={"campaign": "c1"}) == 1
    assert jc.count_flows(query={"name": "second"}) == 1


@pytest.mark.e2e
def test_get_job_info_and_output(ran):
    jc, j = ran
    failed = jc.get_job_info(db_id=j["f"].db_id)
    assert failed == jc.get_job_info(db_id=str(j["f"].db_id)) == jc.get_job_info(job_id=j["f"].uuid, job_index=1)
    assert failed.state == JobState.FAILED and failed.previous_state is not None
    assert failed.error == "RuntimeError: boom" and "RuntimeError: boom" in failed.traceback
    assert failed.end_time >= failed.start_time and failed.run_time >= 0
    assert failed.run_dir and failed.remote.process_id and not failed.is_locked
    assert failed.created_on.tzinfo is not None and failed.flow_uuid == j["mixed"]
    child = jc.get_job_info(job_id=j["c"].uuid)  # the highest index
    assert child.parents == [j["f"].uuid] and child.end_time is None and child.run_time is None
    first = jc.get_job_info(db_id=j["a"].db_id)
    assert first.metadata["material"] == "Si" and first.name == "relax-first" and first.worker == "local"
    assert jc.get_job_info(db_id=999) is None
    assert jc.get_job_info(job_id="no-such-uuid") is None
    assert jc.get_job_output(db_id=j["b"].db_id) == 6
    assert jc.get_job_output(job_id=j["b"].uuid) == 6
    assert jc.get_job_output(job_id=j["d"].uuid, job_index=1) == 18
    with pytest.raises(NotFoundError, match=r"job \d+ \(WAITING\) has no output yet"):
        jc.get_job_output(db_id=j["c"].db_id)
    with pytest.raises(NotFoundError, match="no job 999"):
        jc.get_job_output(db_id=999)


@pytest.mark.e2e
def test_printing(ran):
    jc, j = ran
    infos = jc.get_jobs_info()
    line = repr(infos[2])
    assert "\n" not in line and line.startswith(f"JobInfo(db_id={j['f'].db_id}, name='fail', state=FAILED")
    assert "error='RuntimeError: boom'" in line
    table = repr(infos).splitlines()
    assert table[0].split() == ["ID", "NAME", "STATE", "WORKER", "QUEUE", "PRIO", "UPDATED", "UUID", "IDX"]
    assert len(table) == 6 and "relax-first" in table[1] and "FAILED" in table[3]
    assert str(infos) == repr(infos)
    assert isinstance(infos[1:3], InfoList) and len(repr(infos[1:3]).splitlines()) == 3
    assert repr(jc.get_jobs_info(name="nothing")) == "[]"
    flows = jc.get_flows_info()
    assert repr(flows[0]).startswith("FlowInfo(db_id=1, name='mixed', state=FAILED, n_jobs=4")
    assert repr(flows).splitlines()[0].split() == ["ID", "NAME", "STATE", "JOBS", "UPDATED", "UUID"]


@pytest.mark.e2e
def test_bad_arguments_are_one_line_errors(ran):
    jc, j = ran
    with pytest.raises(UsageError, match="unknown state 'DONE'"):
        jc.get_jobs_info(states="DONE")
    with pytest.raises(UsageError, match="db_ids: 'x1' is not a db_id"):
        jc.get_jobs_info(db_ids=["x1"])
    with pytest.raises(UsageError, match="custom_query repeats what other arguments select: worker"):
        jc.get_jobs_info(workers="local", custom_query={"worker": "other"})
    with pytest.raises(UsageError, match="cannot sort on 'colour'"):
        jc.get_jobs_info(sort=[("colour", 1)])
    with pytest.raises(UsageError, match="give one of job_id and db_id"):
        jc.get_job_info()
    with pytest.raises(UsageError, match="give one of job_id and db_id"):
        jc.get_job_info(job_id=j["a"].uuid, db_id=1)
    with pytest.raises(UsageError, match="job_ids: give"):
        jc.get_jobs_info(job_ids=[("a", 1, 2)])
    with pytest.raises(UsageError, match="start_date: give a datetime"):
        jc.get_jobs_info(start_date=12)
    with pytest.raises(UsageError, match="name: give a value"):
        jc.count_jobs(name="")
    with pytest.raises(UsageError, match="pause: select jobs"):
        jc.pause_jobs()  # jobflow-remote would pause every job


@pytest.mark.e2e
def test_rerun_failed_job_resets_its_children(penv):
    j = submit_mixed(penv, run=True)
    jc = JobController.from_project(penv.project)
    a, b, f, c = (j[k].db_id for k in "abfc")
    with pytest.raises(StateError, match=rf"job {a} \(relax-first\) is COMPLETED: .*add --force"):
        jc.rerun_jobs(db_ids=a)
    assert jc.stop_jobs(db_ids=[c]) == [c]  # the waiting child: USER_STOPPED
    assert jc.get_job_info(db_id=c).state == JobState.USER_STOPPED
    assert jc.rerun_jobs(db_ids=[str(f)]) == [f, c]  # the job and the child it put back to WAITING
    rerun_job, child = jc.get_job_info(db_id=f), jc.get_job_info(db_id=c)
    assert (rerun_job.state, child.state) == (JobState.READY, JobState.WAITING)
    assert rerun_job.run_dir is None and rerun_job.error is None
    assert jc.rerun_jobs(job_ids=(j["a"].uuid, 1), force=True) == [a, b]
    assert [jc.get_job_info(db_id=i).state for i in (a, b)] == [JobState.READY, JobState.WAITING]
    with pytest.raises(NotFoundError, match="has no output yet"):  # the stale output is gone
        jc.get_job_output(db_id=b)
    penv.run_until_idle()
    assert jc.get_job_output(db_id=b) == 6
    assert [jc.get_job_info(db_id=i).state for i in (a, b, f, c)] == [
        JobState.COMPLETED, JobState.COMPLETED, JobState.FAILED, JobState.WAITING]  # fmt: skip
    jc.close()


def test_retry_of_remote_error_and_batch_state_names(penv, caplog):
    j = submit_mixed(penv)
    a, b, f = (j[k].db_id for k in "abf")
    with JobController.from_project(penv.project) as jc:
        jc.db.update_job(a, {"state": "REMOTE_ERROR", "previous_state": "READY", "error": "ssh: no route"})
        assert jc.get_jobs_info(states="REMOTE_ERROR")[0].error == "ssh: no route"
        assert jc.retry_jobs(db_ids=[a]) == [a]
        retried = jc.get_job_info(db_id=a)
        assert retried.state == JobState.READY and retried.error is None
        with pytest.raises(StateError, match=rf"job {a} \(relax-first\) is READY: only REMOTE_ERROR jobs can be"):
            jc.retry_jobs(job_ids=(j["a"].uuid, 1))
        assert jc.retry_jobs(db_ids=a, raise_on_error=False) == []
        assert "only REMOTE_ERROR jobs can be retried" in caplog.text
        jc.db.update_job(b, {"state": "RUNNING"})
        jc.db.update_job(f, {"state": "SUBMITTED"})
        assert ids(jc.get_jobs_info(states="BATCH_RUNNING")) == [b]  # jfr keeps a pilot's jobs RUNNING
        assert ids(jc.get_jobs_info(states=[RemoteState.BATCH_RUNNING, "BATCH_SUBMITTED"])) == [b, f]
    assert jc._db is None  # closed by the with block


def test_pause_resume_stop_follow_the_cli_rules(penv):
    j = submit_mixed(penv)
    a, b, f, c, d = (j[k].db_id for k in "abfcd")
    jc = JobController.from_project(penv.project)
    assert jc.pause_jobs(states=JobState.READY, flow_ids=j["mixed"]) == [a, f]
    assert jc.pause_jobs(db_ids=b) == [b]  # WAITING
    assert ids(jc.get_jobs_info(states="PAUSED")) == [a, b, f]
    with pytest.raises(StateError, match=rf"job {a} \(relax-first\) is PAUSED: only WAITING, READY jobs can be paused"):
        jc.pause_jobs(db_ids=a)
    assert jc.resume_jobs(states="PAUSED") == [a, b, f]
    states = {i.db_id: i.state for i in jc.get_jobs_info(flow_ids=j["mixed"])}
    assert states == {a: JobState.READY, b: JobState.WAITING, f: JobState.READY, c: JobState.WAITING}
    with pytest.raises(StateError, match="only PAUSED jobs can be resumed"):
        jc.resume_jobs(db_ids=d)
    assert jc.resume_jobs(db_ids=999) == []  # selects nothing
    assert jc.stop_jobs(name="static") == [d]
    assert jc.get_job_info(db_id=d).state == JobState.USER_STOPPED
    with pytest.raises(StateError, match="is USER_STOPPED: only .* jobs can be stopped"):
        jc.stop_jobs(db_ids=d)
    jc.close()


def test_locks_wait_and_break_lock(penv, monkeypatch):
    from jfr_lib import jobcontroller

    j = submit_mixed(penv)
    a, f = j["a"].db_id, j["f"].db_id
    jc = JobController.from_project(penv.project)
    jc.db.update_job(a, {"lock_id": "host:1:checkout:0", "lock_time": time.time()})
    assert ids(jc.get_jobs_info(locked=True)) == [a]
    assert [x.name for x in jc.get_flows_info(locked=True)] == ["mixed"]
    assert jc.count_flows(locked=True) == 1
    assert jc.get_job_info(db_id=a).is_locked
    with pytest.raises(StateError, match="is being worked on by the runner; try again"):
        jc.pause_jobs(db_ids=a)
    started = time.monotonic()
    with pytest.raises(StateError, match="being worked on"):
        jc.pause_jobs(db_ids=a, wait=0.3)  # the lock stays: refused once the wait is over
    assert time.monotonic() - started >= 0.3
    waits = []

    def runner_lets_go(seconds):  # the lock goes while the controller waits
        waits.append(seconds)
        jc.db.release_job(a, "host:1:checkout:0")

    monkeypatch.setattr(jobcontroller.time, "sleep", runner_lets_go)
    assert jc.pause_jobs(db_ids=a, wait=30) == [a]
    assert waits and jc.get_job_info(db_id=a).state == JobState.PAUSED
    monkeypatch.undo()
    jc.db.update_job(f, {"lock_id": "host:1:gone:0", "lock_time": time.time()})
    assert jc.stop_jobs(db_ids=f, break_lock=True) == [f]
    stopped = jc.get_job_info(db_id=f)
    assert stopped.state == JobState.USER_STOPPED and not stopped.is_locked
    jc.close()


@pytest.mark.e2e
def test_delete_flows(penv, caplog):
    j = submit_mixed(penv, run=True)
    jc = JobController.from_project(penv.project)
    with pytest.raises(UsageError, match="2 flows, more than max_limit=1"):
        jc.delete_flows(max_limit=1)
    assert jc.delete_flows([j["second"]], delete_output=True) == [j["second"]]
    assert jc.count_flows() == 1 and jc.get_jobs_info(flow_ids=j["second"]) == []
    with pytest.raises(NotFoundError, match="has no output yet"):
        jc.get_job_output(job_id=j["d"].uuid)
    assert jc.delete_flows(["no-such-flow"]) == []  # logged and skipped, as jobflow-remote does
    assert "no flow no-such-flow" in caplog.text
    with pytest.raises(NotFoundError, match="no flow no-such-flow"):
        jc.delete_flows(["no-such-flow"], raise_on_error=True)
    jc.db.update_job(j["b"].db_id, {"lock_id": "host:1:complete:0", "lock_time": time.time()})
    assert jc.delete_flows([1]) == []
    with pytest.raises(StateError, match=rf"flow 1: job {j['b'].db_id} is COMPLETED and locked; stop it or wait"):
        jc.delete_flows(["1"], raise_on_error=True)
    assert jc.count_jobs() == 4  # nothing deleted from a refused flow
    assert jc.delete_flows([j["mixed"]], break_lock=True, delete_output=True) == [j["mixed"]]
    assert jc.count_flows() == 0 and jc.count_jobs() == 0
    with pytest.raises(NotFoundError):
        jc.get_job_output(job_id=j["b"].uuid)
    jc.close()


@pytest.mark.e2e
def test_delete_flows_cancels_a_running_job(penv):
    submit_flow(Flow([tj.sleep_add(120, 1, 1)], name="slow"), project=penv.project)
    jc = JobController.from_project(penv.project)
    with penv.start_runner():
        running = wait_for(lambda: (i := jc.get_job_info(db_id=1)).state == JobState.RUNNING and i, 60,
                           message="the job to run")  # fmt: skip
        pid = int(running.remote.process_id)
        wait_for(lambda: jc.db.update_job(1, {"lock_id": "someone"}, lock_id=None), 30, message="an unlocked job")
        with pytest.raises(StateError, match=r"break_lock: a runner is running on .* \(pid \d+\): stop it first"):
            jc.stop_jobs(db_ids=1, break_lock=True)  # as `jfr admin unlock`: the runner may hold the lock
        assert jc.db.release_job(1, "someone")
        with pytest.raises(StateError, match="job 1 is RUNNING; stop it or wait before deleting the flow"):
            jc.delete_flows([1], cancel_processes=False, raise_on_error=True)
        assert jc.delete_flows([1], wait=30, raise_on_error=True) == [running.flow_uuid]
        assert jc.count_flows() == 0 and jc.count_jobs() == 0
        wait_for(lambda: gone(pid), 30, message="the job's process to end")
    jc.close()


def test_constructors(penv):
    submit_flow(tj.add(1, 1), project=penv.project)
    by_name = JobController.from_project_name("test")
    assert by_name.project.name == "test" and by_name.count_jobs() == 1
    assert JobController.from_project_name().count_jobs() == 1  # the only project
    assert JobController.from_project(SimpleNamespace(name="test")).count_jobs() == 1  # a jobflow-remote Project
    with pytest.raises(UsageError, match="project must be a Project, not int"):
        JobController.from_project(42)
    with pytest.raises(NotFoundError, match="no project named 'nope'"):
        JobController.from_project_name("nope")
    by_name.close()


def test_import_and_queries_do_not_load_jobflow(penv):
    submit_flow(tj.add(1, 1), project=penv.project)
    code = (
        "import sys\n"
        "from jfr_lib import JobController\n"
        "heavy = ('jobflow', 'maggma', 'pymongo')\n"
        "print(sorted(m for m in heavy if m in sys.modules))\n"
        "jc = JobController.from_project_name()\n"
        "print(len(jc.get_jobs_info()), jc.count_flows(), len(jc.get_flows_info()), jc.get_job_info(db_id=1).state)\n"
        "print(sorted(m for m in heavy if m in sys.modules))\n"
    )  # fmt: skip
    out = subprocess.run([sys.executable, "-c", code], env=penv.env(), capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == ["[]", "1 1 1 READY", "[]"]
