"""``jfr flow``: list flows."""

from __future__ import annotations

from jfr_lib.cli.output import add_json_flag, print_json, print_table

LIST_KEYS = ("db_id", "uuid", "name", "state", "n_jobs", "created_on", "updated_on")


def add_arguments(sub) -> None:
    p = sub.add_parser("flow", help="list flows", description="List the submitted flows.")
    verbs = p.add_subparsers(dest="verb", metavar="VERB")
    verbs.required = True
    lst = verbs.add_parser("list", help="list flows", description="List flows, newest last.")
    lst.add_argument("-s", "--state", metavar="STATE", action="append",
                     help="only flows in this state (repeat or separate with commas)")  # fmt: skip
    add_json_flag(lst)
    lst.set_defaults(func=run_list)


def run_list(args) -> int:
    from jfr_lib.config import load_project
    from jfr_lib.errors import UsageError
    from jfr_lib.queue_db import open_queue_db
    from jfr_lib.states import FlowState

    query = {}
    states = [s.strip().upper() for v in args.state or [] for s in v.split(",")]
    for s in states:
        if s not in FlowState.__members__:
            raise UsageError(f"unknown flow state {s!r} (one of: {', '.join(FlowState.__members__)})")
    if states:
        query["state"] = states
    with open_queue_db(load_project(args.project)) as db:
        flows = db.find_flows(query, sort=[("db_id", 1)])
    rows = [{k: f.get(k) for k in LIST_KEYS} for f in flows]
    if args.json:
        print_json(rows)
    else:
        print_table(rows, [("db_id", "ID"), ("name", "NAME"), ("state", "STATE"),
                           ("n_jobs", "JOBS"), ("updated_on", "UPDATED"), ("uuid", "UUID")],
                    empty="no flows")  # fmt: skip
    return 0
