"""What a job's script runs, and what its run folder says of its submission: shared by the
submit step, the monitor and batch workers."""

from __future__ import annotations

import sys

from jfr_lib.config import ExecConfig
from jfr_lib.errors import JobFailure
from jfr_lib.rundir import SUBMIT_OUT


def exec_config_of(ctx, job: dict) -> ExecConfig | None:
    ec = job.get("exec_config")
    if ec is None:
        return None
    if isinstance(ec, str):
        if ec not in ctx.project.exec_config:
            raise JobFailure(f"exec_config {ec!r} is not in the project file")
        return ctx.project.exec_config[ec]
    known = {"modules", "export", "pre_run", "post_run"}
    extra = set(ec) - known
    if extra:
        raise JobFailure(f"exec_config has unknown keys: {', '.join(sorted(extra))}")
    return ExecConfig(name="inline", modules=list(ec.get("modules") or []),
                      export={str(k): str(v) for k, v in (ec.get("export") or {}).items()},
                      pre_run=ec.get("pre_run"), post_run=ec.get("post_run"))  # fmt: skip


def worker_command(worker, run_dir: str, notify=None, warm=None) -> str:
    """The command that runs the job; a local job also wakes the monitor when done,
    and a local shell job asks the runner's warm server to start it (``warm``; a batch
    job, its pilot's)."""
    import shlex

    python = worker.python or (sys.executable if worker.is_local else "python3")
    if worker.execution_cmd:  # e.g. a container wrapper; jobflow-remote's own command inside becomes ours
        command = worker.execution_cmd
        for theirs in ("jf -fe execution run {}", "jf execution run {}"):
            command = command.replace(theirs, f"{python} -m jfr_lib.worker {{}}")
        return command.replace("{}", shlex.quote(run_dir))
    if warm:
        from jfr_lib import warm_client

        here = worker.is_local and not worker.python  # this jfr_lib is the one the job's Python finds
        return warm_client.command(python, run_dir, warm, notify, here=here)
    cmd = f"{python} -m jfr_lib.worker {shlex.quote(run_dir)}"
    if notify:
        cmd += f" --notify {shlex.quote(str(notify))}"
    return cmd


def recorded_queue_id(host, queue, run_dir: str) -> str | None:
    """The queue id the run folder holds, if any: the queue's answer to the submission,
    else what the script wrote as it started (see :data:`jfr_lib.queue.QUEUE_ID_FILE`)."""
    from jfr_lib.rundir import QUEUE_ID_FILE

    try:
        text = host.read_text(f"{run_dir}/{SUBMIT_OUT}")
        return queue.parse_submit(0, text, "")
    except FileNotFoundError:
        pass
    except Exception:  # empty or partial: the answer did not get written whole
        pass
    try:
        return host.read_text(f"{run_dir}/{QUEUE_ID_FILE}").strip() or None
    except FileNotFoundError:
        return None
