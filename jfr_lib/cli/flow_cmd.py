"""``jfr flow``: list, info, delete, clean, resume, graph, report."""

from __future__ import annotations

import argparse
import json
import sys

from jfr_lib.cli import compat
from jfr_lib.cli.flow_selection import FLOW_SORT_KEYS, add_flow_filters, count_flows, flow_of, select_flows
from jfr_lib.cli.output import add_json_flag, print_json, print_table, printable
from jfr_lib.cli.values import count_type

LIST_KEYS = ("db_id", "uuid", "name", "state", "n_jobs", "created_on", "updated_on")


def add_arguments(sub) -> None:
    p = sub.add_parser("flow", help="list, inspect and manage flows",
                       description="List flows, show one with its jobs, draw its graph, delete, clean or "
                       "resume it, and report on the whole project. A flow is named by its db_id "
                       "or its uuid; with -j (and -did, -jid in selections) by one of its jobs, as "
                       "jobflow-remote names flows.")  # fmt: skip
    verbs = p.add_subparsers(dest="verb", metavar="VERB")
    verbs.required = True
    lst = verbs.add_parser("list", help="list flows",
                           description="List the newest flows (100 unless -n), oldest of them first. -n is "
                           "the number of flows; jobflow-remote's -n (a name) is --name here.")  # fmt: skip
    add_flow_filters(lst, ids=False, short_name=False)
    lst.add_argument("-n", "--limit", "-m", "--max-results", dest="limit", metavar="N",
                     type=compat.limit_type("flows"), default=100,
                     help="show the newest N flows (default 100; 0: all)")  # fmt: skip
    lst.add_argument("--sort", metavar="KEY", choices=FLOW_SORT_KEYS, default="db_id",
                     help=f"order by one of: {', '.join(FLOW_SORT_KEYS)} (default db_id)")  # fmt: skip
    lst.add_argument("-revs", "--reverse-sort", action="store_true",
                     help="the first N flows in that order, not the last")  # fmt: skip
    lst.add_argument("--count", action="store_true", help="print only how many flows match")
    add_json_flag(lst)
    lst.set_defaults(func=run_list)
    info = verbs.add_parser("info", help="show a flow and its jobs",
                            description="Show a flow, the number of its jobs in each state, and its jobs.")
    _flow_arg(info)
    add_json_flag(info)
    compat.add_hidden(info, query=False)
    info.set_defaults(func=run_info)
    delete = verbs.add_parser("delete", help="remove flows and their jobs",
                              description="Remove flows with all their jobs (refused while the runner "
                              "works on one of them). Name flows or select them with filters.")  # fmt: skip
    add_flow_filters(delete)
    delete.add_argument("--output", "-o", action="store_true", help="also remove the outputs from the JobStore")
    delete.add_argument("--files", "-fi", action="store_true", help="also remove the run folders")
    delete.add_argument("--all", "-a", action="store_true", help="--output and --files")
    delete.add_argument("-m", "--max", metavar="N", type=count_type(), default=0,
                        help="refuse when more than N flows are selected (default 0: no limit)")  # fmt: skip
    delete.add_argument("-y", "--yes", action="store_true", help="do not ask for confirmation")
    delete.add_argument("-kp", "--keep-processes", action="store_true", help=argparse.SUPPRESS)  # never killed
    delete.set_defaults(func=run_delete)
    clean = verbs.add_parser("clean", help="delete the run folders of finished jobs",
                             description="Delete the run folders of the jobs of the selected flows (every flow "
                             "when none is named and no filter given) that are COMPLETED, FAILED, STOPPED or "
                             "USER_STOPPED, keeping the jobs and their outputs; --all-states also those of jobs in "
                             "other states the runner is not working on. Asks first unless -y.")  # fmt: skip
    add_flow_filters(clean)
    clean.add_argument("-as", "--all-states", action="store_true",
                       help="also jobs in other states, never one the runner is working on")  # fmt: skip
    clean.add_argument("-y", "--yes", action="store_true", help="do not ask for confirmation")
    clean.add_argument("-f", "--force", action="store_true", help=argparse.SUPPRESS)  # jobflow-remote's: not needed
    clean.set_defaults(func=run_clean)
    resume = verbs.add_parser("resume", help="resume the paused jobs of a flow",
                              description="Resume every PAUSED job of the flow.")
    _flow_arg(resume)
    resume.set_defaults(func=run_resume)
    graph = verbs.add_parser("graph", help="print the flow's graph (Mermaid or Graphviz dot)",
                             description="Print the dependency graph of the flow's jobs, with their "
                             "states, as Mermaid (default) or Graphviz dot; --png draws it with dot.")  # fmt: skip
    _flow_arg(graph)
    graph.add_argument("--format", choices=("mermaid", "dot"), default="mermaid", help="output format")
    graph.add_argument("-m", "--mermaid", dest="format", action="store_const", const="mermaid",
                       help="as --format mermaid")  # fmt: skip
    graph.add_argument("--png", metavar="FILE", help="write a PNG with Graphviz's dot")
    graph.set_defaults(func=run_graph)
    report = verbs.add_parser("report", help="counts per state and worker, and work done per day",
                              description="Report on the project's jobs: how many in each state and on "
                              "each worker, and how many completed or failed on each of the last days.")  # fmt: skip
    report.add_argument("--days", metavar="N", type=count_type(1, 36500), default=7,
                        help="days to report (default 7)")  # fmt: skip
    add_json_flag(report)
    report.set_defaults(func=run_report)


def _flow_arg(parser) -> None:
    parser.add_argument("flow_id", metavar="FLOW", help="db_id or uuid of the flow (with -j: of one of its jobs)")
    parser.add_argument("-j", "--job", action="store_true",
                        help="FLOW names a job (db_id or uuid): the flow is that job's")  # fmt: skip


def _open(args):
    from jfr_lib.config import load_project
    from jfr_lib.queue_db import open_queue_db

    project = load_project(args.project)
    return project, open_queue_db(project)


def run_list(args) -> int:
    from jfr_lib.cli.output import note_jobflow_remote

    project, db = _open(args)
    with db:
        note_jobflow_remote(db, project)
        if args.count:
            n = count_flows(args, db)
            print(json.dumps({"count": n}) if args.json else n)
            return 0
        way = 1 if args.reverse_sort else -1
        flows = select_flows(args, db, sort=[(args.sort, way), ("db_id", way)], limit=args.limit, require=False)
    flows = flows if args.reverse_sort else flows[::-1]
    rows = [{k: f.get(k) for k in LIST_KEYS} for f in flows]
    if args.json:
        print_json(rows)
    else:
        print_table(rows, [("db_id", "ID"), ("name", "NAME"), ("state", "STATE"),
                           ("n_jobs", "JOBS"), ("updated_on", "UPDATED"), ("uuid", "UUID")],
                    empty="no flows")  # fmt: skip
    return 0


def run_info(args) -> int:
    _, db = _open(args)
    with db:
        flow = flow_of(db, args.flow_id, args.job)
        counts = db.count_states({"flow_uuid": flow["uuid"]})
        jobs = db.find_jobs({"flow_uuid": flow["uuid"]}, sort=[("db_id", 1)])
    data = {**{k: flow.get(k) for k in LIST_KEYS}, "states": counts,
            "jobs": [{k: j.get(k) for k in ("db_id", "uuid", "index", "name", "state", "worker")} for j in jobs]}
    if args.json:
        print_json(data)
        return 0
    print(f"flow {flow['db_id']} {printable(flow.get('name'))} ({printable(flow['uuid'])}): {flow['state']}")
    print("jobs: " + ", ".join(f"{n} {s}" for s, n in sorted(counts.items())))
    print_table(data["jobs"], [("db_id", "ID"), ("name", "NAME"), ("index", "IDX"), ("state", "STATE"),
                               ("worker", "WORKER")])  # fmt: skip
    return 0


def run_delete(args) -> int:
    from jfr_lib import control
    from jfr_lib.cli.selection import confirm
    from jfr_lib.errors import StateError

    if args.all:
        args.output = args.files = True
    project, db = _open(args)
    with db:
        flows = select_flows(args, db)
        if not flows:
            print("no flow matches", file=sys.stderr)
            return 3
        if args.max and len(flows) > args.max:
            raise StateError(f"{len(flows)} flows selected, more than --max {args.max}: nothing deleted")
        plan = []
        for flow in flows:
            jobs = db.find_jobs({"flow_uuid": flow["uuid"]})
            for job in jobs:
                control.refuse_flow_delete(flow, job)
            plan.append((flow, jobs))
        total = sum(len(jobs) for _, jobs in plan)
        if not confirm("delete", total, args.yes):
            print("nothing done", file=sys.stderr)
            return 1
        for flow, jobs in plan:
            control.delete_flow(db, project, flow, jobs, output=args.output, files=args.files)
            print(f"flow {flow['db_id']}: deleted with {len(jobs)} jobs")
    return 0


def run_clean(args) -> int:
    """Delete the run folders of the jobs of the selected flows (job files delete, for each)."""
    from jfr_lib.cli.job_files import CLEANABLE, delete_run_folder
    from jfr_lib.cli.selection import ask
    from jfr_lib.errors import JfrError, NotFoundError
    from jfr_lib.hosts import get_host
    from jfr_lib.states import RUNNING_STATES

    busy = [str(s) for s in RUNNING_STATES]
    project, db = _open(args)
    hosts = {}
    with db:
        flows = select_flows(args, db, require=False)
        jobs = db.find_jobs({"flow_uuid": [f["uuid"] for f in flows]}, sort=[("db_id", 1)]) if flows else []
        jobs = [j for j in jobs if j.get("run_dir")]
        todo = [j for j in jobs if j["state"] not in busy and not j.get("lock_id")
                and (args.all_states or j["state"] in CLEANABLE)]  # fmt: skip
        skipped = {}
        for job in jobs:
            if job not in todo:
                skipped[job["state"]] = skipped.get(job["state"], 0) + 1
        if not todo:
            print(f"no run folder to delete in {len(flows)} flows" + _skipped(skipped), file=sys.stderr)
            return 0
        if not args.yes and not ask(f"delete the run folders of {len(todo)} jobs of {len(flows)} flows?"):
            print("nothing done", file=sys.stderr)
            return 1
        failures = gone = 0
        try:
            for job in todo:
                try:
                    if job["worker"] not in hosts:
                        hosts[job["worker"]] = get_host(project.worker(job["worker"]))
                    where = delete_run_folder(db, project, job, args.all_states, host=hosts[job["worker"]])
                    print(f"job {job['db_id']}: deleted {printable(where)}")
                except NotFoundError:  # deleted before
                    gone += 1
                except JfrError as exc:
                    failures += 1
                    print(f"jfr: error: {printable(exc)}", file=sys.stderr)
        finally:
            for host in hosts.values():
                host.close()
    print(f"deleted the run folders of {len(todo) - failures - gone} jobs ({gone} gone already)" + _skipped(skipped),
          file=sys.stderr)  # fmt: skip
    return 1 if failures else 0


def _skipped(skipped: dict) -> str:
    if not skipped:
        return ""
    states = ", ".join(f"{n} {s}" for s, n in sorted(skipped.items()))
    return f"; kept for their state: {states} (--all-states for any state the runner is not working on)"


def run_resume(args) -> int:
    from jfr_lib import control

    _, db = _open(args)
    with db:
        flow = flow_of(db, args.flow_id, args.job)
        paused = db.find_jobs({"flow_uuid": flow["uuid"], "state": "PAUSED"}, sort=[("db_id", 1)])
        for job in paused:
            new = control.resume(db, job)
            print(f"job {job['db_id']}: PAUSED -> {new['state']}")
    if not paused:
        print(f"flow {flow['db_id']}: no paused job")
    return 0


def graph_text(jobs: list, fmt: str) -> str:
    """The flow's graph: one node per job document, an edge from each parent's latest index."""
    latest = {}
    for job in jobs:
        if job["index"] >= latest.get(job["uuid"], {"index": -1})["index"]:
            latest[job["uuid"]] = job
    edges = [(latest[p]["db_id"], job["db_id"]) for job in jobs for p in job.get("parents", []) if p in latest]
    if fmt == "dot":
        colours = {"COMPLETED": "palegreen", "FAILED": "salmon", "REMOTE_ERROR": "salmon", "RUNNING": "lightblue",
                   "WAITING": "white", "READY": "lightyellow"}  # fmt: skip
        lines = ["digraph flow {", "  node [shape=box, style=filled];"]
        for job in jobs:
            name = printable(job["name"]).replace("\\", "\\\\").replace('"', '\\"')
            label = f"{job['db_id']} {name}\\n{job['state']}"
            lines.append(f'  j{job["db_id"]} [label="{label}", fillcolor="{colours.get(job["state"], "grey90")}"];')
        lines += [f"  j{a} -> j{b};" for a, b in edges]
        return "\n".join(lines + ["}"]) + "\n"
    lines = ["flowchart TD"]
    for job in jobs:
        name = printable(job["name"]).replace('"', "'")
        lines.append(f'    j{job["db_id"]}["{job["db_id"]} {name}<br/>{job["state"]}"]')
    lines += [f"    j{a} --> j{b}" for a, b in edges]
    return "\n".join(lines) + "\n"


def run_graph(args) -> int:
    import shutil
    import subprocess

    from jfr_lib.errors import JfrError, UsageError

    if args.png == "":
        raise UsageError("--png: give a file name, not an empty string")
    _, db = _open(args)
    with db:
        flow = flow_of(db, args.flow_id, args.job)
        jobs = db.find_jobs({"flow_uuid": flow["uuid"]}, sort=[("db_id", 1)])
    if args.png is not None:
        dot = shutil.which("dot")
        if dot is None:
            raise JfrError("--png needs Graphviz's dot (apt install graphviz)")
        result = subprocess.run([dot, "-Tpng", "-o", args.png], input=graph_text(jobs, "dot"), text=True,
                                capture_output=True, timeout=60)  # fmt: skip
        if result.returncode != 0:
            raise JfrError(f"dot failed: {result.stderr.strip()}")
        print(args.png)
        return 0
    sys.stdout.write(graph_text(jobs, args.format))
    return 0


def run_report(args) -> int:
    from datetime import date, timedelta

    from jfr_lib.queue_db.base import UPDATED_DAY

    _, db = _open(args)
    since = (date.today() - timedelta(days=args.days - 1)).isoformat()
    with db:  # aggregates computed by the database: no job document is read
        states = db.count_states()
        per_worker = db.count_by(["worker", "state"])
        per_day = db.count_by([UPDATED_DAY, "state"], {"state": ["COMPLETED", "FAILED"], "updated_since": since})
    workers = {}
    for (worker, state), n in sorted(per_worker.items(), key=lambda kv: (str(kv[0][0]), kv[0][1])):
        workers.setdefault(worker, {})[state] = n
    days = {(date.today() - timedelta(days=n)).isoformat(): {"COMPLETED": 0, "FAILED": 0} for n in range(args.days)}
    for (day, state), n in per_day.items():
        if day in days:
            days[day][state] += n
    data = {"jobs": sum(states.values()), "states": states, "workers": workers,
            "days": [{"day": d, **v} for d, v in sorted(days.items())]}  # fmt: skip
    if args.json:
        print_json(data)
        return 0
    print(f"{data['jobs']} jobs: " + ", ".join(f"{n} {s}" for s, n in sorted(states.items())))
    for worker, counts in workers.items():
        print(f"  {worker}: " + ", ".join(f"{n} {s}" for s, n in sorted(counts.items())))
    print_table(data["days"], [("day", "DAY"), ("COMPLETED", "COMPLETED"), ("FAILED", "FAILED")])
    return 0
