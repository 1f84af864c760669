"""Who waits for whom: releasing children, stopping descendants, and a sweep.

A parent is identified by its uuid; it counts as done when the job with that
uuid and the highest index is COMPLETED (a replaced job is done only when its
replacement is). A uuid that is not in the queue database is an external
reference whose output was already there at submission.
"""

from __future__ import annotations

from jfr_lib.states import DONE_STATES, JobState

WAITING = str(JobState.WAITING)
READY = str(JobState.READY)
PAUSED = str(JobState.PAUSED)


def ready_to_run(db, job: dict) -> bool:
    """Whether every parent of a stored job lets it run (see :meth:`QueueDB.parents_done`)."""
    return db.parents_done(job["db_id"], _done(job))


def _done(job: dict) -> set:
    if job.get("allow_failed_parents"):
        return {str(s) for s in DONE_STATES}
    return {str(JobState.COMPLETED)}


def release_children(db, uuid: str) -> list:
    """Make READY the WAITING children of ``uuid`` whose parents are all done.

    Safe to repeat and to run concurrently: the change is a compare-and-set from
    WAITING, and a parent is marked done before its children are looked at, so
    of two parents finishing together the later one sees both done.

    Returns
    -------
    list of int
        db_ids of the released children.
    """
    ready = [child["db_id"] for child in db.waiting_children(uuid) if ready_to_run(db, child)]
    # one transaction for all (a parent of 100,000 jobs releases them at once); WAITING is
    # what they all come from, so the documents are left alone
    return db.update_jobs(ready, {"state": READY}, state=WAITING)


def stop_descendants(db, uuid: str, spare=()) -> int:
    """Mark STOPPED every not-yet-started descendant of ``uuid``.

    Jobs whose uuid is in ``spare`` (those the stopping job created itself) are
    neither stopped nor looked through, as jobflow runs them anyway.
    """
    stopped, todo, seen = [], [uuid], set(spare)
    while todo:
        current = todo.pop()
        for child in db.children(current):
            if child["uuid"] in seen:
                continue
            seen.add(child["uuid"])
            if _stop(db, child):
                stopped.append(child["uuid"])
            todo.append(child["uuid"])
    _release_after_stop(db, stopped)
    return len(stopped)


def stop_flow(db, flow_uuid: str) -> int:
    """Mark STOPPED every job of a flow that has not started."""
    stopped = [job["uuid"] for job in db.find_jobs({"flow_uuid": flow_uuid, "state": [WAITING, READY, PAUSED]})
               if _stop(db, job)]  # fmt: skip
    _release_after_stop(db, stopped)
    return len(stopped)


def _stop(db, job: dict) -> bool:
    if job["state"] not in (WAITING, READY, PAUSED):
        return False
    return db.update_job(job["db_id"], {"state": str(JobState.STOPPED), "previous_state": job["state"]},
                         state=job["state"])  # fmt: skip


def _release_after_stop(db, uuids) -> None:
    """A stopped job is finished: children that accept a missing output may run."""
    for uuid in uuids:
        release_children(db, uuid)


#: Meta key: when the last sweep started. Every job that finished before then
#: had its children looked at.
SWEEP_KEY = "release_sweep"
#: Seconds a sweep looks back before the previous one: a release still under way
#: then, and clocks of hosts sharing a database that disagree.
SWEEP_MARGIN = 600


def sweep_waiting(db) -> list:
    """Release the WAITING jobs whose parents are all done, which a killed process left waiting.

    Looks only at the children of jobs that finished (COMPLETED, FAILED, stopped)
    since the previous sweep, less :data:`SWEEP_MARGIN`, found through the
    (state, updated_on) index: the cost follows the recent work, not the history.
    The first sweep of a database looks at every WAITING job.

    Returns
    -------
    list of int
        db_ids of the released jobs.
    """
    from datetime import datetime, timedelta

    from jfr_lib.queue_db.base import now_iso

    started = now_iso()
    mark = db.get_meta(SWEEP_KEY)
    released = []
    if mark is None:
        for job in db.find_jobs({"state": WAITING}, sort=[("db_id", 1)]):
            if ready_to_run(db, job) and db.update_job(
                job["db_id"], {"state": READY, "previous_state": WAITING}, state=WAITING
            ):
                released.append(job["db_id"])
    else:
        since = (datetime.fromisoformat(mark) - timedelta(seconds=SWEEP_MARGIN)).isoformat(timespec="milliseconds")
        finished = [str(s) for s in DONE_STATES]
        for job in db.find_jobs({"state": finished, "updated_since": since}, sort=[("updated_on", 1)]):
            released += release_children(db, job["uuid"])
    db.set_meta(SWEEP_KEY, started)
    return released
