"""Running a job again so that its flow ends as a fresh run would.

A rerun resets the job and every job below it (its descendants go back to
WAITING), and removes what the earlier runs of these jobs created: the jobs
their responses added (replace, addition, detour, recursively; a higher index
of a replaced job) leave the queue database, and the outputs of all of them
leave the JobStore, so no stale value is ever served as the latest. When they
run again, the jobs create their dynamic jobs anew.

Every job concerned is locked first (a compare-and-set on its state, as the
runner's own claims), so the runner cannot pick one up half-way; a rerun killed
half-way leaves them locked until ``jfr admin unlock``.
"""

from __future__ import annotations

import os
import socket
import time

from jfr_lib.errors import StateError
from jfr_lib.states import RUNNING_STATES, JobState

RERUNNABLE = (JobState.FAILED, JobState.REMOTE_ERROR, JobState.STOPPED, JobState.USER_STOPPED)
#: Fields of a run that a rerun forgets.
RUN_FIELDS = ("run_dir", "local_dir", "queue_id", "queue_state", "queue_err", "error", "traceback",
              "failed_step", "start_time", "end_time", "submitted_on", "step_attempts", "retry_time",
              "last_error", "last_error_step", "stored_data", "run_seconds", "host", "started",
              "created", "batch_ticket", "pilot", "pilot_queue_id", "pilot_losses", "fault_attempts")  # fmt: skip
BUSY = {str(s) for s in RUNNING_STATES}
COMPLETED = str(JobState.COMPLETED)


def _label(job: dict) -> str:
    return f"job {job['db_id']} ({job['name']})"


class Plan:
    """What a rerun of ``job`` touches.

    Attributes
    ----------
    reset
        The job's descendants (db_id -> document): they go back to WAITING.
    removed
        Jobs created by earlier runs of the job or of its descendants, and the
        higher indexes of any of them (db_id -> document): deleted.
    """

    def __init__(self, db, job: dict):
        self.job = job
        self.reset, self.removed = {}, {}
        reached, todo = {job["db_id"]: job}, [job]
        while todo:
            current = todo.pop()
            for other in self._created_by(db, current):
                self.removed[other["db_id"]] = other
                if other["db_id"] not in reached:
                    reached[other["db_id"]] = other
                    todo.append(other)
            for child in db.children(current["uuid"]):
                if child["db_id"] not in reached:
                    reached[child["db_id"]] = child
                    todo.append(child)
        self.removed.pop(job["db_id"], None)
        self.reset = {i: d for i, d in reached.items() if i != job["db_id"] and i not in self.removed}

    @staticmethod
    def _created_by(db, job: dict) -> list:
        """Jobs the earlier run of ``job`` created: the uuids it recorded, and its own higher indexes."""
        out = []
        for other in db.find_jobs({"uuid": [job["uuid"], *(job.get("created") or [])]}):
            if other["uuid"] != job["uuid"] or other["index"] > job["index"]:
                out.append(other)
        return out

    def others(self) -> list:
        return [*self.reset.values(), *self.removed.values()]


def rerun(db, job: dict, force: bool = False, project=None) -> dict:
    """Run a job again (COMPLETED ones only with ``force``); everything below it waits for it again.

    Parameters
    ----------
    db
        The queue database.
    job
        The job document.
    force
        Allow resetting COMPLETED jobs: the job itself, a descendant, or a job
        that an earlier run created.
    project
        The project, to remove stale outputs from its JobStore (skipped when None).

    Returns
    -------
    dict
        The job with its new state.

    Raises
    ------
    StateError
        The job is not in a state that can be rerun, the runner holds it or a job
        below it, or a COMPLETED job would be reset without ``force``.
    """
    from jfr_lib.control import refuse, wake

    allowed = RERUNNABLE + ((JobState.COMPLETED,) if force else ())
    if job["state"] not in [str(s) for s in allowed] or job.get("lock_id"):
        hint = " (add --force to rerun a COMPLETED job)" if job["state"] == COMPLETED else ""
        raise StateError(str(refuse(job, "rerun", allowed)) + hint)
    if project is not None:
        _refuse_a_live_run(project, job)
    plan = Plan(db, job)
    busy = [d for d in plan.others() if d["state"] in BUSY or d.get("lock_id")]
    if busy:
        what = busy[0]["state"] + (" and locked" if busy[0].get("lock_id") else "")
        raise StateError(f"{_label(job)}: {_label(busy[0])} below it is {what}; stop it or wait before rerunning")
    done = [d for d in plan.others() if d["state"] == COMPLETED]
    if done and not force:
        more = f" and {len(done) - 1} more" if len(done) > 1 else ""
        raise StateError(f"{_label(job)}: rerunning it would reset COMPLETED {_label(done[0])}{more}; "
                         "add --force to rerun anyway")  # fmt: skip
    token = f"rerun:{socket.gethostname()}:{os.getpid()}:{time.time():.3f}"
    locked = []
    for doc in [job, *plan.others()]:
        if not db.update_job(doc["db_id"], {"lock_id": token, "lock_time": time.time()},
                             state=doc["state"], lock_id=None):  # fmt: skip
            for db_id in locked:
                db.release_job(db_id, token)
            raise StateError(f"{_label(job)}: {_label(doc)} changed meanwhile (the runner is working on it); "
                             "try again")  # fmt: skip
        locked.append(doc["db_id"])
    try:
        if project is not None:
            remove_outputs(project, [job, *plan.others()])
        new_state = _apply(db, plan, token)
    except BaseException:
        for db_id in locked:
            if db_id not in plan.removed:
                db.release_job(db_id, token)
        raise
    for flow in {d["flow_uuid"] for d in [job, *plan.others()]}:
        if db.get_flow(flow) is not None:
            if plan.removed:
                db.update_flow(flow, {"n_jobs": db.count_jobs({"flow_uuid": flow})})
            db.refresh_flow_state(flow)
    wake(db, new_state)
    return {**job, "state": new_state, "previous_state": job["state"], "reruns": int(job.get("reruns") or 0) + 1}


def _refuse_a_live_run(project, job: dict) -> None:
    """A run never overlaps the last one: refuse while the job's process still runs here."""
    from jfr_lib.actions.monitor import local_worker
    from jfr_lib.proc import process_start
    from jfr_lib.rundir import OUT_FILE

    worker = project.workers.get(job["worker"])
    if worker is None or not worker.is_local or not job.get("run_dir"):
        return
    pid, start = local_worker(job)
    running = pid is not None and process_start(pid) is not None and process_start(pid) == (start or process_start(pid))
    if running and not os.path.exists(f"{job['run_dir']}/{OUT_FILE}"):
        raise StateError(f"{_label(job)}: its last run is still going (pid {pid} on this machine): wait for it "
                         "to end, or kill it, then rerun")  # fmt: skip


def _apply(db, plan: Plan, token: str) -> str:
    """Delete what earlier runs created, reset the descendants, then the job; returns its new state."""
    from jfr_lib.dependencies import ready_to_run

    job = plan.job
    reset = dict.fromkeys(RUN_FIELDS)
    if plan.removed:
        db.delete_jobs(list(plan.removed))
        gone = {d["uuid"] for d in plan.removed.values()} - set(db.latest_states(
            {d["uuid"] for d in plan.removed.values()}))  # fmt: skip
    else:
        gone = set()
    for child in plan.reset.values():
        changes = {"lock_id": None, "lock_time": None}
        parents = child.get("parents") or []
        if gone & set(parents):  # links a detour or replacement added to jobs that are gone
            changes["parents"] = [p for p in parents if p not in gone]
        if child["state"] not in (str(JobState.WAITING), str(JobState.PAUSED)):
            changes.update(reset, state=str(JobState.WAITING), previous_state=child["state"],
                           reruns=int(child.get("reruns") or 0) + 1)  # fmt: skip
        db.update_job(child["db_id"], changes, lock_id=token)
    target = JobState.READY if ready_to_run(db, job) else JobState.WAITING
    changes = {**reset, "state": str(target), "previous_state": job["state"],
               "reruns": int(job.get("reruns") or 0) + 1, "lock_id": None, "lock_time": None}  # fmt: skip
    parents = job.get("parents") or []
    if gone & set(parents):
        changes["parents"] = [p for p in parents if p not in gone]
    db.update_job(job["db_id"], changes, lock_id=token)
    return str(target)


def remove_outputs(project, jobs) -> None:
    """Remove the outputs of ``jobs`` (by uuid and index) from the project's JobStore."""
    from jfr_lib.jobstore import get_jobstore, store_lock

    by_index = {}
    for job in jobs:
        by_index.setdefault(int(job["index"]), set()).add(job["uuid"])
    store = get_jobstore(project)
    try:
        with store_lock(project, exclusive=True):
            for index, uuids in by_index.items():
                for extra in store.additional_stores.values():
                    extra.remove_docs({"job_uuid": {"$in": sorted(uuids)}, "job_index": index})
                store.docs_store.remove_docs({"uuid": {"$in": sorted(uuids)}, "index": index})
    finally:
        store.close()

