"""READY -> CHECKED_OUT: take the highest-priority job whose worker has room.

``max_jobs`` counts the jobs of a worker from checkout until they leave the
queue. Only one checkout process runs, so counting then claiming cannot overshoot.
"""

from __future__ import annotations

import time

from jfr_lib.actions import ActionContext, run_dir_for
from jfr_lib.states import QUEUED_STATES, JobState


def free_slots(ctx: ActionContext) -> dict:
    """worker name -> how many more jobs it may take (None: no limit)."""
    slots = {}
    for name, worker in ctx.project.workers.items():
        if worker.max_jobs is None or worker.is_batch:  # a batch worker's max_jobs counts its pilots
            slots[name] = None
        else:
            busy = ctx.db.count_jobs({"worker": name, "state": [str(s) for s in QUEUED_STATES]})
            slots[name] = max(0, worker.max_jobs - busy)
    return slots


def step(ctx: ActionContext) -> int:
    slots = free_slots(ctx)
    moved = 0
    touched = set()
    while True:
        query = {"state": str(JobState.READY), "retry_due": time.time()}
        if any(s == 0 for s in slots.values()):
            # a worker is full; jobs of a worker removed from the project wait meanwhile
            query["worker"] = [n for n, s in slots.items() if s is None or s > 0]
        job = ctx.claim_query(query)
        if job is None:
            break
        if job["worker"] not in ctx.project.workers:
            ctx.fail(job, f"worker {job['worker']!r} is not in the project file")
            continue
        worker = ctx.project.workers[job["worker"]]
        run_dir = job.get("run_dir")
        if not run_dir:
            try:
                work_dir = worker.work_dir if worker.is_local else ctx.host(worker).expand(worker.work_dir)
            except Exception as exc:  # the host cannot be reached: retried like any step
                ctx.step_failed(job, exc)
                continue
            run_dir = run_dir_for(work_dir, job["uuid"], job["index"], int(job.get("reruns") or 0))
        if ctx.advance(job, JobState.CHECKED_OUT, run_dir=run_dir):
            moved += 1
            touched.add(job["flow_uuid"])
            if slots[worker.name] is not None:
                slots[worker.name] -= 1
    for flow_uuid in touched:
        ctx.db.refresh_flow_state(flow_uuid)
    return moved

