"""SUBMITTED/RUNNING -> RUNNING/RUN_FINISHED: one queue query per worker per poll.

Local shell jobs are watched through pidfds instead (:class:`jfr_lib.proc.ProcessWatch`):
the process's end wakes the monitor at once, and no ``ps`` runs at all.
Jobs are not locked here: each change is a compare-and-set from the state that
was read, so a user's pause or stop in between simply wins.
"""

from __future__ import annotations

import os
import time

from jfr_lib.actions import ActionContext
from jfr_lib.errors import HostError, QueueError
from jfr_lib.states import JobState
from jfr_lib.worker import OUT_FILE

WATCHED = [str(JobState.SUBMITTED), str(JobState.RUNNING)]
#: After a local job says it finished, look this often for this long: the
#: process is gone from the queue a few milliseconds after it wrote its output.
BURST_INTERVAL, BURST_SECONDS = 0.03, 3.0


def _watch(ctx: ActionContext):
    """The pidfds of this monitor's local shell jobs (made on first use)."""
    if getattr(ctx, "processes", None) is None:
        from jfr_lib.proc import ProcessWatch

        ctx.processes = ProcessWatch()
    return ctx.processes


def by_pidfd(ctx: ActionContext, worker) -> bool:
    """Whether the jobs of ``worker`` are watched through pidfds (local shell jobs on Linux)."""
    return worker.is_local and worker.scheduler_type == "shell" and _watch(ctx).supported


def wait_fds(ctx: ActionContext) -> list:
    """File descriptors whose readiness should wake the monitor: the watched jobs' pidfds."""
    return _watch(ctx).fds()


def poll_interval(ctx: ActionContext, worker) -> float:
    if by_pidfd(ctx, worker):
        return 0.0  # a look costs a system call per job: whenever the monitor wakes
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
    workers = [ctx.project.workers[n] for n in getattr(ctx, "watched", ()) if n in ctx.project.workers]
    waits = [ctx.last_poll.get(w.name, 0.0) + poll_interval(ctx, w) - now
             for w in workers if not by_pidfd(ctx, w)]  # pidfds wake the monitor themselves  # fmt: skip
    return max(0.0, min(waits)) if waits else ctx.project.runner.idle_sleep


def check_processes(ctx: ActionContext, jobs: list) -> int:
    """Local shell jobs: a job whose process has ended is RUN_FINISHED; one that runs is RUNNING."""
    watch = _watch(ctx)
    moved = 0
    for job in jobs:
        if not job.get("queue_id"):
            # submitted by a run that died before recording the queue id: the
            # output file is the only sign that the job has finished
            if os.path.exists(f"{job['run_dir']}/{OUT_FILE}"):
                moved += ctx.db.set_state(job, JobState.RUN_FINISHED)
            continue
        if not watch.alive(job["db_id"], int(job["queue_id"]), job.get("queue_proc_start")):
            moved += ctx.db.set_state(job, JobState.RUN_FINISHED)
        elif job["state"] == str(JobState.SUBMITTED):
            moved += ctx.db.set_state(job, JobState.RUNNING)
    return moved


def check_worker(ctx: ActionContext, worker, jobs: list) -> int:
    if by_pidfd(ctx, worker):
        return check_processes(ctx, jobs)
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
    _watch(ctx).keep_only({j["db_id"] for j in jobs})  # ended, stopped or locked jobs: no longer waited for
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
