"""``jfr job``: list jobs, show one, print its output."""

from __future__ import annotations

import json
import sys

from jfr_lib.cli.output import add_json_flag, print_json, print_table, printable, queue_cell
from jfr_lib.cli.selection import SORT_KEYS, add_filters, build_query, confirm, count_type, get_job_or_fail, select_jobs

#: Keys of ``jfr job list --json``, in order (a stable interface for scripts).
LIST_KEYS = ("db_id", "uuid", "index", "name", "state", "worker", "priority", "flow_uuid",
             "queue_id", "created_on", "updated_on", "error", "pilot", "pilot_queue_id")  # fmt: skip



def add_arguments(sub) -> None:
    p = sub.add_parser("job", help="list and inspect jobs",
                       description="List jobs, show their details and print their outputs. "
                       "A job is named by its db_id (a number) or its uuid.")  # fmt: skip
    verbs = p.add_subparsers(dest="verb", metavar="VERB")
    verbs.required = True
    lst = verbs.add_parser("list", help="list jobs",
                           description="List jobs matching the filters, oldest first (the newest "
                           "100 unless -n says otherwise).")  # fmt: skip
    add_filters(lst, ids=False)
    lst.add_argument("-n", "--limit", metavar="N", type=count_type(), default=100,
                     help="show at most the last N jobs (0: all; default 100)")  # fmt: skip
    lst.add_argument("--sort", metavar="KEY", choices=SORT_KEYS, default="db_id",
                     help=f"order by one of: {', '.join(SORT_KEYS)} (default db_id)")  # fmt: skip
    lst.add_argument("--count", action="store_true", help="print only the number of matching jobs")
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
                             "filters; several jobs are confirmed unless -y.")  # fmt: skip
        add_filters(v)
        v.add_argument("-y", "--yes", action="store_true", help="do not ask for confirmation")
        if verb == "rerun":
            v.add_argument("--force", action="store_true", help="also rerun or reset COMPLETED jobs")
            v.add_argument("--error-match", metavar="REGEX", help="only jobs whose error matches")
        if verb == "delete":
            v.add_argument("--output", action="store_true", help="also remove their outputs")
            v.add_argument("--files", action="store_true", help="also remove their run folders")
        v.set_defaults(func=run_action, operation=verb)
    qout = verbs.add_parser("queue-out", help="print the end of the job's queue.out and queue.err",
                            description="Print the last lines the job wrote to its queue's output and "
                            "error files, read from the end of each in its run folder on the worker; "
                            "--all prints them whole.")  # fmt: skip
    qout.add_argument("job_id", metavar="ID", help="db_id or uuid of the job")
    many = qout.add_mutually_exclusive_group()
    many.add_argument("-n", "--lines", metavar="N", type=count_type(), default=200,
                      help="print the last N lines of each file (default 200)")  # fmt: skip
    many.add_argument("--all", action="store_true", help="print the files whole")
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
    setp = verbs.add_parser("set", help="change a setting of jobs that have not started",
                            description="Change the worker, exec_config, resources or priority of "
                            "WAITING, READY or PAUSED jobs.")  # fmt: skip
    what = setp.add_subparsers(dest="setting", metavar="SETTING")
    what.required = True
    for name, metavar, text in (("worker", "WORKER", "the worker (a name from the project)"),
                                ("exec-config", "EXEC_CONFIG", "the exec_config (a name, or JSON)"),
                                ("resources", "JSON", "the scheduler resources (a JSON mapping)"),
                                ("priority", "PRIORITY", "the priority (higher runs first)")):  # fmt: skip
        desc = (f"Set {text}." if name != "resources" else "Merge a JSON mapping into the scheduler resources: "
                "its keys win, a key set to null is removed; --replace replaces the whole mapping.")  # fmt: skip
        sp = what.add_parser(name, help=f"change {text}", description=desc)
        sp.add_argument("value", metavar=metavar, help=text)
        add_filters(sp)
        sp.add_argument("-y", "--yes", action="store_true", help="do not ask for confirmation")
        if name == "resources":
            sp.add_argument("--replace", action="store_true",
                            help="replace the resources instead of merging into them")  # fmt: skip
        sp.set_defaults(func=run_set)

def run_list(args) -> int:
    from jfr_lib.config import load_project
    from jfr_lib.queue_db import open_queue_db

    with open_queue_db(load_project(args.project)) as db:
        if args.count:
            query, meta = build_query(args, db)
            n = db.count_jobs(query) if not meta else len(select_jobs(args, db))
            print(json.dumps({"count": n}) if args.json else n)
            return 0
        jobs = select_jobs(args, db, sort=[(args.sort, -1), ("db_id", -1)], limit=args.limit)[::-1]
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


def run_info(args) -> int:
    from jfr_lib.config import load_project
    from jfr_lib.queue_db import open_queue_db

    with open_queue_db(load_project(args.project)) as db:
        job = get_job_or_fail(db, args.job_id)
    if args.json:
        print_json(job)
        return 0
    from jfr_lib.cli.output import ISO_TIME, local_time, printable_lines

    skip = {"job", "traceback"}
    width = max(len(k) for k in job)
    for key, value in job.items():
        if key not in skip and value not in (None, "", [], {}):
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


def for_each(jobs: list, func) -> int:
    """Apply ``func`` to each job, printing one line per job; a refusal of one job among many is
    reported and the others go on (exit 1); a single job's refusal is the command's error."""
    from jfr_lib.errors import JfrError

    failures = 0
    for job in jobs:
        try:
            print(f"job {job['db_id']}: {func(job)}")
        except JfrError as exc:
            if len(jobs) == 1:
                raise
            failures += 1
            print(f"jfr: error: {printable(exc)}", file=sys.stderr)
    return 1 if failures else 0


def run_action(args) -> int:
    """retry, pause, resume, stop, rerun, delete: on IDs or a query; one line per job."""
    from jfr_lib import control
    from jfr_lib.cli.selection import parse_regex
    from jfr_lib.config import load_project
    from jfr_lib.queue_db import open_queue_db

    pattern = None
    if getattr(args, "error_match", None) is not None:
        pattern = parse_regex(args.error_match, "--error-match")
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

        return for_each(jobs, act)


def run_set(args) -> int:
    from jfr_lib import control
    from jfr_lib.cli.selection import parse_int, text_value
    from jfr_lib.config import load_project
    from jfr_lib.errors import UsageError
    from jfr_lib.queue_db import open_queue_db

    key = {"exec-config": "exec_config"}.get(args.setting, args.setting)
    value = text_value(args.value, args.setting)
    if key == "priority":
        value = parse_int(value, "priority")
    elif key == "resources" or (key == "exec_config" and value.lstrip().startswith("{")):
        try:
            value = json.loads(value, parse_constant=_no_constant)
        except ValueError as exc:
            raise UsageError(f"{args.setting}: not valid JSON: {exc}") from None
        except RecursionError:
            raise UsageError(f"{args.setting}: JSON nested too deeply") from None
        if not isinstance(value, dict):
            raise UsageError(f"{args.setting}: give a JSON mapping")
    project = load_project(args.project)
    with open_queue_db(project) as db:
        jobs = select_jobs(args, db)
        if not jobs:
            print("no job matches", file=sys.stderr)
            return 3
        if not confirm(f"set the {args.setting} of", len(jobs), args.yes):
            print("nothing done", file=sys.stderr)
            return 1

        def change(job) -> str:
            if key == "priority":
                control.set_priority(db, job, value)
            else:
                job = control.set_value(db, project, job, key, value, replace=getattr(args, "replace", False))
            return f"{args.setting} {json.dumps(job.get(key, value))}"

        return for_each(jobs, change)


def _no_constant(name: str):
    """JSON's ``NaN`` and ``Infinity`` (which Python's reader accepts) are no values for a scheduler."""
    raise ValueError(f"{name} is not a JSON number")


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

    from jfr_lib.cli.selection import text_value
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
