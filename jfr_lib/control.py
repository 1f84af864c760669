"""What a user may do to a job: retry, pause, resume, change its priority.

Each operation is a compare-and-set on the state it expects and on the job
being unlocked, so it never overwrites what the runner is doing: when the
runner holds the job, the operation is refused and may simply be tried again.
"""

from __future__ import annotations

from jfr_lib.errors import StateError
from jfr_lib.states import JobState

PAUSABLE = (JobState.WAITING, JobState.READY)
PRIORITY_STATES = (JobState.WAITING, JobState.READY, JobState.PAUSED)


def _label(job: dict) -> str:
    return f"job {job['db_id']} ({job['name']})"


def _refuse(job: dict, verb: str, allowed) -> StateError:
    names = ", ".join(str(s) for s in allowed)
    if job.get("lock_id") and job["state"] in [str(s) for s in allowed]:
        return StateError(f"{_label(job)} is being worked on by the runner; try again")
    return StateError(f"{_label(job)} is {job['state']}: only {names} jobs can be {verb}")


def retry(db, job: dict) -> dict:
    """Put a REMOTE_ERROR job back in the state where its step failed."""
    if job["state"] != str(JobState.REMOTE_ERROR):
        raise _refuse(job, "retried", [JobState.REMOTE_ERROR])
    back = job.get("previous_state") or str(JobState.READY)
    changes = {"state": back, "previous_state": job["state"], "step_attempts": 0,
               "retry_time": None, "error": None, "traceback": None}  # fmt: skip
    if not db.update_job(job["db_id"], changes, state=job["state"], lock_id=None):
        raise _refuse(db.get_job(db_id=job["db_id"]), "retried", [JobState.REMOTE_ERROR])
    db.refresh_flow_state(job["flow_uuid"])
    _wake(db, back)
    return {**job, **changes}


def pause(db, job: dict) -> dict:
    """Hold a WAITING or READY job: the runner will not check it out."""
    if job["state"] not in [str(s) for s in PAUSABLE]:
        raise _refuse(job, "paused", PAUSABLE)
    changes = {"state": str(JobState.PAUSED), "previous_state": job["state"]}
    if not db.update_job(job["db_id"], changes, state=job["state"], lock_id=None):
        raise _refuse(db.get_job(db_id=job["db_id"]), "paused", PAUSABLE)
    db.refresh_flow_state(job["flow_uuid"])
    return {**job, **changes}


def resume(db, job: dict) -> dict:
    """Release a PAUSED job: READY when its parents are done, else WAITING."""
    from jfr_lib.dependencies import ready_to_run

    if job["state"] != str(JobState.PAUSED):
        raise _refuse(job, "resumed", [JobState.PAUSED])
    target = JobState.READY if ready_to_run(db, job) else JobState.WAITING
    changes = {"state": str(target), "previous_state": job["state"]}
    if not db.update_job(job["db_id"], changes, state=job["state"], lock_id=None):
        raise _refuse(db.get_job(db_id=job["db_id"]), "resumed", [JobState.PAUSED])
    db.refresh_flow_state(job["flow_uuid"])
    _wake(db, changes["state"])
    return {**job, **changes}


def set_priority(db, job: dict, priority: int) -> dict:
    """Change the priority of a job that has not been checked out."""
    if job["state"] not in [str(s) for s in PRIORITY_STATES]:
        raise _refuse(job, "given a new priority", PRIORITY_STATES)
    if not db.update_job(job["db_id"], {"priority": int(priority)}, state=job["state"], lock_id=None):
        raise _refuse(db.get_job(db_id=job["db_id"]), "given a new priority", PRIORITY_STATES)
    return {**job, "priority": int(priority)}


def _wake(db, state: str) -> None:
    """Wake the action that handles ``state`` when the runner shares this machine."""
    from jfr_lib.actions import STATE_ACTIONS
    from jfr_lib.wakeup import notify

    action = STATE_ACTIONS.get(JobState(state))
    folder = getattr(db, "base_dir", None)
    if action and folder:
        notify(folder, action)


STOPPABLE = (JobState.WAITING, JobState.READY, JobState.PAUSED, JobState.CHECKED_OUT,
             JobState.UPLOADED, JobState.SUBMITTED, JobState.RUNNING)  # fmt: skip


def stop(db, project, job: dict) -> dict:
    """Stop a job: cancel it in its queue when it was submitted; USER_STOPPED."""
    if job["state"] not in [str(s) for s in STOPPABLE]:
        raise _refuse(job, "stopped", STOPPABLE)
    if job.get("lock_id"):
        raise _refuse(job, "stopped", STOPPABLE)
    if job["state"] in (str(JobState.SUBMITTED), str(JobState.RUNNING)) and job.get("queue_id"):
        from jfr_lib.errors import QueueError
        from jfr_lib.hosts import get_host
        from jfr_lib.queue import QueueAdapter

        worker = project.worker(job["worker"])
        host = get_host(worker)
        try:
            result = host.run(QueueAdapter(worker.scheduler_type).cancel_command(job["queue_id"]))
        finally:
            host.close()
        if result.exit_code != 0:
            raise QueueError(f"cancelling queue job {job['queue_id']} failed: "
                             f"{(result.stderr or result.stdout).strip()[-300:]}")  # fmt: skip
    changes = {"state": str(JobState.USER_STOPPED), "previous_state": job["state"]}
    if not db.update_job(job["db_id"], changes, state=job["state"], lock_id=None):
        raise _refuse(db.get_job(db_id=job["db_id"]), "stopped", STOPPABLE)
    db.refresh_flow_state(job["flow_uuid"])
    return {**job, **changes}
