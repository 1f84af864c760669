"""``jfr admin unlock-flow`` and ``jfr admin unlock-runner``: locks jobflow-remote users drop by hand."""

from __future__ import annotations

import sys


def add_verbs(verbs) -> None:
    """Add ``unlock-flow`` and ``unlock-runner`` to the verbs of ``jfr admin``."""
    from jfr_lib.cli.flow_selection import add_flow_filters

    flow = verbs.add_parser("unlock-flow", help="drop the locks of the jobs of flows",
                            description="jfr has no lock on a flow: drop the locks held on the jobs of the flows "
                            "named or selected (every flow with a locked job when none is). Refused while a "
                            "runner runs.")  # fmt: skip
    add_flow_filters(flow)
    flow.add_argument("-y", "--yes", action="store_true", help="do not ask for confirmation")
    flow.set_defaults(func=run_unlock_flow)
    runner = verbs.add_parser("unlock-runner", help="drop the runner's lease when its runner is gone",
                              description="Drop the runner lease a runner that died left in the queue database "
                              "(a new runner takes over a stale lease by itself; this is for the impatient). "
                              "Refused while the lease is fresh, unless --force: a runner that still runs "
                              "then stops at its next heartbeat. The next runner drops the locks the old one "
                              "left.")  # fmt: skip
    runner.add_argument("--force", "-f", action="store_true", help="drop the lease even while it is fresh")
    runner.set_defaults(func=run_unlock_runner)


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


def run_unlock_flow(args) -> int:
    from jfr_lib.cli.flow_selection import select_flows

    _, db = _open_idle(args)
    with db:
        flows = select_flows(args, db, require=False)
        jobs = db.find_jobs({"flow_uuid": [f["uuid"] for f in flows], "locked": True}, sort=[("db_id", 1)])
        return unlock_jobs(db, jobs, args.yes)


def unlock_jobs(db, jobs: list, assume_yes: bool) -> int:
    """Drop the locks of ``jobs`` after confirmation; the exit code."""
    from jfr_lib.cli.selection import confirm

    if not jobs:
        print("no locked job")
        return 0
    if not confirm("unlock", len(jobs), assume_yes):
        print("nothing done", file=sys.stderr)
        return 1
    for job in jobs:
        db.update_job(job["db_id"], {"lock_id": None, "lock_time": None}, lock_id=job["lock_id"])
        print(f"job {job['db_id']}: unlocked")
    return 0


def run_unlock_runner(args) -> int:
    import time

    from jfr_lib import daemon, lease
    from jfr_lib.config_lenient import lenient_project
    from jfr_lib.errors import StateError
    from jfr_lib.queue_db import open_queue_db

    project, _ = lenient_project(args.project)  # a lease outlives a broken project file
    word, found = daemon.current(project)
    if found is None:
        print("no runner lease: nothing to unlock")
        return 0
    age = time.time() - float(found.get("heartbeat", 0))
    if word == lease.RUNNING and not args.force:
        raise StateError(f"the runner on {found['host']} (pid {found['pid']}) is running (heartbeat {age:.0f} s "
                         "ago): stop it with `jfr runner stop`, or --force if you know it is gone")  # fmt: skip
    with open_queue_db(project) as db:
        if not lease.release(db, found["token"]):
            raise StateError("the lease changed meanwhile (a runner took it over): nothing done")
    print(f"dropped the lease of the runner on {found['host']} (pid {found['pid']}, {word}, heartbeat {age:.0f} s ago)")
    return 0
