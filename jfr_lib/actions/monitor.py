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
from jfr_lib.errors import HostError, LoginNeeded, QueueError
from jfr_lib.proc import process_start
from jfr_lib.rundir import OUT_FILE
from jfr_lib.states import JobState

WATCHED = [str(JobState.SUBMITTED), str(JobState.RUNNING)]
#: After a local job says it finished, look this often for this long: the
#: process is gone from the queue a few milliseconds after it wrote its output.
BURST_INTERVAL, BURST_SECONDS = 0.03, 3.0
#: How often a batch worker's exchange folder is read at most, out of a burst (the pilots' queue
#: states are asked at the worker's poll interval).
BATCH_INTERVAL = 1.0


def _watch(ctx: ActionContext):
    """The pidfds of this monitor's local shell jobs (made on first use)."""
    if getattr(ctx, "processes", None) is None:
        from jfr_lib.proc import ProcessWatch

        ctx.processes = ProcessWatch()
    return ctx.processes


def by_pidfd(ctx: ActionContext, worker) -> bool:
    """Whether the jobs of ``worker`` are watched through pidfds (local shell jobs on Linux)."""
    return worker.is_local and worker.scheduler_type == "shell" and not worker.is_batch and _watch(ctx).supported


def wait_fds(ctx: ActionContext) -> list:
    """File descriptors whose readiness should wake the monitor: the watched jobs' pidfds."""
    return _watch(ctx).fds()


def poll_interval(ctx: ActionContext, worker) -> float:
    if by_pidfd(ctx, worker):
        return 0.0  # a look costs a system call per job: whenever the monitor wakes
    if (worker.is_local or worker.is_batch) and time.monotonic() - ctx.woken_at < BURST_SECONDS:
        return BURST_INTERVAL  # a batch worker's folder is one listing: read it often just after a move
    if worker.is_batch:
        return min(BATCH_INTERVAL, worker.poll_interval or BATCH_INTERVAL)
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


def recover_queue_id(ctx: ActionContext, worker, job: dict) -> str | None:
    """A job recorded without its queue id (the runner was killed as it submitted it): the id
    from its run folder, recorded now; None while the folder holds none."""
    from jfr_lib.actions.scripts import recorded_queue_id
    from jfr_lib.actions.submit import _proc_start

    queue_id = recorded_queue_id(ctx.host(worker), ctx.queue(worker), job["run_dir"])
    if queue_id:
        changes = {"queue_id": queue_id, **_proc_start(worker, queue_id)}
        if ctx.db.update_job(job["db_id"], changes, state=job["state"]):
            ctx.log.info("job %s: queue id %s found in its run folder", job["db_id"], queue_id)
            job.update(changes)
    return queue_id


def local_worker(job: dict) -> tuple:
    """(pid, start) of the job's own process, from its started marker, when it ran on this machine."""
    import socket

    from jfr_lib.rundir import STARTED_FILE, read_started

    try:
        with open(f"{job['run_dir']}/{STARTED_FILE}") as f:
            host, pid, start = read_started(f.read())
    except (OSError, ValueError):
        return None, None
    return (pid, start) if host == socket.gethostname() else (None, None)


def check_processes(ctx: ActionContext, worker, jobs: list) -> int:
    """Local shell jobs: RUNNING while the script or the job's own process runs, then RUN_FINISHED.

    The job's process may outlive its script (a killed script leaves a cold
    worker running): the job ends with the last of them.
    """
    watch = _watch(ctx)
    moved = 0
    for job in jobs:
        queue_id = job.get("queue_id") or recover_queue_id(ctx, worker, job)
        alive = bool(queue_id) and watch.alive(job["db_id"], int(queue_id), job.get("queue_proc_start"))
        pid, start = local_worker(job) if not alive else (None, None)
        if not alive and pid is not None:
            alive = watch.alive((job["db_id"], "worker"), pid, start)
        if alive:
            if job["state"] == str(JobState.SUBMITTED):
                moved += ctx.db.set_state(job, JobState.RUNNING)
        elif queue_id or pid is not None or os.path.exists(f"{job['run_dir']}/{OUT_FILE}"):
            moved += ctx.db.set_state(job, JobState.RUN_FINISHED)
        # else: no queue id, no start, no output yet: nothing says it ran or ended
    return moved


def check_worker(ctx: ActionContext, worker, jobs: list) -> int:
    if worker.is_batch:
        from jfr_lib.actions.batch import check_batch_worker

        return check_batch_worker(ctx, worker, jobs)
    if by_pidfd(ctx, worker):
        return check_processes(ctx, worker, jobs)
    host = ctx.host(worker)
    queue = ctx.queue(worker)
    for job in jobs:
        if not job.get("queue_id"):
            recover_queue_id(ctx, worker, job)
    with_id = [j for j in jobs if j.get("queue_id")]
    statuses = {}
    if with_id:
        ids = [j["queue_id"] for j in with_id]
        result = host.run(queue.status_command(ids, worker.scheduler_username))
        statuses = queue.parse_status(result.exit_code, result.stdout, result.stderr, ids)
    moved = 0
    for job in jobs:
        status = statuses.get(str(job.get("queue_id")))
        if status is None:  # no queue id anywhere: the output file is the only sign of an end
            gone, running = host.exists(f"{job['run_dir']}/{OUT_FILE}"), False
        else:
            gone, running = not status.active, status.running
        if gone and worker.is_local:
            pid, start = local_worker(job)
            if pid is not None and process_start(pid) == start:  # its script died, the job runs on
                gone, running = False, True
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
    for name, worker in ctx.project.workers.items():  # live pilots are watched even with no job in them
        if worker.is_batch and name not in by_worker:
            from jfr_lib import batch

            if any(batch.alive(r) for r in batch.read_pilots(ctx.db, name).values()):
                by_worker[name] = []
    ctx.watched = set(by_worker)
    # ended, stopped or locked jobs are no longer waited for
    _watch(ctx).keep_only({j["db_id"] for j in jobs} | {(j["db_id"], "worker") for j in jobs})
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
        except LoginNeeded as exc:
            ctx.login_needed(name, exc)
            continue
        except (HostError, QueueError) as exc:
            ctx.log.warning("worker %s: queue status failed: %s", name, exc)
            continue
        if name in ctx.login_marked:
            ctx.logged_in_again(name)
    return moved
