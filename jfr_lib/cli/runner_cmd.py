"""``jfr runner``: run, start, stop, kill, restart, status, info, logs, cron-line.

``foreground`` is another name of ``run``, ``shutdown`` of ``stop`` (jobflow-remote's
names); ``stop --all`` and ``kill --all`` act on every project's runner on this host.

status, info, stop, kill and logs work even when the project file has become
invalid while a runner runs: they read what they need from it leniently and
say in one warning line that it is invalid.
"""

from __future__ import annotations

import argparse
import sys

from jfr_lib.cli.output import add_json_flag, print_json, printable
from jfr_lib.cli.selection import count_type, seconds_type


def add_arguments(sub) -> None:
    p = sub.add_parser("runner", help="run the jobs",
                       description="The runner moves jobs through their states: checkout, upload, "
                       "submit, monitor, download, complete. One runner runs per project; it holds "
                       "a lease in the queue database.")  # fmt: skip
    verbs = p.add_subparsers(dest="verb", metavar="VERB")
    verbs.required = True
    run = verbs.add_parser("run", aliases=["foreground"], help="run in the foreground",
                           description="Run the runner in the foreground until interrupted "
                           "(SIGINT or SIGTERM stop it after the current step). `foreground` is "
                           "another name of this command.")  # fmt: skip
    mode = run.add_mutually_exclusive_group()
    mode.add_argument("--once", action="store_true", help="do one pass of every action, then exit")
    mode.add_argument("--exit-when-idle", action="store_true", help="exit when no job is ready or running")
    run.set_defaults(func=run_run)
    start = verbs.add_parser("start", help="start the runner in the background",
                             description="Start the runner as a daemon and return once it runs. "
                             "When a runner already runs for the project, say so and exit 0, so "
                             "cron may call this every few minutes.")  # fmt: skip
    start.set_defaults(func=run_start)
    stop = verbs.add_parser("stop", aliases=["shutdown"], help="stop the runner after its current step",
                            description="Ask the runner to stop through the queue database (this "
                            "works from any host) and wait until it has; --all: the runner of every "
                            "project that runs on this host. `shutdown` is another name of this "
                            "command.")  # fmt: skip
    stop.add_argument("--wait", "-w", metavar="SECONDS", nargs="?", type=seconds_type, default=120.0, const=120.0,
                      help="how long to wait (default 120; 0: do not wait)")  # fmt: skip
    stop.add_argument("-m", "--max-wait", dest="wait", metavar="SECONDS", type=seconds_type, help=argparse.SUPPRESS)
    stop.add_argument("-a", "--all", action="store_true", help="every project's runner on this host")
    stop.add_argument("--logout", action="store_true", help="also close the logins of the workers with "
                      "interactive_login (else they stay for the next start)")  # fmt: skip
    stop.set_defaults(func=run_stop)
    kill = verbs.add_parser("kill", help="kill the runner at once",
                            description="Kill the runner and its action processes with SIGKILL "
                            "(this host only); --all: the runner of every project that runs on this "
                            "host. Running jobs are not touched.")  # fmt: skip
    kill.add_argument("-a", "--all", action="store_true", help="every project's runner on this host")
    kill.set_defaults(func=run_kill)
    restart = verbs.add_parser("restart", help="stop the runner, then start it",
                               description="Stop the runner gracefully, then start a daemon.")
    restart.add_argument("--wait", metavar="SECONDS", type=seconds_type, default=120.0,
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
    logs.add_argument("-n", "--lines", metavar="N", type=count_type(), default=50,
                      help="lines to print (default 50)")  # fmt: skip
    logs.add_argument("-f", "--follow", action="store_true", help="keep printing new lines")
    logs.set_defaults(func=run_logs)
    cron = verbs.add_parser("cron-line", help="print a crontab line that keeps the runner started",
                            description="Print a line for `crontab -e` that runs `jfr runner start` every "
                            "MIN minutes. Cron's PATH and environment are not the shell's, and `jfr` may "
                            "name another program there (the JDK's Flight Recorder), so the line names this "
                            "Python and this jfr by absolute paths, and sets the variables that decide where "
                            "the project's file and data are and what jobs can import (JFR_PROJECTS_DIR; "
                            "XDG_DATA_HOME, XDG_STATE_HOME and PYTHONPATH when set). What start prints is "
                            "discarded; its errors go to the runner log, where start also notes when a "
                            "runner already runs.")  # fmt: skip
    cron.add_argument("--every", metavar="MIN", type=count_type(1, 59), default=5,
                      help="minutes between two starts (1 to 59, default 5)")  # fmt: skip
    cron.set_defaults(func=run_cron_line)


def _project(args):
    from jfr_lib.config import load_project

    return load_project(args.project)


def _control_project(args):
    """The project, or what can be read of its file when it is invalid (with a warning line)."""
    from jfr_lib.config_lenient import lenient_project

    project, problem = lenient_project(args.project)
    if problem is not None:
        from jfr_lib.redact import mask_text

        problems = "; ".join(str(problem).split("\n"))
        print(f"jfr: warning: the project file is invalid ({printable(mask_text(problems))}); "
              "using its base_dir, log_dir and queue as far as they can be read", file=sys.stderr)  # fmt: skip
    return project


def run_run(args) -> int:
    from jfr_lib.daemon import setup_logging
    from jfr_lib.runner import Runner

    project = _project(args)
    setup_logging(project, stderr=True, debug=args.debug)
    return Runner(project, once=args.once, exit_when_idle=args.exit_when_idle).run()


def run_start(args) -> int:
    from jfr_lib.daemon import start

    project = _project(args)
    _log_in(project)
    started, lease = start(project, debug=args.debug)
    where = f"on {lease['host']} (pid {lease['pid']})" if lease else ""
    if started:
        print(f"runner started {where}; log: {project.log_path}")
    else:
        print(f"runner already running {where}")
    return 0


def _log_in(project) -> None:
    """Log in the workers with ``interactive_login`` on this terminal, once each; without a
    terminal, say which wait for ``jfr login`` (a daemon never asks)."""
    from jfr_lib.errors import HostError
    from jfr_lib.login import interactive, log_in, logged_in, restored

    for worker in interactive(project):
        if logged_in(worker):
            continue
        if not sys.stdin.isatty():
            print(f"jfr: warning: worker {worker.name} needs a login: its jobs wait until `jfr login "
                  f"{worker.name}` is run on a terminal", file=sys.stderr)  # fmt: skip
            continue
        print(f"{worker.name}: logging in to {worker.host}", flush=True)
        try:
            log_in(worker, log_path=project.log_path)
        except HostError as exc:
            print(f"jfr: warning: {printable(exc)}; the jobs of worker {worker.name} wait until `jfr login "
                  f"{worker.name}`", file=sys.stderr)  # fmt: skip
            continue
        restored(project, worker)


def run_stop(args) -> int:
    from jfr_lib.daemon import stop

    if args.all:
        def stop_one(project, lease) -> str:
            stop(project, wait=args.wait)
            return f"runner (pid {lease['pid']}) {'stopped' if args.wait > 0 else 'asked to stop'}"

        return _each_runner_here(stop_one)
    project = _control_project(args)
    lease = stop(project, wait=args.wait)
    if lease is None:
        print("runner is not running")
    elif args.wait > 0:
        print(f"runner on {lease['host']} (pid {lease['pid']}) stopped")
    else:
        print(f"stop requested from the runner on {lease['host']} (pid {lease['pid']})")
    if args.logout:
        from jfr_lib.login import close_all

        for name in close_all(project):
            print(f"{name}: logged out")
    return 0


def run_kill(args) -> int:
    from jfr_lib.daemon import kill

    if args.all:
        def kill_one(project, lease) -> str:
            kill(project)
            return f"runner (pid {lease['pid']}) killed"

        return _each_runner_here(kill_one)
    lease = kill(_control_project(args))
    print("runner is not running" if lease is None else f"runner (pid {lease['pid']}) killed")
    return 0


def _each_runner_here(act) -> int:
    """``act(project, lease)`` for every project whose runner runs on this host; one line each."""
    import socket

    from jfr_lib.config import project_files
    from jfr_lib.config_lenient import lenient_project
    from jfr_lib.daemon import current
    from jfr_lib.errors import JfrError

    here, acted, failures = socket.gethostname(), 0, 0
    for name in project_files():
        try:
            project, _ = lenient_project(name)
            word, lease = current(project)
            if lease is None or word != "running" or lease.get("host") != here:
                continue
            print(f"{printable(name)}: {act(project, lease)}")
            acted += 1
        except JfrError as exc:
            failures += 1
            print(f"jfr: error: project {printable(name)}: {printable(exc)}", file=sys.stderr)
    if not acted and not failures:
        print(f"no runner runs on this host ({here})")
    return 1 if failures else 0


def run_restart(args) -> int:
    from jfr_lib.daemon import start, stop

    project = _project(args)
    stop(project, wait=args.wait)
    started, lease = start(project, debug=args.debug)
    print(f"runner started on {lease['host']} (pid {lease['pid']})")
    return 0


def run_status(args) -> int:
    from jfr_lib.daemon import STATUS_CODES, current

    word, _ = current(_control_project(args))
    print(word)
    return STATUS_CODES[word]


def run_info(args) -> int:
    import time

    from jfr_lib.cli.output import local_time
    from jfr_lib.daemon import current

    project = _control_project(args)
    word, lease = current(project)
    data = {"status": word, "project": project.name, "log": str(project.log_path)}
    if lease:
        data.update({k: lease.get(k) for k in ("host", "pid", "user", "started_on")})
        data["heartbeat_age"] = round(time.time() - float(lease["heartbeat"]), 1)
        data["stop_requested"] = bool(lease.get("stop_requested"))
        data["children"] = lease.get("children") or []
    data["login_needed"] = _logins_needed(project)
    if args.json:
        print_json(data)
        return 0
    for key in ("status", "project", "host", "pid", "user", "started_on", "heartbeat_age", "log"):
        if key in data:
            suffix = " s" if key == "heartbeat_age" else ""
            value = local_time(data[key]) if key == "started_on" and data[key] else data[key]
            print(f"{key:<14} {printable(value)}{suffix}")
    for mark in data["login_needed"]:
        print(f"login needed   worker {mark['worker']} since {local_time(mark['since'])}: "
              f"{printable(mark['reason'])}")  # fmt: skip
    for child in data.get("children", []):
        doing = f"job {child['job']}" if child.get("job") else child.get("state", "")
        if child.get("jobs") is not None:  # the warm server
            doing += f" ({child['jobs']} jobs started warm)"
        since = local_time(child["since"]) if child.get("since") else "-"
        print(f"  {child['action']}[{child['index']}] pid {child['pid']}: {doing} since {since}")
    return 0


def _logins_needed(project) -> list:
    """The workers waiting for a login, as recorded by the runner (none when the database cannot say)."""
    from datetime import datetime, timezone

    from jfr_lib import login_marks
    from jfr_lib.queue_db import open_queue_db

    try:
        with open_queue_db(project) as db:
            marks = login_marks.needed(db, project.workers)
    except Exception:  # runner info works even when the database does not (it says the rest)
        return []
    return [dict(m, since=datetime.fromtimestamp(m["since"], timezone.utc).isoformat(timespec="seconds"))
            for m in marks]  # fmt: skip


class _Escaped:
    """stdout, with what a terminal would act on escaped (a job name in a log line may hold escape codes)."""

    def write(self, text: str) -> None:
        from jfr_lib.cli.output import printable_lines

        sys.stdout.write(printable_lines(text))

    def flush(self) -> None:
        sys.stdout.flush()


def run_logs(args) -> int:
    from jfr_lib.daemon import follow, tail

    path = _control_project(args).log_path
    for line in tail(path, args.lines):
        print(printable(line))
    if args.follow:
        sys.stdout.flush()
        follow(path, _Escaped())
    return 0


#: What the crontab line runs: this interpreter's jfr, whatever ``jfr`` is on cron's PATH.
CRON_CODE = "import sys; from jfr_lib.cli import main; sys.exit(main())"


def run_cron_line(args) -> int:
    import os
    import shlex

    project = _project(args)
    env = {"JFR_PROJECTS_DIR": str(project.path.parent)}
    for var in ("XDG_DATA_HOME", "XDG_STATE_HOME", "PYTHONPATH"):  # the data folder, the log, job imports
        if os.environ.get(var):
            env[var] = os.environ[var]
    code = CRON_CODE
    where = _jfr_lib_parent()
    if _found_by_cron(env) != where:  # run from a checkout: cron's python must be told where
        code = f"import sys; sys.path.insert(0, {str(where)!r}); " + code.removeprefix("import sys; ")
    log = project.log_path
    from jfr_lib.private import private_dir

    private_dir(log.parent)  # the line's redirection needs the folder
    words = [*(f"{k}={shlex.quote(v)}" for k, v in env.items()), shlex.quote(sys.executable), "-c",
             shlex.quote(code), "-p", shlex.quote(project.name), "runner", "start", ">/dev/null",
             f"2>>{shlex.quote(str(log))}"]  # fmt: skip
    command = " ".join(words).replace("%", "\\%")  # cron turns a bare % into a line break
    print(f"*/{args.every} * * * * {command}")
    return 0


def _jfr_lib_parent():
    from pathlib import Path

    import jfr_lib

    return Path(jfr_lib.__file__).resolve().parent.parent


def _found_by_cron(env: dict):
    """The folder this Python imports jfr_lib from in cron's environment (HOME, a short PATH, ``env``)."""
    import os
    import subprocess
    from pathlib import Path

    probe = "import importlib.util as u; s = u.find_spec('jfr_lib'); print(s.origin if s else '')"
    home = os.path.expanduser("~")
    try:
        result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60,
                                cwd=home, env={"HOME": home, "PATH": "/usr/bin:/bin", **env})  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        return None
    origin = result.stdout.strip()
    return Path(origin).resolve().parent.parent if result.returncode == 0 and origin else None
