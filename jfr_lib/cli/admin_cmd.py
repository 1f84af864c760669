"""``jfr admin``: unlock, upgrade, migrate-jobstore, reset."""

from __future__ import annotations

import sys

from jfr_lib.cli.admin_locks import _open_idle, unlock_jobs
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
    from jfr_lib.cli import admin_locks

    admin_locks.add_verbs(verbs)  # unlock-flow, unlock-runner
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
    imp = verbs.add_parser("import-jobflow-remote", help="copy a jobflow-remote queue into jfr's",
                           description="Copy every job and flow of a jobflow-remote 1.0.1 queue (MongoDB) into "
                           "this project's queue database, with their states, db_ids (when free), parents, "
                           "priorities, errors, run folders and settings, so that running flows go on under jfr's "
                           "runner. A job whose jobflow-remote run has ended is completed by jfr from its run "
                           "folder. Read from --uri and --database, from the queue of a jobflow-remote project file "
                           "(--from-project), or by default from this project's own MongoDB database. Refused when a "
                           "flow is already in jfr's queue, while jobflow-remote's runner runs, or while jobs still "
                           "run under it (see --rerun-running).")  # fmt: skip
    imp.add_argument("--uri", metavar="URI", help="MongoDB URI of jobflow-remote's queue")
    imp.add_argument("--database", metavar="DB", help="its database (default: this project's MongoDB database)")
    imp.add_argument("--from-project", metavar="FILE", help="a jobflow-remote project file naming the queue")
    imp.add_argument("--jobs-collection", metavar="NAME", help="collection of the jobs (default: jobs)")
    imp.add_argument("--flows-collection", metavar="NAME", help="collection of the flows (default: flows)")
    imp.add_argument("--aux-collection", metavar="NAME", help="auxiliary collection (default: jf_auxiliary)")
    imp.add_argument("--rerun-running", action="store_true",
                     help="import jobs still running under jobflow-remote as READY, to run again")  # fmt: skip
    imp.add_argument("--dry-run", action="store_true", help="only print how many jobs would come in each state")
    imp.set_defaults(func=run_import)
    reset = verbs.add_parser("reset", help="remove every job and flow",
                             description="Remove every job and flow from the queue database (the JobStore "
                             "is kept unless --outputs). With more than 25 flows, confirm by typing "
                             "today's date.")  # fmt: skip
    reset.add_argument("--outputs", action="store_true", help="also empty the JobStore")
    reset.add_argument("-y", "--yes", action="store_true", help="do not ask (scripts)")
    reset.set_defaults(func=run_reset)


def run_unlock(args) -> int:
    from jfr_lib.cli.selection import get_job_or_fail

    _, db = _open_idle(args)
    with db:
        if args.job_ids:  # an unknown id is an error, a job without a lock is just not unlocked
            jobs = [j for j in (get_job_or_fail(db, i) for i in args.job_ids) if j.get("lock_id")]
        else:
            jobs = db.find_jobs({"locked": True})
        return unlock_jobs(db, jobs, args.yes)


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


def run_import(args) -> int:
    from jfr_lib.errors import UsageError
    from jfr_lib.import_jfremote import Importer
    from jfr_lib.jfremote import connect, source_from_project
    from jfr_lib.redact import mask_text

    if args.from_project and (args.uri or args.database):
        raise UsageError("--from-project names the queue: give it without --uri and --database")
    if args.uri and not args.database:
        raise UsageError("--uri needs --database DB")
    project, db = _open_idle(args)
    own = None
    with db:
        where = {"uri": args.uri, "database": args.database, "options": {}, "db_id_prefix": None}
        if args.from_project:
            where = source_from_project(args.from_project)
        if where["uri"] and where["uri"].startswith("mongomock://"):  # tests: the process's in-memory MongoDB
            from jfr_lib.queue_db import _mock_client

            client = _mock_client()
        elif where["uri"]:
            client = own = connect(where["uri"], project.queue.connect_timeout, where["options"])
        elif getattr(db, "client", None) is not None:  # this project's MongoDB holds jobflow-remote's queue too
            client, where["database"] = db.client, args.database or project.queue.database
        else:
            raise UsageError("say where jobflow-remote's queue is: --uri URI --database DB, or --from-project FILE")
        names = {k: getattr(args, f"{k}_collection") or where.get(k) for k in ("jobs", "flows", "aux")}
        importer = Importer(project, db, client[where["database"]], names, rerun_running=args.rerun_running,
                            db_id_prefix=where["db_id_prefix"])  # fmt: skip
        try:
            importer.read()
            if args.dry_run:
                print("\n".join(importer.summary()))
                for blocker in importer.blockers:
                    print(f"the import would stop: {blocker}")
                return 0
            n_jobs = importer.write()
        finally:
            importer.close()
            if own is not None:
                own.close()
    origin = mask_text(where["uri"]) if where["uri"] else "the project's MongoDB"
    print("\n".join(importer.summary()))
    print(f"imported {len(importer.plan)} flows and {n_jobs} jobs from database {where['database']!r} ({origin})")
    return 0
