"""``jfr runner``: run, start, stop, kill, restart, status, info, logs."""

from __future__ import annotations

import sys

from jfr_lib.cli.output import add_json_flag, print_json


def add_arguments(sub) -> None:
    p = sub.add_parser("runner", help="run the jobs",
                       description="The runner moves jobs through their states: checkout, upload, "
                       "submit, monitor, download, complete. One runner runs per project; it holds "
                       "a lease in the queue database.")  # fmt: skip
    verbs = p.add_subparsers(dest="verb", metavar="VERB")
    verbs.required = True
    run = verbs.add_parser("run", help="run in the foreground",
                           description="Run the runner in the foreground until interrupted "
                           "(SIGINT or SIGTERM stop it after the current step).")  # fmt: skip
    mode = run.add_mutually_exclusive_group()
    mode.add_argument("--once", action="store_true", help="do one pass of every action, then exit")
    mode.add_argument("--exit-when-idle", action="store_true", help="exit when no job is ready or running")
    run.set_defaults(func=run_run)
    start = verbs.add_parser("start", help="start the runner in the background",
                             description="Start the runner as a daemon and return once it runs. "
                             "When a runner already runs for the project, say so and exit 0, so "
                             "cron may call this every few minutes.")  # fmt: skip
    start.set_defaults(func=run_start)
    stop = verbs.add_parser("stop", help="stop the runner after its current step",
                            description="Ask the runner to stop through the queue database (this "
                            "works from any host) and wait until it has.")  # fmt: skip
    stop.add_argument("--wait", metavar="SECONDS", type=float, default=120.0,
                      help="how long to wait (0: do not wait)")  # fmt: skip
    stop.set_defaults(func=run_stop)
    kill = verbs.add_parser("kill", help="kill the runner at once",
                            description="Kill the runner and its action processes with SIGKILL "
                            "(this host only). Running jobs are not touched.")  # fmt: skip
    kill.set_defaults(func=run_kill)
    restart = verbs.add_parser("restart", help="stop the runner, then start it",
                               description="Stop the runner gracefully, then start a daemon.")
    restart.add_argument("--wait", metavar="SECONDS", type=float, default=120.0,
                         help="how long to wait for the stop")  # fmt: skip
    restart.set_defaults(func=run_restart)
    status = verbs.add_parser("status", help="print running, stale or stopped",
                              description="Print one word. Exit status: 0 running, 1 stale (the "
                              "runner died without releasing its lease), 3 stopped.")  # fmt: skip
    status.set_defaults(func=run_status)
    info = verbs.add_parser("info", help="show the runner's host, pid, heartbeat and processes",
                            description="Show who holds the lease: host, pid, user, start time, "
                            "heartbeat age, and what each action process is doing.")  # fmt: skip
    add_json_flag(info)
    info.set_defaults(func=run_info)
    logs = verbs.add_parser("logs", help="print the runner's log",
                            description="Print the end of the runner's log file (on this host).")
    logs.add_argument("-n", "--lines", metavar="N", type=int, default=50, help="lines to print")
    logs.add_argument("-f", "--follow", action="store_true", help="keep printing new lines")
    logs.set_defaults(func=run_logs)


def _project(args):
    from jfr_lib.config import load_project

    return load_project(args.project)


def run_run(args) -> int:
    from jfr_lib.daemon import setup_logging
    from jfr_lib.runner import Runner

    project = _project(args)
    setup_logging(project, stderr=True, debug=args.debug)
    return Runner(project, once=args.once, exit_when_idle=args.exit_when_idle).run()


def run_start(args) -> int:
    from jfr_lib.daemon import start

    project = _project(args)
    started, lease = start(project, debug=args.debug)
    where = f"on {lease['host']} (pid {lease['pid']})" if lease else ""
    if started:
        print(f"runner started {where}; log: {project.log_path}")
    else:
        print(f"runner already running {where}")
    return 0


def run_stop(args) -> int:
    from jfr_lib.daemon import stop

    lease = stop(_project(args), wait=args.wait)
    if lease is None:
        print("runner is not running")
    elif args.wait > 0:
        print(f"runner on {lease['host']} (pid {lease['pid']}) stopped")
    else:
        print(f"stop requested from the runner on {lease['host']} (pid {lease['pid']})")
    return 0


def run_kill(args) -> int:
    from jfr_lib.daemon import kill

    lease = kill(_project(args))
    print("runner is not running" if lease is None else f"runner (pid {lease['pid']}) killed")
    return 0


def run_restart(args) -> int:
    from jfr_lib.daemon import start, stop

    project = _project(args)
    stop(project, wait=args.wait)
    started, lease = start(project, debug=args.debug)
    print(f"runner started on {lease['host']} (pid {lease['pid']})")
    return 0


def run_status(args) -> int:
    from jfr_lib.daemon import STATUS_CODES, current

    word, _ = current(_project(args))
    print(word)
    return STATUS_CODES[word]


def run_info(args) -> int:
    import time

    from jfr_lib.daemon import current

    project = _project(args)
    word, lease = current(project)
    data = {"status": word, "project": project.name, "log": str(project.log_path)}
    if lease:
        data.update({k: lease.get(k) for k in ("host", "pid", "user", "started_on")})
        data["heartbeat_age"] = round(time.time() - float(lease["heartbeat"]), 1)
        data["stop_requested"] = bool(lease.get("stop_requested"))
        data["children"] = lease.get("children") or []
    if args.json:
        print_json(data)
        return 0
    for key in ("status", "project", "host", "pid", "user", "started_on", "heartbeat_age", "log"):
        if key in data:
            suffix = " s" if key == "heartbeat_age" else ""
            print(f"{key:<14} {data[key]}{suffix}")
    for child in data.get("children", []):
        doing = f"job {child['job']}" if child.get("job") else child.get("state", "")
        if child.get("jobs") is not None:  # the warm server
            doing += f" ({child['jobs']} jobs started warm)"
        print(f"  {child['action']}[{child['index']}] pid {child['pid']}: {doing} since {child.get('since', '-')}")
    return 0


def run_logs(args) -> int:
    from jfr_lib.daemon import follow, tail

    path = _project(args).log_path
    for line in tail(path, args.lines):
        print(line)
    if args.follow:
        sys.stdout.flush()
        follow(path, sys.stdout)
    return 0
