"""Everything the job page shows: the job's settings, inputs, output and run folder.

The output comes from the project's JobStore as ``jfr job output`` reads it; the
ends of ``queue.out``/``queue.err`` and the listing of the run folder are read on
the job's worker as ``jfr job queue-out`` and ``jfr job files ls`` read them (a
local file from its end, a remote one through ``tail`` on its host, reading at
most ``TAIL_MAX_BYTES`` either way). Only regular files are read: a symbolic link
or a pipe in the run folder is refused, never followed nor waited on. Large texts
are cut, saying so.
"""

from __future__ import annotations

import json

from jfr_lib.errors import NotFoundError, UsageError

#: Settings shown first on the job page, in this order.
SETTINGS = ("db_id", "uuid", "index", "name", "state", "previous_state", "worker", "exec_config", "resources",
            "priority", "metadata", "flow_uuid", "parents", "queue_id", "queue_state", "host", "run_dir",
            "pilot", "pilot_queue_id", "failed_step", "step_attempts", "retry_time", "reruns", "lock_id",
            "created_on", "updated_on", "submitted_on", "start_time", "end_time", "run_seconds")  # fmt: skip
#: Text longer than this is cut (outputs, inputs, file tails).
MAX_TEXT = 200_000
TAIL_LINES = 200


def _cut(text: str) -> str:
    if len(text) <= MAX_TEXT:
        return text
    return text[:MAX_TEXT] + f"\n... ({len(text) - MAX_TEXT} more characters not shown)"


def _json(value) -> str:
    from monty.json import MontyEncoder

    return _cut(json.dumps(value, cls=MontyEncoder, indent=2, default=str))


def get_job(db, db_id: int) -> dict:
    job = db.get_job(db_id=db_id)
    if job is None:
        raise NotFoundError(f"no job {db_id}")
    return job


def job_details(db, project, db_id: int) -> dict:
    """The job's settings, inputs, error and traceback, its flow, and the actions its state allows."""
    from jfr_lib.gui.actions import offered

    job = get_job(db, db_id)
    spec = job.get("job") or {}
    fn = spec.get("function") or {}
    flow = db.get_flow(uuid=job["flow_uuid"])
    settings = {k: job.get(k) for k in SETTINGS if job.get(k) not in (None, "", [], {})}
    extra = {k: v for k, v in job.items() if k not in SETTINGS and k not in ("job", "traceback", "error")
             and v not in (None, "", [], {})}  # fmt: skip
    return {
        "db_id": job["db_id"], "name": job.get("name"), "state": job["state"], "uuid": job["uuid"],
        "index": job["index"], "worker": job.get("worker"), "priority": job.get("priority"),
        "function": f"{fn.get('@module', '?')}.{fn.get('@callable', '?')}",
        "settings": settings, "other": extra,
        "inputs": _json({"args": spec.get("function_args") or [], "kwargs": spec.get("function_kwargs") or {}}),
        "error": job.get("error"), "traceback": job.get("traceback"),
        "flow": None if flow is None else {"db_id": flow["db_id"], "name": flow.get("name"), "state": flow["state"]},
        "has_run_dir": bool(job.get("run_dir")), "actions": offered(job),
    }  # fmt: skip


def job_output(db, project, db_id: int) -> dict:
    """The output the job stored in the JobStore (``jfr job output``), as indented JSON."""
    from jfr_lib.jobstore import get_jobstore, read_output

    job = get_job(db, db_id)
    store = get_jobstore(project)
    try:
        output = read_output(project, store, job["uuid"], job["index"], f"job {db_id} ({job['state']})")
    finally:
        store.close()
    return {"db_id": db_id, "output": _json(output)}


def _check_name(name: str) -> str:
    if not name or "/" in name or name in (".", "..") or "\0" in name:
        raise UsageError(f"{name!r}: give a file name inside the run folder")
    return name


#: Exit code of the remote tail when the file is not a regular one.
_NOT_REGULAR = 3


def _tail(job: dict, worker, host, path: str, lines: int) -> str | None:
    """The last ``lines`` lines of a run-folder file (at most ``TAIL_MAX_BYTES`` read), or None when
    it is missing; a one-line UsageError for a symlink, a FIFO or anything but a regular file."""
    import shlex

    from jfr_lib.cli.job_files import TAIL_MAX_BYTES
    from jfr_lib.errors import HostError

    refusal = f"job {job['db_id']}: {path}: not a regular file (a link, a pipe...): only regular files are shown"
    if worker.is_local:
        return _local_tail(path, lines, TAIL_MAX_BYTES, refusal)
    if not host.exists(path):
        return None
    quoted = shlex.quote(path)
    result = host.run(f"if [ -L {quoted} ] || [ ! -f {quoted} ]; then exit {_NOT_REGULAR}; fi; "
                      f"tail -c {TAIL_MAX_BYTES} -- {quoted} | tail -n {int(lines)}")  # fmt: skip
    if result.exit_code == _NOT_REGULAR:
        raise UsageError(refusal)
    if result.exit_code != 0:
        raise HostError(f"job {job['db_id']}: tail {path}: {result.stderr.strip()}")
    return result.stdout


def _local_tail(path: str, lines: int, max_bytes: int, refusal: str) -> str | None:
    """:func:`_tail` of a local file: opened without following a link, without waiting on a pipe."""
    import errno
    import os
    import stat

    from jfr_lib.daemon import tail

    if lines <= 0:
        return ""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except FileNotFoundError:
        return None
    except OSError as exc:
        if exc.errno == errno.ELOOP:  # the last part of the path is a symbolic link
            raise UsageError(refusal) from None
        raise
    try:
        regular = stat.S_ISREG(os.fstat(fd).st_mode)
    except OSError:
        os.close(fd)
        raise
    if not regular:
        os.close(fd)
        raise UsageError(refusal)
    return "".join(line + "\n" for line in tail(fd, lines, max_bytes=max_bytes))  # tail's open() takes the fd


def job_files(db, project, db_id: int, name: str | None = None, lines: int = TAIL_LINES) -> dict:
    """The run folder's listing and the ends of ``queue.out`` and ``queue.err`` (or of the file ``name``)."""
    import shlex

    from jfr_lib.hosts import get_host
    from jfr_lib.rundir import QUEUE_ERR, QUEUE_OUT

    job = get_job(db, db_id)
    if not job.get("run_dir"):
        raise NotFoundError(f"job {job['db_id']} ({job['state']}) has no run folder yet")
    names = [_check_name(name)] if name is not None else [QUEUE_OUT, QUEUE_ERR]
    worker = project.worker(job["worker"])
    host = get_host(worker)
    try:
        tails = {n: _tail(job, worker, host, f"{job['run_dir']}/{n}", lines) for n in names}
        listing = None
        if name is None:
            result = host.run(f"ls -la {shlex.quote(job['run_dir'])}")
            listing = result.stdout if result.exit_code == 0 else result.stderr.strip()
    finally:
        host.close()
    return {"db_id": db_id, "run_dir": job["run_dir"], "listing": listing, "files": _file_names(listing),
            "tails": {n: None if t is None else _cut(t) for n, t in tails.items()}, "lines": lines}  # fmt: skip


def _file_names(listing: str | None) -> list:
    """The names of the regular files in an ``ls -la`` listing."""
    if not listing:
        return []
    out = []
    for line in listing.splitlines():
        parts = line.split(None, 8)
        if len(parts) == 9 and line.startswith("-"):
            out.append(parts[8])
    return out
