"""``jfr batch``: the pilots of batch workers: list, info, stop.

What a pilot is doing (jobs done, jobs running, time left) is what it last wrote
into its status file, as the runner's latest poll read it.
"""

from __future__ import annotations

import sys

from jfr_lib.cli.output import add_json_flag, print_json, print_table, printable


def add_arguments(sub) -> None:
    p = sub.add_parser("batch", help="pilots of batch workers: list, info, stop",
                       description="The pilot queue jobs of batch workers: each runs many jobs in one "
                       "allocation.")  # fmt: skip
    verbs = p.add_subparsers(dest="verb", metavar="VERB")
    verbs.required = True
    ls = verbs.add_parser("list", help="list pilots", description="List the pilots of the batch workers: "
                          "queue id, state, jobs done, jobs running, time left.")  # fmt: skip
    ls.add_argument("-w", "--worker", metavar="NAME", help="only this worker's pilots")
    ls.add_argument("-a", "--all", action="store_true", help="also pilots that ended (the newest 200 per worker)")
    add_json_flag(ls)
    ls.set_defaults(func=run_list)
    info = verbs.add_parser("info", help="everything recorded about a pilot",
                            description="Everything recorded about one pilot.")
    info.add_argument("pilot", metavar="PILOT", help="pilot id (p…) or its queue id")
    add_json_flag(info)
    info.set_defaults(func=run_info)
    stop = verbs.add_parser("stop", help="ask pilots to leave once their running jobs end",
                            description="Ask pilots to take no more jobs: the jobs they run finish (and "
                            "complete as usual), then each pilot leaves its allocation. Waiting jobs go to "
                            "other pilots; new pilots are submitted as needed unless the worker has no "
                            "room.")  # fmt: skip
    stop.add_argument("pilots", metavar="PILOT", nargs="*", help="pilot ids or queue ids")
    stop.add_argument("-w", "--worker", metavar="NAME", help="every live pilot of this worker")
    stop.set_defaults(func=run_stop)


def _records(project, db, worker=None) -> list:
    from jfr_lib import batch
    from jfr_lib.errors import UsageError

    names = [n for n, w in project.workers.items() if w.is_batch]
    if worker is not None:
        if worker not in project.workers:
            raise UsageError(f"--worker: no worker {worker!r} in the project")
        if worker not in names:
            raise UsageError(f"--worker: worker {worker!r} has no batch section")
        names = [worker]
    rows = []
    for name in names:
        for pid, record in batch.read_pilots(db, name).items():
            rows.append({**record, "id": pid, "worker": name})
    rows.sort(key=lambda r: r.get("submitted_on") or "")
    return rows


def _open(args):
    from jfr_lib.config import load_project
    from jfr_lib.queue_db import open_queue_db

    project = load_project(args.project)
    return project, open_queue_db(project)


def _running_count(record: dict) -> int:
    return len(record.get("running") or [])


def run_list(args) -> int:
    from jfr_lib import batch

    project, db = _open(args)
    with db:
        rows = _records(project, db, args.worker)
    if not args.all:
        rows = [r for r in rows if batch.alive(r)]
    if args.json:
        print_json(rows)
        return 0
    for r in rows:
        r["running_now"] = _running_count(r)
        r["left"] = "-" if r.get("time_left") is None or not batch.alive(r) else f"{r['time_left']:.0f} s"
    print_table(rows, [("id", "PILOT"), ("worker", "WORKER"), ("queue_id", "QUEUE ID"), ("state", "STATE"),
                       ("jobs_done", "DONE"), ("running_now", "RUNNING"), ("left", "TIME LEFT"),
                       ("submitted_on", "SUBMITTED"), ("end_reason", "ENDED BECAUSE")],
                empty="no pilot" if not args.all else "no pilot recorded")  # fmt: skip
    return 0


def _find(project, db, text: str) -> dict:
    from jfr_lib.errors import NotFoundError

    for record in _records(project, db):
        if text in (record["id"], str(record.get("queue_id"))):
            return record
    raise NotFoundError(f"no pilot {text}")


def run_info(args) -> int:
    project, db = _open(args)
    with db:
        record = _find(project, db, args.pilot)
    if args.json:
        print_json(record)
        return 0
    for key in ("id", "worker", "queue_id", "state", "host", "submitted_on", "jobs_done", "running", "time_left",
                "leaving", "end_reason", "ended_on", "stop_requested", "updated"):  # fmt: skip
        value = record.get(key)
        if value is None or value == []:
            continue
        if isinstance(value, list):
            value = ", ".join(value)
        print(f"{key:<15} {printable(value)}")
    return 0


def run_stop(args) -> int:
    from jfr_lib import batch
    from jfr_lib.errors import UsageError
    from jfr_lib.hosts import get_host

    project, db = _open(args)
    with db:
        if args.worker:
            chosen = [r for r in _records(project, db, args.worker) if batch.alive(r)]
        elif args.pilots:
            chosen = [_find(project, db, text) for text in args.pilots]
        else:
            raise UsageError("give pilot ids, or --worker NAME for every live pilot of a worker")
        chosen = [r for r in chosen if batch.alive(r)]
        if not chosen:
            print("no live pilot to stop")
            return 0
        by_worker = {}
        for record in chosen:
            by_worker.setdefault(record["worker"], []).append(record["id"])
        for name, ids in by_worker.items():
            worker = project.worker(name)
            host = get_host(worker)
            try:
                home = worker.batch.jobs_handle_dir if worker.is_local else host.expand(worker.batch.jobs_handle_dir)
                for pid in ids:
                    host.write_text(f"{home}/{batch.STOP}/{pid}", "stop\n")
            finally:
                host.close()

            def mark(pilots, ids=ids):
                for pid in ids:
                    if pid in pilots:
                        pilots[pid]["stop_requested"] = True

            batch.update_pilots(db, name, mark)
            for pid in ids:
                print(f"pilot {pid}: asked to stop; its running jobs finish first")
    sys.stdout.flush()
    return 0
