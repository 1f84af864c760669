"""``jfr admin``: unlock, upgrade, migrate-jobstore, reset."""

from __future__ import annotations

import sys

from jfr_lib.cli.selection import count_type


def add_arguments(sub) -> None:
    p = sub.add_parser("admin", help="maintenance of the queue database and the JobStore",
                       description="Maintenance of the queue database and the JobStore: drop stale locks, "
                       "migrate the schema or an older embedded JobStore, or empty them. Each refuses while "
                       "a runner holds the project.")  # fmt: skip
    verbs = p.add_subparsers(dest="verb", metavar="VERB")
    verbs.required = True
    unlock = verbs.add_parser("unlock", help="drop the locks of jobs",
                              description="Drop the locks held on jobs (all of them, or the IDs given).")
    unlock.add_argument("job_ids", metavar="ID", nargs="*",
                        help="db_id or uuid of a job (default: every locked job)")  # fmt: skip
    unlock.add_argument("-y", "--yes", action="store_true", help="do not ask for confirmation")
    unlock.set_defaults(func=run_unlock)
    upgrade = verbs.add_parser("upgrade", help="migrate the queue database to this jfr's schema",
                               description="Run the schema migrations the queue database needs.")
    upgrade.set_defaults(func=run_upgrade)
    migrate = verbs.add_parser("migrate-jobstore", help="copy an older embedded MontyStore into the SQLite store",
                               description="Copy the embedded MontyStore that an earlier jfr made into the "
                               "indexed SQLite store of new projects, check document counts and a sample of "
                               "outputs, then switch the project to it (the montydb files are kept as "
                               "*.migrated).")  # fmt: skip
    migrate.add_argument("--sample", metavar="N", type=count_type(1), default=100,
                         help="outputs compared after the copy (default 100)")  # fmt: skip
    migrate.set_defaults(func=run_migrate)
    reset = verbs.add_parser("reset", help="remove every job and flow",
                             description="Remove every job and flow from the queue database (the JobStore "
                             "is kept unless --outputs). With more than 25 flows, confirm by typing "
                             "today's date.")  # fmt: skip
    reset.add_argument("--outputs", action="store_true", help="also empty the JobStore")
    reset.add_argument("-y", "--yes", action="store_true", help="do not ask (scripts)")
    reset.set_defaults(func=run_reset)


def _open_idle(args):
    """The project and its database, refusing while a runner runs."""
    from jfr_lib import lease
    from jfr_lib.config import load_project
    from jfr_lib.errors import StateError
    from jfr_lib.queue_db import open_queue_db

    project = load_project(args.project)
    db = open_queue_db(project)
    holder = lease.read(db)
    if lease.status(holder) == lease.RUNNING:
        db.close()
        raise StateError(f"a runner is running on {holder['host']} (pid {holder['pid']}): stop it first")
    return project, db


def run_unlock(args) -> int:
    from jfr_lib.cli.selection import confirm, get_job_or_fail

    _, db = _open_idle(args)
    with db:
        if args.job_ids:  # an unknown id is an error, a job without a lock is just not unlocked
            jobs = [j for j in (get_job_or_fail(db, i) for i in args.job_ids) if j.get("lock_id")]
        else:
            jobs = db.find_jobs({"locked": True})
        if not jobs:
            print("no locked job")
            return 0
        if not confirm("unlock", len(jobs), args.yes):
            print("nothing done", file=sys.stderr)
            return 1
        for job in jobs:
            db.update_job(job["db_id"], {"lock_id": None, "lock_time": None}, lock_id=job["lock_id"])
            print(f"job {job['db_id']}: unlocked")
    return 0


def run_upgrade(args) -> int:
    from jfr_lib.queue_db.base import SCHEMA_VERSION

    _, db = _open_idle(args)
    with db:
        version = db.schema_version()
    if version == SCHEMA_VERSION:
        print(f"the queue database is at schema {version}, the current one: nothing to do")
    return 0


def run_migrate(args) -> int:
    from jfr_lib.jobstore import migrate

    project, db = _open_idle(args)
    db.close()
    migrate(project, sample=args.sample)
    return 0


def run_reset(args) -> int:
    from datetime import date

    _, db = _open_idle(args)
    project = None
    with db:
        flows = db.find_flows()
        jobs = db.count_jobs()
        if not args.yes:
            if len(flows) > 25:
                sys.stderr.write(f"remove {len(flows)} flows and {jobs} jobs? type today's date "
                                 f"({date.today().isoformat()}) to confirm: ")  # fmt: skip
                sys.stderr.flush()
                if sys.stdin.readline().strip() != date.today().isoformat():
                    print("nothing done", file=sys.stderr)
                    return 1
            else:
                sys.stderr.write(f"remove {len(flows)} flows and {jobs} jobs? [y/N] ")
                sys.stderr.flush()
                if sys.stdin.readline().strip().lower() not in ("y", "yes"):
                    print("nothing done", file=sys.stderr)
                    return 1
        db.delete_jobs([j["db_id"] for j in db.find_jobs()])
        for flow in flows:
            db.delete_flow(flow["uuid"])
    if args.outputs:
        from jfr_lib.config import load_project
        from jfr_lib.jobstore import get_jobstore, store_lock

        project = load_project(args.project)
        store = get_jobstore(project)
        with store_lock(project, exclusive=True):
            store.docs_store.remove_docs({})
            for extra in store.additional_stores.values():
                extra.remove_docs({})
    print(f"removed {len(flows)} flows and {jobs} jobs" + (" and every output" if args.outputs else ""))
    return 0
