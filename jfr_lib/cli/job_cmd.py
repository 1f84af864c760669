"""``jfr job``: list jobs, show one, print its output."""

from __future__ import annotations

import sys

from jfr_lib.cli.output import add_json_flag, print_json, print_table

#: Keys of ``jfr job list --json``, in order (a stable interface for scripts).
LIST_KEYS = ("db_id", "uuid", "index", "name", "state", "worker", "priority", "flow_uuid",
             "queue_id", "created_on", "updated_on", "error")  # fmt: skip


def add_arguments(sub) -> None:
    p = sub.add_parser("job", help="list and inspect jobs",
                       description="List jobs, show their details and print their outputs. "
                       "A job is named by its db_id (a number) or its uuid.")  # fmt: skip
    verbs = p.add_subparsers(dest="verb", metavar="VERB")
    verbs.required = True
    lst = verbs.add_parser("list", help="list jobs", description="List jobs, newest last.")
    lst.add_argument("-s", "--state", metavar="STATE", action="append",
                     help="only jobs in this state (repeat or separate with commas)")  # fmt: skip
    lst.add_argument("-n", "--limit", metavar="N", type=int, default=0,
                     help="show at most the last N jobs")  # fmt: skip
    add_json_flag(lst)
    lst.set_defaults(func=run_list)
    info = verbs.add_parser("info", help="show everything recorded about a job",
                            description="Show the job document: states, times, run folder, "
                            "queue id, error and traceback.")  # fmt: skip
    info.add_argument("job_id", metavar="ID", help="db_id or uuid of the job")
    add_json_flag(info)
    info.set_defaults(func=run_info)
    out = verbs.add_parser("output", help="print the output of a job",
                           description="Print the output the job stored in the JobStore.")
    out.add_argument("job_id", metavar="ID", help="db_id or uuid of the job")
    add_json_flag(out)
    out.set_defaults(func=run_output)
    for verb, text, desc in (
        ("retry", "retry a job stopped by REMOTE_ERROR",
         "Put a REMOTE_ERROR job back in the state where its step failed, with a fresh retry budget."),
        ("pause", "hold a waiting or ready job", "Pause a WAITING or READY job: the runner leaves it alone."),
        ("resume", "release a paused job", "Resume a PAUSED job: READY when its parents are done, else WAITING."),
    ):  # fmt: skip
        v = verbs.add_parser(verb, help=text, description=desc)
        v.add_argument("job_id", metavar="ID", help="db_id or uuid of the job")
        v.set_defaults(func=run_control, operation=verb)
    stop = verbs.add_parser("stop", help="stop a job, cancelling it in its queue",
                            description="Stop a job that has not finished: a submitted job is "
                            "cancelled in its queue; the job becomes USER_STOPPED.")  # fmt: skip
    stop.add_argument("job_id", metavar="ID", help="db_id or uuid of the job")
    stop.set_defaults(func=run_control, operation="stop")
    qout = verbs.add_parser("queue-out", help="print the job's queue.out and queue.err",
                            description="Print what the job wrote to its queue's output and error "
                            "files, read from its run folder on the worker.")  # fmt: skip
    qout.add_argument("job_id", metavar="ID", help="db_id or uuid of the job")
    qout.set_defaults(func=run_queue_out)
    files = verbs.add_parser("files", help="list or fetch the files of a job's run folder",
                             description="List or copy the files in a job's run folder on its worker.")
    fverbs = files.add_subparsers(dest="files_verb", metavar="VERB")
    fverbs.required = True
    fls = fverbs.add_parser("ls", help="list the run folder", description="List the job's run folder.")
    fls.add_argument("job_id", metavar="ID", help="db_id or uuid of the job")
    fls.set_defaults(func=run_files_ls)
    fget = fverbs.add_parser("get", help="copy files from the run folder",
                             description="Copy files from the job's run folder to a local folder.")
    fget.add_argument("job_id", metavar="ID", help="db_id or uuid of the job")
    fget.add_argument("names", metavar="FILE", nargs="+", help="file names in the run folder")
    fget.add_argument("-d", "--dir", metavar="DIR", default=".", help="destination folder (default: .)")
    fget.set_defaults(func=run_files_get)
    setp = verbs.add_parser("set", help="change a setting of a job",
                            description="Change a setting of a job that has not started.")
    what = setp.add_subparsers(dest="setting", metavar="SETTING")
    what.required = True
    prio = what.add_parser("priority", help="change the priority (higher runs first)",
                           description="Change the priority of a WAITING, READY or PAUSED job.")
    prio.add_argument("job_id", metavar="ID", help="db_id or uuid of the job")
    prio.add_argument("value", metavar="PRIORITY", type=int, help="the new priority")
    prio.set_defaults(func=run_control, operation="priority")


def _states(values) -> list:
    from jfr_lib.errors import UsageError
    from jfr_lib.states import JobState

    out = []
    for value in values or []:
        for name in value.split(","):
            name = name.strip().upper()
            if name not in JobState.__members__:
                raise UsageError(f"unknown state {name!r} (one of: {', '.join(JobState.__members__)})")
            out.append(name)
    return out


def get_job_or_fail(db, job_id: str) -> dict:
    from jfr_lib.errors import NotFoundError

    job = db.get_job(db_id=int(job_id)) if job_id.isdigit() else db.get_job(uuid=job_id)
    if job is None:
        raise NotFoundError(f"no job {job_id}")
    return job


def run_list(args) -> int:
    from jfr_lib.config import load_project
    from jfr_lib.queue_db import open_queue_db

    project = load_project(args.project)
    query = {}
    states = _states(args.state)
    if states:
        query["state"] = states
    with open_queue_db(project) as db:
        if args.limit:
            jobs = db.find_jobs(query, sort=[("db_id", -1)], limit=args.limit)[::-1]
        else:
            jobs = db.find_jobs(query, sort=[("db_id", 1)])
    rows = [{k: j.get(k) for k in LIST_KEYS} for j in jobs]
    if args.json:
        print_json(rows)
    else:
        print_table(rows, [("db_id", "ID"), ("name", "NAME"), ("state", "STATE"),
                           ("worker", "WORKER"), ("priority", "PRIO"), ("updated_on", "UPDATED"),
                           ("uuid", "UUID"), ("index", "IDX")], empty="no jobs")  # fmt: skip
    return 0


def run_info(args) -> int:
    from jfr_lib.config import load_project
    from jfr_lib.queue_db import open_queue_db

    with open_queue_db(load_project(args.project)) as db:
        job = get_job_or_fail(db, args.job_id)
    if args.json:
        print_json(job)
        return 0
    skip = {"job", "traceback"}
    width = max(len(k) for k in job)
    for key, value in job.items():
        if key not in skip and value not in (None, "", [], {}):
            print(f"{key.ljust(width)}  {value}")
    fn = (job.get("job") or {}).get("function") or {}
    print(f"{'function'.ljust(width)}  {fn.get('@module')}.{fn.get('@callable')}")
    if job.get("traceback"):
        print("traceback:\n" + job["traceback"].rstrip())
    return 0


def run_output(args) -> int:
    import json

    from jfr_lib.config import load_project
    from jfr_lib.errors import NotFoundError
    from jfr_lib.jobstore import get_jobstore, store_lock
    from jfr_lib.queue_db import open_queue_db

    project = load_project(args.project)
    with open_queue_db(project) as db:
        job = get_job_or_fail(db, args.job_id)
    store = get_jobstore(project)
    try:
        with store_lock(project, exclusive=False):
            output = store.get_output(job["uuid"], which=job["index"], load=True)
    except ValueError:
        raise NotFoundError(f"job {args.job_id} ({job['state']}) has no output yet") from None
    from monty.json import MontyEncoder

    print(json.dumps(output, cls=MontyEncoder, indent=None if args.json else 2))
    return 0


def run_control(args) -> int:
    from jfr_lib import control
    from jfr_lib.config import load_project
    from jfr_lib.queue_db import open_queue_db

    project = load_project(args.project)
    with open_queue_db(project) as db:
        db.project = project
        job = get_job_or_fail(db, args.job_id)
        if args.operation == "stop":
            new = control.stop(db, db.project, job)
            print(f"job {job['db_id']}: {job['state']} -> {new['state']}")
            return 0
        if args.operation == "priority":
            control.set_priority(db, job, args.value)
            print(f"job {job['db_id']}: priority {args.value}")
            return 0
        new = getattr(control, args.operation)(db, job)
    print(f"job {job['db_id']}: {job['state']} -> {new['state']}")
    return 0


def _run_folder(args):
    """(job, worker, host) for the commands that look into a run folder."""
    from jfr_lib.config import load_project
    from jfr_lib.errors import NotFoundError
    from jfr_lib.hosts import get_host
    from jfr_lib.queue_db import open_queue_db

    project = load_project(args.project)
    with open_queue_db(project) as db:
        job = get_job_or_fail(db, args.job_id)
    if not job.get("run_dir"):
        raise NotFoundError(f"job {job['db_id']} ({job['state']}) has no run folder yet")
    worker = project.worker(job["worker"])
    return job, worker, get_host(worker)


def run_queue_out(args) -> int:
    from jfr_lib.queue import QUEUE_ERR, QUEUE_OUT

    job, worker, host = _run_folder(args)
    try:
        for name in (QUEUE_OUT, QUEUE_ERR):
            try:
                text = host.read_text(f"{job['run_dir']}/{name}")
            except FileNotFoundError:
                text = "(missing)\n"
            print(f"==> {name} <==")
            sys.stdout.write(text if text.endswith("\n") or not text else text + "\n")
    finally:
        host.close()
    return 0


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

    from jfr_lib.errors import NotFoundError, UsageError

    job, worker, host = _run_folder(args)
    target = Path(args.dir)
    target.mkdir(parents=True, exist_ok=True)
    missing = []
    try:
        for name in args.names:
            if "/" in name or name in ("", ".", ".."):
                raise UsageError(f"{name!r}: give a file name inside the run folder")
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
