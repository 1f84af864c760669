"""What a user may do to a job: retry, pause, resume, change its priority.

Each operation is a compare-and-set on the state it expects and on the job
being unlocked, so it never overwrites what the runner is doing: when the
runner holds the job, the operation is refused and may simply be tried again.
"""

from __future__ import annotations

import os

from jfr_lib.errors import StateError
from jfr_lib.states import JobState

PAUSABLE = (JobState.WAITING, JobState.READY)
PRIORITY_STATES = (JobState.WAITING, JobState.READY, JobState.PAUSED)


def _label(job: dict) -> str:
    return f"job {job['db_id']} ({job['name']})"


def refuse(job: dict, verb: str, allowed) -> StateError:
    """The error for a job whose state (or the runner's lock) forbids ``verb``."""
    names = ", ".join(str(s) for s in allowed)
    if job.get("lock_id") and job["state"] in [str(s) for s in allowed]:
        return StateError(f"{_label(job)} is being worked on by the runner; try again")
    return StateError(f"{_label(job)} is {job['state']}: only {names} jobs can be {verb}")


def retry(db, job: dict) -> dict:
    """Put a REMOTE_ERROR job back in the state where its step failed."""
    if job["state"] != str(JobState.REMOTE_ERROR):
        raise refuse(job, "retried", [JobState.REMOTE_ERROR])
    back = job.get("previous_state") or str(JobState.READY)
    changes = {"state": back, "previous_state": job["state"], "step_attempts": 0,
               "retry_time": None, "error": None, "traceback": None}  # fmt: skip
    if not db.update_job(job["db_id"], changes, state=job["state"], lock_id=None):
        raise refuse(db.get_job(db_id=job["db_id"]), "retried", [JobState.REMOTE_ERROR])
    db.refresh_flow_state(job["flow_uuid"])
    wake(db, back)
    return {**job, **changes}


def pause(db, job: dict) -> dict:
    """Hold a WAITING or READY job: the runner will not check it out."""
    if job["state"] not in [str(s) for s in PAUSABLE]:
        raise refuse(job, "paused", PAUSABLE)
    changes = {"state": str(JobState.PAUSED), "previous_state": job["state"]}
    if not db.update_job(job["db_id"], changes, state=job["state"], lock_id=None):
        raise refuse(db.get_job(db_id=job["db_id"]), "paused", PAUSABLE)
    db.refresh_flow_state(job["flow_uuid"])
    return {**job, **changes}


def resume(db, job: dict) -> dict:
    """Release a PAUSED job: READY when its parents are done, else WAITING."""
    from jfr_lib.dependencies import ready_to_run

    if job["state"] != str(JobState.PAUSED):
        raise refuse(job, "resumed", [JobState.PAUSED])
    target = JobState.READY if ready_to_run(db, job) else JobState.WAITING
    changes = {"state": str(target), "previous_state": job["state"]}
    if not db.update_job(job["db_id"], changes, state=job["state"], lock_id=None):
        raise refuse(db.get_job(db_id=job["db_id"]), "resumed", [JobState.PAUSED])
    db.refresh_flow_state(job["flow_uuid"])
    wake(db, changes["state"])
    return {**job, **changes}


def set_priority(db, job: dict, priority: int) -> dict:
    """Change the priority of a job that has not been checked out."""
    if job["state"] not in [str(s) for s in PRIORITY_STATES]:
        raise refuse(job, "given a new priority", PRIORITY_STATES)
    if not db.update_job(job["db_id"], {"priority": int(priority)}, state=job["state"], lock_id=None):
        raise refuse(db.get_job(db_id=job["db_id"]), "given a new priority", PRIORITY_STATES)
    return {**job, "priority": int(priority)}


def wake(db, state: str) -> None:
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
    """Stop a job: cancel it in its queue when it was submitted; USER_STOPPED.

    A submitted job is locked while it is cancelled, so the runner, seeing it
    end, does not complete it as FAILED under our feet.
    """
    if job["state"] not in [str(s) for s in STOPPABLE]:
        raise refuse(job, "stopped", STOPPABLE)
    if job.get("lock_id"):
        raise refuse(job, "stopped", STOPPABLE)
    changes = {"state": str(JobState.USER_STOPPED), "previous_state": job["state"]}
    if job["state"] in (str(JobState.SUBMITTED), str(JobState.RUNNING)):
        import socket
        import time

        lock = f"user-stop:{socket.gethostname()}:{os.getpid()}"
        if not db.update_job(job["db_id"], {"lock_id": lock, "lock_time": time.time()},
                             state=job["state"], lock_id=None):  # fmt: skip
            raise refuse(db.get_job(db_id=job["db_id"]), "stopped", STOPPABLE)
        try:
            _cancel(project, job)
        except BaseException:
            db.update_job(job["db_id"], {"lock_id": None, "lock_time": None}, lock_id=lock)
            raise
        db.update_job(job["db_id"], {**changes, "lock_id": None, "lock_time": None}, lock_id=lock)
    elif not db.update_job(job["db_id"], changes, state=job["state"], lock_id=None):
        raise refuse(db.get_job(db_id=job["db_id"]), "stopped", STOPPABLE)
    from jfr_lib.dependencies import release_children

    if release_children(db, job["uuid"]):  # children that accept a missing output go on
        wake(db, str(JobState.READY))
    db.refresh_flow_state(job["flow_uuid"])
    return {**job, **changes}


def _cancel(project, job: dict) -> None:
    """Cancel a submitted job in its queue; its queue id may come from its run folder.

    A job whose queue id cannot be found is refused, unless its own process runs
    on this machine: that process is terminated (as a cancel would).
    """
    import signal

    from jfr_lib.actions.monitor import local_worker
    from jfr_lib.actions.scripts import recorded_queue_id
    from jfr_lib.errors import QueueError
    from jfr_lib.hosts import get_host
    from jfr_lib.proc import process_start
    from jfr_lib.queue import QueueAdapter

    worker = project.worker(job["worker"])
    if worker.is_batch and job.get("batch_ticket"):
        _cancel_in_pilot(worker, job)
        return
    queue = QueueAdapter(worker.scheduler_type)
    host = get_host(worker)
    try:
        queue_id = job.get("queue_id") or (job.get("run_dir") and recorded_queue_id(host, queue, job["run_dir"]))
        if not queue_id:
            pid, start = local_worker(job) if worker.is_local and job.get("run_dir") else (None, None)
            if pid is None or process_start(pid) != start:
                raise QueueError(f"{_label(job)}: its queue id is unknown and its process was not found: cannot "
                                 "cancel it; try again once the runner has recorded it", transient=False)  # fmt: skip
            os.kill(pid, signal.SIGTERM)
            return
        result = host.run(queue.cancel_command(queue_id))
    finally:
        host.close()
    if result.exit_code != 0:
        raise QueueError(f"cancelling queue job {queue_id} failed: "
                         f"{(result.stderr or result.stdout).strip()[-300:]}")  # fmt: skip


def _cancel_in_pilot(worker, job: dict) -> None:
    """End a job of a batch worker, and only it: a ticket still waiting is withdrawn; one a
    pilot holds gets a cancel request, on which the pilot ends that job (its script's process group)."""
    import shlex

    from jfr_lib import batch
    from jfr_lib.hosts import get_host

    host = get_host(worker)
    try:
        home = worker.batch.jobs_handle_dir if worker.is_local else host.expand(worker.batch.jobs_handle_dir)
        name = job["batch_ticket"]
        # the request first, then the withdrawal: a pilot taking the ticket in between still sees the request
        command = (f"cd {shlex.quote(home)} && : > {batch.CANCEL}/{name} && "
                   f"{{ if rm {batch.READY}/{name} 2>/dev/null; then rm -f {batch.CANCEL}/{name}; fi; }}")  # fmt: skip
        result = host.run(command)
    finally:
        host.close()
    if result.exit_code != 0:
        from jfr_lib.errors import QueueError

        raise QueueError(f"{_label(job)}: cannot ask its pilot to end it: "
                         f"{(result.stderr or result.stdout).strip()[-300:]}")  # fmt: skip


#: Jobs the runner is not working on; a finished job's new settings apply to its rerun (as in jobflow-remote).
SETTABLE = (JobState.WAITING, JobState.READY, JobState.PAUSED, JobState.COMPLETED, JobState.FAILED,
            JobState.REMOTE_ERROR, JobState.STOPPED, JobState.USER_STOPPED)  # fmt: skip


def set_value(db, project, job: dict, key: str, value, replace: bool = False) -> dict:
    """Change ``worker``, ``exec_config`` or ``resources`` of a job that has not started.

    New resources are merged into the job's mapping (a key set to null removes it),
    unless ``replace``.
    """
    from jfr_lib.errors import UsageError

    if key == "worker" and value not in project.workers:
        raise UsageError(f"unknown worker {value!r} (known: {', '.join(project.workers)})")
    if key == "exec_config" and isinstance(value, str) and value not in project.exec_config:
        raise UsageError(f"unknown exec_config {value!r} (known: {', '.join(project.exec_config) or 'none'})")
    if job["state"] not in [str(s) for s in SETTABLE]:
        raise refuse(job, f"given a new {key}", SETTABLE)
    if key == "resources" and not replace:
        value = merge_resources(job.get("resources"), value)
    if not db.update_job(job["db_id"], {key: value}, state=job["state"], lock_id=None):
        raise refuse(db.get_job(db_id=job["db_id"]), f"given a new {key}", SETTABLE)
    return {**job, key: value}


def merge_resources(old, new: dict) -> dict:
    """``new`` over ``old``; a key whose new value is None is removed.

    A serialized QResources takes only its own fields, and a new QResources
    replaces whatever was there.
    """
    from jfr_lib.errors import UsageError

    if not old or new.get("@class") == "QResources":
        return {k: v for k, v in new.items() if v is not None}
    merged = {**old, **new}
    if old.get("@class") == "QResources":
        from qtoolkit.core.data_objects import QResources

        fields = set(QResources.__dataclass_fields__)
        unknown = sorted(set(new) - fields)
        if unknown:
            raise UsageError(f"resources: {', '.join(unknown)} is not a QResources field "
                             "(the job's resources are a QResources; use --replace to give a mapping)")  # fmt: skip
    return {k: v for k, v in merged.items() if v is not None or k.startswith("@")}


DELETABLE = (JobState.WAITING, JobState.READY, JobState.PAUSED, JobState.COMPLETED, JobState.FAILED,
             JobState.REMOTE_ERROR, JobState.STOPPED, JobState.USER_STOPPED)  # fmt: skip


def refuse_flow_delete(flow: dict, job: dict) -> None:
    """Refuse to delete ``flow`` while ``job`` of it is one the runner works on (running or locked)."""
    from jfr_lib.states import RUNNING_STATES

    if job["state"] in [str(s) for s in RUNNING_STATES] or job.get("lock_id"):
        what = job["state"] + (" and locked" if job.get("lock_id") else "")
        raise StateError(f"flow {flow['db_id']}: job {job['db_id']} is {what}; stop it or wait before deleting "
                         "the flow")  # fmt: skip


def delete_flow(db, project, flow: dict, jobs: list, output: bool = False, files: bool = False) -> None:
    """Delete ``flow`` and its ``jobs`` (each checked by :func:`delete`)."""
    for job in jobs:
        delete(db, project, job, output=output, files=files)
    db.delete_flow(flow["uuid"])


def delete(db, project, job: dict, output: bool = False, files: bool = False) -> None:
    """Remove a job from the queue database; optionally its outputs and its run folder."""
    if job["state"] not in [str(s) for s in DELETABLE] or job.get("lock_id"):
        raise refuse(job, "deleted", DELETABLE)
    if files and job.get("run_dir"):
        from jfr_lib.hosts import get_host

        host = get_host(project.worker(job["worker"]))
        try:
            host.remove(job["run_dir"])
        finally:
            host.close()
    if output:
        from jfr_lib.jobstore import get_jobstore, store_lock

        store = get_jobstore(project)
        with store_lock(project, exclusive=True):
            for extra in store.additional_stores.values():
                extra.remove_docs({"job_uuid": job["uuid"], "job_index": job["index"]})
            store.docs_store.remove_docs({"uuid": job["uuid"], "index": job["index"]})
    db.delete_jobs([job["db_id"]])
    if db.count_jobs({"flow_uuid": job["flow_uuid"]}) == 0:
        db.delete_flow(job["flow_uuid"])
    else:
        db.refresh_flow_state(job["flow_uuid"])
