"""``jfr job queue-out`` and ``jfr job files ls|get|delete``: a job's run folder on its worker."""

from __future__ import annotations

import argparse
import sys

from jfr_lib.cli.output import printable
from jfr_lib.cli.selection import get_job_or_fail
from jfr_lib.cli.values import count_type


def add_verbs(verbs) -> None:
    """Add ``queue-out`` and ``files`` to the verbs of ``jfr job``."""
    qout = verbs.add_parser("queue-out", help="print the end of the job's queue.out and queue.err",
                            description="Print the last lines the job wrote to its queue's output and "
                            "error files, read from the end of each in its run folder on the worker; "
                            "--all prints them whole.")  # fmt: skip
    _job_arg(qout)
    many = qout.add_mutually_exclusive_group()
    many.add_argument("-n", "--lines", metavar="N", type=count_type(), default=200,
                      help="print the last N lines of each file (default 200)")  # fmt: skip
    many.add_argument("--all", action="store_true", help="print the files whole")
    qout.set_defaults(func=run_queue_out)
    files = verbs.add_parser("files", help="list, fetch or delete the files of a job's run folder",
                             description="List, copy or delete the files in a job's run folder on its worker.")
    fverbs = files.add_subparsers(dest="files_verb", metavar="VERB")
    fverbs.required = True
    fls = fverbs.add_parser("ls", help="list the run folder", description="List the job's run folder.")
    _job_arg(fls)
    fls.set_defaults(func=run_files_ls)
    fget = fverbs.add_parser("get", help="copy files from the run folder",
                             description="Copy files from the job's run folder to a local folder.")
    fget.add_argument("job_id", metavar="ID", help="db_id, uuid or UUID:INDEX of the job")
    fget.add_argument("names", metavar="FILE", nargs="+", help="file names in the run folder")
    fget.add_argument("-d", "--dir", "-p", "--path", dest="dir", metavar="DIR", default=".",
                      help="destination folder (default: .)")  # fmt: skip
    fget.add_argument("-i", "--index", metavar="INDEX", type=count_type(), help="the job's index (with a uuid)")
    fget.set_defaults(func=run_files_get)
    fdel = fverbs.add_parser("delete", help="delete the run folder",
                             description="Delete the job's run folder on its worker, keeping the job and its "
                             "output. Only for COMPLETED, FAILED, STOPPED and USER_STOPPED jobs (a retry of a "
                             "REMOTE_ERROR job goes on in its folder); --all-states for any job the runner is not "
                             "working on. The job is locked meanwhile, so the runner never works in a folder "
                             "being deleted.")  # fmt: skip
    fdel.add_argument("job_id", metavar="ID", help="db_id, uuid or UUID:INDEX of the job")
    fdel.add_argument("-i", "--index", metavar="INDEX", type=count_type(), help="the job's index (with a uuid)")
    fdel.add_argument("-as", "--all-states", action="store_true",
                      help="also jobs in other states, but never one the runner is working on")  # fmt: skip
    fdel.add_argument("-f", "--force", action="store_true", help=argparse.SUPPRESS)  # jobflow-remote's: not needed
    fdel.set_defaults(func=run_files_delete)


def _job_arg(parser) -> None:
    parser.add_argument("job_id", metavar="ID", help="db_id, uuid or UUID:INDEX of the job")
    parser.add_argument("index", metavar="INDEX", nargs="?", type=count_type(),
                        help="the job's index, with a uuid (default: the highest)")  # fmt: skip


def _run_folder(args):
    """(job, worker, host) for the commands that look into a run folder."""
    from jfr_lib.config import load_project
    from jfr_lib.errors import NotFoundError
    from jfr_lib.hosts import get_host
    from jfr_lib.queue_db import open_queue_db

    project = load_project(args.project)
    with open_queue_db(project) as db:
        job = get_job_or_fail(db, args.job_id, args.index)
    if not job.get("run_dir"):
        raise NotFoundError(f"job {job['db_id']} ({job['state']}) has no run folder yet")
    worker = project.worker(job["worker"])
    return job, worker, get_host(worker)


def run_queue_out(args) -> int:
    from jfr_lib.rundir import QUEUE_ERR, QUEUE_OUT

    job, worker, host = _run_folder(args)
    try:
        for name in (QUEUE_OUT, QUEUE_ERR):
            print(f"==> {name} <==")
            sys.stdout.flush()
            _print_end(job, worker, host, f"{job['run_dir']}/{name}", None if args.all else args.lines)
    finally:
        host.close()
    return 0


#: A tail never reads more than this much of a file, whatever its lines (a file with no line breaks).
TAIL_MAX_BYTES = 64 * 1024 * 1024


def _print_end(job, worker, host, path: str, lines: int | None) -> None:
    """Print the last ``lines`` lines of a run-folder file (all of it for None), reading only its end.

    A job's output may be gigabytes and need not be UTF-8: a local file is read
    from its end here, a remote one through ``tail`` on its host, and bytes that
    are not UTF-8 are shown as U+FFFD.
    """
    import shlex

    from jfr_lib.daemon import tail
    from jfr_lib.errors import HostError

    if not host.exists(path):
        print("(missing)")
        return
    if worker.is_local:
        if lines is None:
            import codecs

            decoder = codecs.getincrementaldecoder("utf-8")("replace")
            with open(path, "rb") as f:
                while chunk := f.read(1 << 20):
                    sys.stdout.write(decoder.decode(chunk))
            text = decoder.decode(b"", final=True)
        else:
            text = "".join(line + "\n" for line in tail(path, lines, max_bytes=TAIL_MAX_BYTES))
    elif lines is None:
        text = host.read_text(path)
    else:
        result = host.run(f"tail -n {lines} -- {shlex.quote(path)}")
        if result.exit_code != 0:
            raise HostError(f"job {job['db_id']}: tail {path}: {result.stderr.strip()}")
        text = result.stdout
    sys.stdout.write(text if text.endswith("\n") or not text else text + "\n")


def run_files_ls(args) -> int:
    import shlex

    from jfr_lib.errors import NotFoundError

    job, worker, host = _run_folder(args)
    try:
        result = host.run(f"ls -la {shlex.quote(job['run_dir'])}")
    finally:
        host.close()
    if result.exit_code != 0:
        raise NotFoundError(f"job {job['db_id']}: {result.stderr.strip()}")
    sys.stdout.write(result.stdout)
    return 0


def run_files_get(args) -> int:
    from pathlib import Path

    from jfr_lib.cli.values import text_value
    from jfr_lib.errors import NotFoundError, UsageError

    for name in args.names:
        if "/" in text_value(name, "FILE") or name in (".", ".."):
            raise UsageError(f"{name!r}: give a file name inside the run folder")
    job, worker, host = _run_folder(args)
    target = Path(args.dir or ".")
    try:
        target.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UsageError(f"-d {printable(args.dir)}: cannot create the folder: {exc.strerror}") from None
    missing = []
    try:
        for name in args.names:
            try:
                host.get(f"{job['run_dir']}/{name}", str(target / name))
                print(target / name)
            except FileNotFoundError:
                missing.append(name)
    finally:
        host.close()
    if missing:
        raise NotFoundError(f"job {job['db_id']}: not in the run folder: {', '.join(missing)}")
    return 0


def run_files_delete(args) -> int:
    from jfr_lib.config import load_project
    from jfr_lib.queue_db import open_queue_db

    project = load_project(args.project)
    with open_queue_db(project) as db:
        job = get_job_or_fail(db, args.job_id, args.index)
        where = delete_run_folder(db, project, job, all_states=args.all_states)
    print(f"job {job['db_id']}: deleted {printable(where)}")
    return 0


#: States whose run folder may go without --all-states: nothing will run in it again.
CLEANABLE = ("COMPLETED", "FAILED", "STOPPED", "USER_STOPPED")


def delete_run_folder(db, project, job: dict, all_states: bool = False, host=None) -> str:
    """Remove a job's run folder on its worker; returns its path.

    Refused (StateError) while the runner works on the job, for a state outside
    :data:`CLEANABLE` unless ``all_states``, and for a folder that is not inside
    the worker's ``work_dir``. The job is locked while the folder goes (a
    compare-and-set on its state and lock), so no runner step starts in it.
    ``host``: an open host of the job's worker to reuse (else one is opened and closed).
    """
    import os
    import posixpath
    import socket
    import time

    from jfr_lib.errors import NotFoundError, StateError
    from jfr_lib.hosts import get_host
    from jfr_lib.states import RUNNING_STATES

    label = f"job {job['db_id']} ({printable(job.get('name'))})"
    run_dir = job.get("run_dir")
    if not run_dir:
        raise NotFoundError(f"{label} ({job['state']}) has no run folder")
    if job["state"] in [str(s) for s in RUNNING_STATES] or job.get("lock_id"):
        raise StateError(f"{label} is {job['state']} and the runner is working on it: stop it or wait")
    if not all_states and job["state"] not in CLEANABLE:
        why = " (a retry goes on in it)" if job["state"] == "REMOTE_ERROR" else ""
        raise StateError(f"{label} is {job['state']}{why}: only the run folders of {', '.join(CLEANABLE)} jobs "
                         "are deleted without --all-states")  # fmt: skip
    worker = project.worker(job["worker"])
    own = host is None
    host = get_host(worker) if own else host
    try:
        base = posixpath.normpath(worker.work_dir if worker.is_local else host.expand(worker.work_dir))
        if not posixpath.normpath(run_dir).startswith(base.rstrip("/") + "/"):
            raise StateError(f"{label}: its run folder {run_dir} is not inside the work_dir of worker "
                             f"{worker.name} ({base}): not deleted")  # fmt: skip
        if not host.exists(run_dir):
            raise NotFoundError(f"{label}: its run folder {run_dir} is gone already")
        lock = f"user-files:{socket.gethostname()}:{os.getpid()}"
        if not db.update_job(job["db_id"], {"lock_id": lock, "lock_time": time.time()}, state=job["state"],
                             lock_id=None):  # fmt: skip
            raise StateError(f"{label} changed or is being worked on by the runner; try again")
        try:
            host.remove(run_dir)
        finally:
            db.update_job(job["db_id"], {"lock_id": None, "lock_time": None}, lock_id=lock)
    finally:
        if own:
            host.close()
    return run_dir
