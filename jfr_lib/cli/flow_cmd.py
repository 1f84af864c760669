"""``jfr flow``: list, info, delete, resume, graph, report."""

from __future__ import annotations

import json
import sys

from jfr_lib.cli.output import add_json_flag, print_json, print_table, printable
from jfr_lib.cli.selection import count_type, get_flow_or_fail

LIST_KEYS = ("db_id", "uuid", "name", "state", "n_jobs", "created_on", "updated_on")


def add_arguments(sub) -> None:
    p = sub.add_parser("flow", help="list, inspect and manage flows",
                       description="List flows, show one with its jobs, draw its graph, delete or "
                       "resume it, and report on the whole project. A flow is named by its db_id "
                       "or its uuid.")  # fmt: skip
    verbs = p.add_subparsers(dest="verb", metavar="VERB")
    verbs.required = True
    lst = verbs.add_parser("list", help="list flows",
                           description="List the newest flows (100 unless -n), oldest of them first.")
    lst.add_argument("-s", "--state", metavar="STATE", action="append",
                     help="only flows in this state (repeat or separate with commas)")  # fmt: skip
    lst.add_argument("--name", metavar="GLOB", help="only flows whose name matches")
    lst.add_argument("-n", "--limit", metavar="N", type=count_type(), default=100,
                     help="show the newest N flows (default 100; 0: all)")  # fmt: skip
    lst.add_argument("--count", action="store_true", help="print only how many flows match")
    add_json_flag(lst)
    lst.set_defaults(func=run_list)
    info = verbs.add_parser("info", help="show a flow and its jobs",
                            description="Show a flow, the number of its jobs in each state, and its jobs.")
    info.add_argument("flow_id", metavar="FLOW", help="db_id or uuid of the flow")
    add_json_flag(info)
    info.set_defaults(func=run_info)
    delete = verbs.add_parser("delete", help="remove flows and their jobs",
                              description="Remove flows with all their jobs (refused while the runner "
                              "works on one of them).")  # fmt: skip
    delete.add_argument("flow_ids", metavar="FLOW", nargs="+", help="db_id or uuid of a flow")
    delete.add_argument("--output", action="store_true", help="also remove the outputs from the JobStore")
    delete.add_argument("--files", action="store_true", help="also remove the run folders")
    delete.add_argument("-y", "--yes", action="store_true", help="do not ask for confirmation")
    delete.set_defaults(func=run_delete)
    resume = verbs.add_parser("resume", help="resume the paused jobs of a flow",
                              description="Resume every PAUSED job of the flow.")
    resume.add_argument("flow_id", metavar="FLOW", help="db_id or uuid of the flow")
    resume.set_defaults(func=run_resume)
    graph = verbs.add_parser("graph", help="print the flow's graph (Mermaid or Graphviz dot)",
                             description="Print the dependency graph of the flow's jobs, with their "
                             "states, as Mermaid (default) or Graphviz dot; --png draws it with dot.")  # fmt: skip
    graph.add_argument("flow_id", metavar="FLOW", help="db_id or uuid of the flow")
    graph.add_argument("--format", choices=("mermaid", "dot"), default="mermaid", help="output format")
    graph.add_argument("--png", metavar="FILE", help="write a PNG with Graphviz's dot")
    graph.set_defaults(func=run_graph)
    report = verbs.add_parser("report", help="counts per state and worker, and work done per day",
                              description="Report on the project's jobs: how many in each state and on "
                              "each worker, and how many completed or failed on each of the last days.")  # fmt: skip
    report.add_argument("--days", metavar="N", type=count_type(1, 36500), default=7,
                        help="days to report (default 7)")  # fmt: skip
    add_json_flag(report)
    report.set_defaults(func=run_report)


def _open(args):
    from jfr_lib.config import load_project
    from jfr_lib.queue_db import open_queue_db

    project = load_project(args.project)
    return project, open_queue_db(project)


def run_list(args) -> int:
    from jfr_lib.cli.selection import states_of, text_value
    from jfr_lib.states import FlowState

    query = {}
    states = states_of(args.state, FlowState)
    if states:
        query["state"] = states
    if args.name is not None:
        query["name_glob"] = text_value(args.name, "--name")
    _, db = _open(args)
    with db:
        if args.count:
            n = db.count_flows(query)
            print(json.dumps({"count": n}) if args.json else n)
            return 0
        flows = db.find_flows(query, sort=[("db_id", -1)], limit=args.limit)[::-1]
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
        flow = get_flow_or_fail(db, args.flow_id)
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
    from jfr_lib.states import RUNNING_STATES

    project, db = _open(args)
    with db:
        flows = list({f["db_id"]: f for f in (get_flow_or_fail(db, f) for f in args.flow_ids)}.values())
        plan = []
        for flow in flows:
            jobs = db.find_jobs({"flow_uuid": flow["uuid"]})
            busy = [j for j in jobs if j["state"] in [str(s) for s in RUNNING_STATES] or j.get("lock_id")]
            if busy:
                raise StateError(f"flow {flow['db_id']}: job {busy[0]['db_id']} is {busy[0]['state']}; "
                                 "stop it or wait before deleting the flow")  # fmt: skip
            plan.append((flow, jobs))
        total = sum(len(jobs) for _, jobs in plan)
        if not confirm("delete", total, args.yes):
            print("nothing done", file=sys.stderr)
            return 1
        for flow, jobs in plan:
            for job in jobs:
                control.delete(db, project, job, output=args.output, files=args.files)
            db.delete_flow(flow["uuid"])
            print(f"flow {flow['db_id']}: deleted with {len(jobs)} jobs")
    return 0


def run_resume(args) -> int:
    from jfr_lib import control

    _, db = _open(args)
    with db:
        flow = get_flow_or_fail(db, args.flow_id)
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
        flow = get_flow_or_fail(db, args.flow_id)
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
