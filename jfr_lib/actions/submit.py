"""UPLOADED -> SUBMITTED: write ``submit.sh`` and hand it to the worker's queue.

Before submitting, the step looks for signs of an earlier submission that died
before it was recorded (a queue id, the worker's started marker, the output
file): a job is never handed to the queue twice because of a crash. The
worker's own marker refuses a second run even if it were.
"""

from __future__ import annotations

from datetime import datetime, timezone

from jfr_lib.actions import ActionContext, guarded
from jfr_lib.actions.scripts import exec_config_of, recorded_queue_id, worker_command
from jfr_lib.rundir import OUT_FILE, SCRIPT_NAME, STARTED_FILE, SUBMIT_ERR, SUBMIT_OUT
from jfr_lib.states import JobState
from jfr_lib.wakeup import fifo_path


def resources_of(worker, job: dict):
    """The job's resources over the worker's defaults (a QResources replaces them)."""
    res = job.get("resources")
    if isinstance(res, dict) and res.get("@class") == "QResources":
        return res
    merged = dict(worker.resources or {})
    merged.update(res or {})
    return merged


def warm_socket(project, worker):
    """The warm server's socket for a job of ``worker``, or None when it starts cold."""
    if (worker.is_local and worker.scheduler_type == "shell" and project.runner.warm_start and not worker.is_batch
            and not worker.execution_cmd):  # fmt: skip
        from jfr_lib.warm import socket_path

        return socket_path(project.base_dir)
    return None


def submit(ctx: ActionContext, job: dict) -> None:
    worker = ctx.worker(job["worker"])
    if worker.is_batch:
        from jfr_lib.actions.batch import submit_job

        submit_job(ctx, worker, job)
        return
    host = ctx.host(worker)
    run_dir = job["run_dir"]
    if job.get("queue_id"):
        ctx.advance(job, JobState.SUBMITTED)
        return
    queue = ctx.queue(worker)
    recorded = recorded_queue_id(host, queue, run_dir)
    if recorded:  # submitted by an attempt that died before the database heard of it
        ctx.log.warning("job %s: found queue id %s in its run folder; not submitting again",
                        job["db_id"], recorded)  # fmt: skip
        ctx.advance(job, JobState.SUBMITTED, queue_id=recorded, **_proc_start(worker, recorded))
        return
    if host.exists(f"{run_dir}/{STARTED_FILE}") or host.exists(f"{run_dir}/{OUT_FILE}"):
        ctx.log.warning("job %s was already started, its queue id unknown: watching its run folder", job["db_id"])
        ctx.advance(job, JobState.SUBMITTED)
        return
    notify = fifo_path(ctx.project.base_dir, "monitor") if worker.is_local else None
    run_job = worker_command(worker, run_dir, notify, warm_socket(ctx.project, worker))
    script = queue.script(
        run_job, run_dir, resources=resources_of(worker, job),
        exec_config=exec_config_of(ctx, job), pre_run=worker.pre_run, post_run=worker.post_run,
    )  # fmt: skip
    host.write_text(f"{run_dir}/{SCRIPT_NAME}", script)
    # the queue's answer is kept in the run folder the moment it arrives
    # umask: the queue's own files (queue.out/err) are created private too
    command = (f"umask 077; {{ {queue.submit_command(SCRIPT_NAME)} ; }} > {SUBMIT_OUT} 2> {SUBMIT_ERR}; rc=$?; "
               f"cat {SUBMIT_OUT}; cat {SUBMIT_ERR} >&2; exit $rc")  # fmt: skip
    result = host.run(command, cwd=run_dir)
    queue_id = queue.parse_submit(result.exit_code, result.stdout, result.stderr)
    stamp = datetime.now(timezone.utc).isoformat(timespec="milliseconds")
    ctx.advance(job, JobState.SUBMITTED, queue_id=queue_id, submitted_on=stamp, **_proc_start(worker, queue_id))


def _proc_start(worker, queue_id) -> dict:
    """For a local shell job, when its process started: the monitor tells the pid from a reuse of it."""
    if not (worker.is_local and worker.scheduler_type == "shell"):
        return {}
    from jfr_lib.proc import process_start

    try:
        return {"queue_proc_start": process_start(int(queue_id))}
    except ValueError:
        return {}


def step(ctx: ActionContext) -> int:
    moved = 0
    while (job := ctx.claim(JobState.UPLOADED)) is not None:
        moved += guarded(ctx, job, lambda j: submit(ctx, j))
    return moved
