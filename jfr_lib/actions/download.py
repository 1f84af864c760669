"""RUN_FINISHED -> DOWNLOADED: make the output files readable by the runner.

A local worker's run folder is read in place, so there is nothing to copy.
"""

from __future__ import annotations

from jfr_lib.actions import ActionContext, guarded
from jfr_lib.states import JobState


def download(ctx: ActionContext, job: dict) -> None:
    worker = ctx.worker(job["worker"])
    if not worker.is_local:
        from jfr_lib.errors import HostError

        raise HostError(f"worker {worker.name}: downloads from remote workers are not supported yet")
    ctx.advance(job, JobState.DOWNLOADED, local_dir=job["run_dir"])


def step(ctx: ActionContext) -> int:
    moved = 0
    while (job := ctx.claim(JobState.RUN_FINISHED)) is not None:
        moved += guarded(ctx, job, lambda j: download(ctx, j))
    return moved
