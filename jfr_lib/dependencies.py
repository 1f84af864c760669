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


def ready_to_run(db, job: dict) -> bool:
    """Whether every parent of a WAITING job lets it run."""
    parents = job.get("parents") or []
    if not parents:
        return True
    states = db.latest_states(parents)
    done = {str(JobState.COMPLETED)}
    if job.get("allow_failed_parents"):
        done = {str(s) for s in DONE_STATES}
    return all(states.get(p, str(JobState.COMPLETED)) in done for p in parents)


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
    released = []
    for child in db.children(uuid):
        if child["state"] == WAITING and ready_to_run(db, child):
            if db.update_job(child["db_id"], {"state": READY, "previous_state": WAITING},
                             state=WAITING):  # fmt: skip
                released.append(child["db_id"])
    return released


def stop_descendants(db, uuid: str) -> int:
    """Mark STOPPED every not-yet-started descendant of ``uuid``."""
    stopped, todo, seen = 0, [uuid], set()
    while todo:
        current = todo.pop()
        for child in db.children(current):
            if child["uuid"] in seen:
                continue
            seen.add(child["uuid"])
            if child["state"] in (WAITING, READY, str(JobState.PAUSED)):
                if db.update_job(child["db_id"], {"state": str(JobState.STOPPED),
                                                  "previous_state": child["state"]},
                                 state=child["state"]):  # fmt: skip
                    stopped += 1
            todo.append(child["uuid"])
    return stopped


def stop_flow(db, flow_uuid: str) -> int:
    """Mark STOPPED every job of a flow that has not started."""
    stopped = 0
    for job in db.find_jobs({"flow_uuid": flow_uuid,
                             "state": [WAITING, READY, str(JobState.PAUSED)]}):  # fmt: skip
        if db.update_job(job["db_id"], {"state": str(JobState.STOPPED),
                                        "previous_state": job["state"]}, state=job["state"]):  # fmt: skip
            stopped += 1
    return stopped


def sweep_waiting(db) -> list:
    """Release every WAITING job whose parents are all done.

    Run when a runner starts: it mends a release that a killed process left
    half done.
    """
    released = []
    for job in db.find_jobs({"state": WAITING}, sort=[("db_id", 1)]):
        if ready_to_run(db, job) and db.update_job(
            job["db_id"], {"state": READY, "previous_state": WAITING}, state=WAITING
        ):
            released.append(job["db_id"])
    return released
