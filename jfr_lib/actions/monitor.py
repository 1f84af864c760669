"""SUBMITTED/RUNNING -> RUNNING/RUN_FINISHED: one queue query per worker per poll.

Jobs are not locked here: each change is a compare-and-set from the state that
was read, so a user's pause or stop in between simply wins.
"""

from __future__ import annotations

import time

from jfr_lib.actions import ActionContext
from jfr_lib.errors import HostError, QueueError
from jfr_lib.states import JobState
from jfr_lib.worker import OUT_FILE

WATCHED = [str(JobState.SUBMITTED), str(JobState.RUNNING)]
#: After a local job says it finished, look this often for this long: the
#: process is gone from the queue a few milliseconds after it wrote its output.
BURST_INTERVAL, BURST_SECONDS = 0.03, 3.0


def poll_interval(ctx: ActionContext, worker) -> float:
    if worker.is_local and time.monotonic() - ctx.woken_at < BURST_SECONDS:
        return BURST_INTERVAL
    if worker.poll_interval is not None:
        return worker.poll_interval
    if worker.is_local and worker.scheduler_type == "shell":
        return ctx.project.runner.local_poll_interval
    return ctx.project.runner.queue_poll_interval


def next_due(ctx: ActionContext) -> float:
    """Seconds until some watched worker is due for a queue query."""
    now = time.monotonic()
    waits = [ctx.last_poll.get(name, 0.0) + poll_interval(ctx, ctx.project.workers[name]) - now
             for name in getattr(ctx, "watched", ()) if name in ctx.project.workers]  # fmt: skip
    return max(0.0, min(waits)) if waits else ctx.project.runner.idle_sleep


def check_worker(ctx: ActionContext, worker, jobs: list) -> int:
    host = ctx.host(worker)
    queue = ctx.queue(worker)
    with_id = [j for j in jobs if j.get("queue_id")]
    statuses = {}
    if with_id:
        ids = [j["queue_id"] for j in with_id]
        result = host.run(queue.status_command(ids, worker.scheduler_username))
        statuses = queue.parse_status(result.exit_code, result.stdout, result.stderr, ids)
    moved = 0
    for job in jobs:
        status = statuses.get(str(job.get("queue_id")))
        if status is None:
            # submitted by a run that died before recording the queue id: the
            # output file is the only sign that the job has finished
            gone = host.exists(f"{job['run_dir']}/{OUT_FILE}")
            running = False
        else:
            gone, running = not status.active, status.running
        if gone:
            ended = None
            if status is not None and (cmd := queue.detail_command(job["queue_id"])):
                detail = host.run(cmd)
                ended = queue.parse_detail(detail.exit_code, detail.stdout, detail.stderr)
            moved += ctx.db.set_state(job, JobState.RUN_FINISHED, queue_state=ended)
        elif running and job["state"] == str(JobState.SUBMITTED):
            moved += ctx.db.set_state(job, JobState.RUNNING)
    return moved


def step(ctx: ActionContext) -> int:
    jobs = ctx.db.find_jobs({"state": WATCHED, "lock_id": None})
    by_worker = {}
    for job in jobs:
        by_worker.setdefault(job["worker"], []).append(job)
    ctx.watched = set(by_worker)
    moved = 0
    now = time.monotonic()
    for name, group in by_worker.items():
        worker = ctx.project.workers.get(name)
        if worker is None:
            continue
        if now - ctx.last_poll.get(name, 0.0) < poll_interval(ctx, worker):
            continue
        ctx.last_poll[name] = now
        try:
            moved += check_worker(ctx, worker, group)
        except (HostError, QueueError) as exc:
            ctx.log.warning("worker %s: queue status failed: %s", name, exc)
    return moved
