"""``jfr job``: list jobs, show one, print its output, act on them.

``set``, ``set-state`` (:mod:`jfr_lib.cli.job_set`), ``queue-out`` and ``files``
(:mod:`jfr_lib.cli.job_files`) are verbs of this group too.
"""

from __future__ import annotations

import argparse
import json
import sys

from jfr_lib.cli import compat
from jfr_lib.cli.output import add_json_flag, print_json, print_table, printable, queue_cell
from jfr_lib.cli.selection import SORT_KEYS, add_filters, confirm, count_jobs, get_job_or_fail, select_jobs
from jfr_lib.cli.values import count_type

#: Keys of ``jfr job list --json``, in order (a stable interface for scripts).
LIST_KEYS = ("db_id", "uuid", "index", "name", "state", "worker", "priority", "flow_uuid",
             "queue_id", "created_on", "updated_on", "error", "pilot", "pilot_queue_id")  # fmt: skip


def add_arguments(sub) -> None:
    from jfr_lib.cli import job_files, job_set

    p = sub.add_parser("job", help="list, inspect and act on jobs",
                       description="List jobs, show their details and print their outputs; retry, pause, "
                       "resume, stop, rerun, delete them or change their settings. A job is named by its db_id "
                       "(a number), its uuid, or UUID:INDEX.")  # fmt: skip
    verbs = p.add_subparsers(dest="verb", metavar="VERB")
    verbs.required = True
    lst = verbs.add_parser("list", help="list jobs",
                           description="List jobs matching the filters, oldest first (the newest "
                           "100 unless -n says otherwise). -n is the number of jobs, as in jfr's other "
                           "listings; jobflow-remote's -n (a name) is --name here.")  # fmt: skip
    add_filters(lst, ids=False, short_name=False)
    lst.add_argument("-n", "--limit", "-m", "--max-results", dest="limit", metavar="N", type=compat.limit_type("jobs"),
                     default=100, help="show at most the last N jobs (0: all; default 100)")  # fmt: skip
    lst.add_argument("--sort", metavar="KEY", choices=SORT_KEYS, default="db_id",
                     help=f"order by one of: {', '.join(SORT_KEYS)} (default db_id)")  # fmt: skip
    lst.add_argument("-revs", "--reverse-sort", action="store_true",
                     help="the first N jobs in that order, not the last")  # fmt: skip
    lst.add_argument("-lf", "--latest-flow", metavar="N", type=count_type(1),
                     help="only jobs of the N most recently created flows")  # fmt: skip
    lst.add_argument("--count", action="store_true", help="print only the number of matching jobs")
    add_json_flag(lst)
    lst.set_defaults(func=run_list)
    info = verbs.add_parser("info", help="show everything recorded about a job",
                            description="Show the job document: states, times, run folder, queue id, error and "
                            "traceback. The job is named by ID (and INDEX with a uuid), or by its queue id "
                            "with --pid.")  # fmt: skip
    info.add_argument("job_id", metavar="ID", nargs="?", help="db_id, uuid or UUID:INDEX of the job")
    info.add_argument("index", metavar="INDEX", nargs="?", type=count_type(), help="the job's index, with a uuid")
    info.add_argument("--pid", metavar="QUEUE_ID", help="the job with this queue id (a SLURM job id, a pid...)")
    info.add_argument("-n", "--show-none", action="store_true", help="also show the fields that are empty")
    add_json_flag(info)
    compat.add_hidden(info, query=False)
    info.set_defaults(func=run_info)
    out = verbs.add_parser("output", help="print the output of a job",
                           description="Print the output the job stored in the JobStore.")
    out.add_argument("job_id", metavar="ID", help="db_id, uuid or UUID:INDEX of the job")
    out.add_argument("index", metavar="INDEX", nargs="?", type=count_type(), help="the job's index, with a uuid")
    add_json_flag(out)
    out.set_defaults(func=run_output)
    actions = (
        ("retry", "retry jobs stopped by REMOTE_ERROR",
         "Put REMOTE_ERROR jobs back in the state where their step failed, with a fresh retry budget."),
        ("pause", "hold waiting or ready jobs", "Pause WAITING or READY jobs: the runner leaves them alone."),
        ("resume", "release paused jobs", "Resume PAUSED jobs: READY when their parents are done, else WAITING."),
        ("stop", "stop jobs, cancelling them in their queue",
         "Stop jobs that have not finished: submitted jobs are cancelled in their queue; they become "
         "USER_STOPPED."),
        ("rerun", "run jobs again",
         "Run FAILED, REMOTE_ERROR or stopped jobs again, in a fresh run folder, so that the flow ends as a "
         "fresh run would: their descendants wait for them again, and the jobs that earlier runs created "
         "(replace, addition, detour) are removed with their outputs and made anew. Anything that would "
         "reset a COMPLETED job (the job itself, a descendant, a job it created) needs --force."),
        ("delete", "remove jobs from the queue database",
         "Remove jobs that are not being run; --output also removes their outputs from the JobStore, "
         "--files their run folders."),
    )  # fmt: skip
    for verb, text, desc in actions:
        v = verbs.add_parser(verb, help=text, description=desc + " Name jobs by ID or select them with "
                             "filters; several jobs are confirmed unless -y. jobflow-remote's `ID INDEX` is "
                             "written UUID:INDEX.")  # fmt: skip
        add_filters(v)
        v.add_argument("-y", "--yes", action="store_true", help="do not ask for confirmation")
        v.add_argument("-re", "--raise-on-error", action="store_true", help="stop at the first job refused")
        if verb == "rerun":
            v.add_argument("--force", "-f", action="store_true", help="also rerun or reset COMPLETED jobs")
            v.add_argument("--error-match", metavar="REGEX", help="only jobs whose error matches")
            v.add_argument("-nd", "--no-delete", action="store_true", help=argparse.SUPPRESS)  # old folders stay
        if verb == "delete":
            v.add_argument("--output", "-o", action="store_true", help="also remove their outputs")
            v.add_argument("--files", "-fi", action="store_true", help="also remove their run folders")
            v.add_argument("--all", "-a", action="store_true", help="--output and --files")
        v.set_defaults(func=run_action, operation=verb)
    job_files.add_verbs(verbs)
    job_set.add_verbs(verbs)


def run_list(args) -> int:
    from jfr_lib.cli.output import note_jobflow_remote
    from jfr_lib.config import load_project
    from jfr_lib.queue_db import open_queue_db

    project = load_project(args.project)
    with open_queue_db(project) as db:
        note_jobflow_remote(db, project)
        if args.count:
            n = count_jobs(args, db)
            print(json.dumps({"count": n}) if args.json else n)
            return 0
        way = 1 if args.reverse_sort else -1
        jobs = select_jobs(args, db, sort=[(args.sort, way), ("db_id", way)], limit=args.limit)
    jobs = jobs if args.reverse_sort else jobs[::-1]
    rows = [{k: j.get(k) for k in LIST_KEYS} for j in jobs]
    if args.json:
        print_json(rows)
    else:
        for row, job in zip(rows, jobs):
            row["where"] = queue_cell(job)
        print_table(rows, [("db_id", "ID"), ("name", "NAME"), ("state", "STATE"),
                           ("worker", "WORKER"), ("where", "QUEUE"), ("priority", "PRIO"), ("updated_on", "UPDATED"),
                           ("uuid", "UUID"), ("index", "IDX")], empty="no jobs")  # fmt: skip
    return 0


def find_by_queue_id(db, queue_id: str) -> dict:
    """The job with this queue id: among those the runner works on first, then the newest first.

    The queue id is not an indexed field: older jobs are read in pages of
    db_ids, newest first, until one matches (a pid of a local worker may have
    been used again: the newest job with it wins).
    """
    from jfr_lib.cli.values import text_value
    from jfr_lib.errors import NotFoundError
    from jfr_lib.states import RUNNING_STATES

    text_value(queue_id, "--pid")
    for job in db.find_jobs({"state": sorted(str(s) for s in RUNNING_STATES)}, sort=[("db_id", -1)]):
        if str(job.get("queue_id")) == queue_id:
            return job
    newest = db.find_jobs(sort=[("db_id", -1)], limit=1)
    top = newest[0]["db_id"] if newest else 0
    while top > 0:
        page = list(range(max(1, top - 499), top + 1))
        for job in db.find_jobs({"db_id": page}, sort=[("db_id", -1)]):
            if str(job.get("queue_id")) == queue_id:
                return job
        top -= 500
    raise NotFoundError(f"no job with queue id {queue_id}")


def run_info(args) -> int:
    from jfr_lib.config import load_project
    from jfr_lib.errors import UsageError
    from jfr_lib.queue_db import open_queue_db

    if (args.job_id is None) == (args.pid is None):
        raise UsageError("name the job by ID or by --pid QUEUE_ID (one of them)")
    if args.pid is not None and args.index is not None:
        raise UsageError("--pid names one job already: no INDEX")
    with open_queue_db(load_project(args.project)) as db:
        job = get_job_or_fail(db, args.job_id, args.index) if args.pid is None else find_by_queue_id(db, args.pid)
    if args.json:
        print_json(job)
        return 0
    from jfr_lib.cli.output import ISO_TIME, local_time, printable_lines

    skip = {"job", "traceback"}
    width = max(len(k) for k in job)
    for key, value in job.items():
        if key not in skip and (args.show_none or value not in (None, "", [], {})):
            if isinstance(value, str) and ISO_TIME.fullmatch(value):
                value = local_time(value)
            print(f"{key.ljust(width)}  {printable(value)}")
    fn = (job.get("job") or {}).get("function") or {}
    print(f"{'function'.ljust(width)}  {printable(fn.get('@module'))}.{printable(fn.get('@callable'))}")
    if job.get("traceback"):
        print("traceback:\n" + printable_lines(job["traceback"].rstrip()))
    return 0


def run_output(args) -> int:
    import json

    from jfr_lib.config import load_project
    from jfr_lib.jobstore import get_jobstore, read_output
    from jfr_lib.queue_db import open_queue_db

    project = load_project(args.project)
    with open_queue_db(project) as db:
        job = get_job_or_fail(db, args.job_id, args.index)
    output = read_output(project, get_jobstore(project), job["uuid"], job["index"],
                         f"job {args.job_id} ({job['state']})")  # fmt: skip
    from monty.json import MontyEncoder

    print(json.dumps(output, cls=MontyEncoder, indent=None if args.json else 2))
    return 0


def run_action(args) -> int:
    """retry, pause, resume, stop, rerun, delete: on IDs or a query; one line per job."""
    from jfr_lib import control
    from jfr_lib.cli.job_set import for_each
    from jfr_lib.cli.values import parse_regex
    from jfr_lib.config import load_project
    from jfr_lib.queue_db import open_queue_db

    pattern = None
    if getattr(args, "error_match", None) is not None:
        pattern = parse_regex(args.error_match, "--error-match")
    if getattr(args, "all", False):
        args.output = args.files = True
    project = load_project(args.project)
    with open_queue_db(project) as db:
        jobs = select_jobs(args, db)
        if pattern is not None:
            jobs = [j for j in jobs if pattern.search(j.get("error") or "")]
        if not jobs:
            print("no job matches", file=sys.stderr)
            return 3
        if not confirm(args.operation, len(jobs), args.yes):
            print("nothing done", file=sys.stderr)
            return 1

        def act(job) -> str:
            if args.operation == "delete":
                control.delete(db, project, job, output=args.output, files=args.files)
                return "deleted"
            if args.operation == "stop":
                new = control.stop(db, project, job)
            elif args.operation == "rerun":
                from jfr_lib.rerun import rerun

                new = rerun(db, job, force=args.force, project=project)
            else:
                new = getattr(control, args.operation)(db, job)
            return f"{job['state']} -> {new['state']}"

        return for_each(jobs, act, args.raise_on_error)
