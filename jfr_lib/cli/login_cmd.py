"""``jfr login``: log workers with ``interactive_login`` in, on this terminal."""

from __future__ import annotations

import sys

from jfr_lib.cli.output import add_json_flag, print_json, printable
from jfr_lib.cli.values import seconds_type


def add_arguments(sub) -> None:
    p = sub.add_parser("login", help="log a worker with interactive_login in (one-time code, password)",
                       description="Log in the workers that have `interactive_login: true`, asking on this "
                       "terminal for what their host wants (a one-time code, a password). The runner's "
                       "processes then ride on that login until it ends; a worker whose login is gone waits "
                       "in the \"login needed\" state, and its jobs go on as soon as `jfr login` brings it "
                       "back. Without WORKER: every such worker not logged in now.")  # fmt: skip
    p.add_argument("workers", nargs="*", metavar="WORKER", help="worker(s) to log in")
    p.add_argument("--status", action="store_true", help="only say which workers are logged in "
                   "(exit 1 when one is not; with --json: name -> true/false)")  # fmt: skip
    p.add_argument("--logout", action="store_true", help="close the logins of these workers")
    p.add_argument("--timeout", type=seconds_type, default=300.0, metavar="SECONDS",
                   help="seconds to wait for what you type (default 300)")  # fmt: skip
    add_json_flag(p)
    p.set_defaults(func=run)


def _chosen(project, names) -> list:
    from jfr_lib.errors import UsageError
    from jfr_lib.login import interactive

    if not names:
        chosen = interactive(project)
        if not chosen:
            raise UsageError(f"project {project.name} has no worker with `interactive_login: true`")
        return chosen
    out = []
    for name in names:
        worker = project.workers.get(name)
        if worker is None:
            raise UsageError(f"unknown worker {printable(name)!r} (known: {', '.join(project.workers)})")
        if not worker.interactive_login or worker.is_local:
            raise UsageError(f"worker {name} does not log in interactively (set `interactive_login: true` "
                             "for a remote worker)")  # fmt: skip
        out.append(worker)
    return out


def run(args) -> int:
    from jfr_lib.config import load_project
    from jfr_lib.errors import UsageError
    from jfr_lib.login import log_in, log_out, logged_in, restored

    project = load_project(args.project)
    workers = _chosen(project, args.workers)
    if args.status:
        down = [w for w in workers if not logged_in(w)]
        if args.json:
            print_json({w.name: w not in down for w in workers})
        else:
            for w in workers:
                print(f"{w.name}: {'login needed' if w in down else 'logged in'}")
        return 1 if down else 0
    if args.logout:
        for w in workers:
            print(f"{w.name}: {'logged out' if log_out(w) else 'no login of jfr to close'}")
        return 0
    todo = [w for w in workers if not logged_in(w)]
    if todo and not sys.stdin.isatty():
        raise UsageError(f"worker {todo[0].name} needs a login, and logging in needs a terminal "
                         "(run `jfr login` in one)")  # fmt: skip
    for w in workers:
        if w in todo:
            print(f"{w.name}: logging in to {w.host}", flush=True)
            log_in(w, log_path=project.log_path, timeout=args.timeout)
        waited = restored(project, w)
        print(f"{w.name}: logged in" + (f"; {waited} waiting jobs go on" if waited else ""))
    return 0
