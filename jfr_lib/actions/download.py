"""RUN_FINISHED -> DOWNLOADED: make the output files readable by the runner.

A local worker's run folder is read in place, so there is nothing to copy.
"""

from __future__ import annotations

import shlex
from pathlib import Path

from jfr_lib.actions import ActionContext, guarded
from jfr_lib.rundir import OUT_FILE, QUEUE_ERR, QUEUE_OUT, STORE_FILE
from jfr_lib.states import JobState

#: Files fetched from a remote run folder (those that exist).
FILES = (OUT_FILE, STORE_FILE, QUEUE_ERR, QUEUE_OUT)
#: queue.out/queue.err are fetched only up to this size (their end is what matters).
TAIL_BYTES = 64 * 1024


def local_dir(ctx: ActionContext, job: dict) -> Path:
    return ctx.project.base_dir / "downloads" / job["uuid"][:2] / f"{job['uuid']}_{job['index']}"


def _too_soon(ctx: ActionContext, worker, job: dict) -> bool:
    """With ``delay_download``, a job that ended less than that ago waits (a file system slow to show
    its files elsewhere); it is released to be taken again when the delay is over."""
    import time
    from datetime import datetime

    if not worker.delay_download:
        return False
    try:
        ended = datetime.fromisoformat(job["updated_on"]).timestamp()
    except (KeyError, TypeError, ValueError):
        return False
    due = ended + worker.delay_download
    if time.time() >= due:
        return False
    ctx.db.release_job(job["db_id"], ctx.lock_id, {"retry_time": due})
    return True


def download(ctx: ActionContext, job: dict) -> None:
    worker = ctx.worker(job["worker"])
    if _too_soon(ctx, worker, job):
        return
    if worker.is_local:
        ctx.advance(job, JobState.DOWNLOADED, local_dir=job["run_dir"])
        return
    host = ctx.host(worker)
    target = local_dir(ctx, job)
    target.mkdir(parents=True, exist_ok=True)
    for name in FILES:
        remote = f"{job['run_dir']}/{name}"
        try:
            if name in (QUEUE_OUT, QUEUE_ERR):
                result = host.run(f"tail -c {TAIL_BYTES} {shlex.quote(remote)}")
                if result.exit_code == 0:
                    (target / name).write_text(result.stdout)
            else:
                host.get(remote, str(target / name))
        except FileNotFoundError:
            (target / name).unlink(missing_ok=True)  # complete reports what is missing
    ctx.advance(job, JobState.DOWNLOADED, local_dir=str(target))


def step(ctx: ActionContext) -> int:
    moved = 0
    while (job := ctx.claim(JobState.RUN_FINISHED)) is not None:
        moved += guarded(ctx, job, lambda j: download(ctx, j))
    return moved
