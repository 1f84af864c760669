"""``jfr runner``: run the runner in the foreground."""

from __future__ import annotations


def add_arguments(sub) -> None:
    p = sub.add_parser("runner", help="run the jobs",
                       description="The runner moves jobs through their states: checkout, "
                       "upload, submit, monitor, download, complete.")  # fmt: skip
    verbs = p.add_subparsers(dest="verb", metavar="VERB")
    verbs.required = True
    run = verbs.add_parser("run", help="run in the foreground",
                           description="Run the runner in the foreground until interrupted "
                           "(SIGINT or SIGTERM stop it after the current step).")  # fmt: skip
    mode = run.add_mutually_exclusive_group()
    mode.add_argument("--once", action="store_true", help="do one pass of every action, then exit")
    mode.add_argument("--exit-when-idle", action="store_true",
                      help="exit when no job is ready or running")  # fmt: skip
    run.set_defaults(func=run_run)


def run_run(args) -> int:
    from jfr_lib.config import load_project
    from jfr_lib.runner import Runner

    project = load_project(args.project)
    return Runner(project, once=args.once, exit_when_idle=args.exit_when_idle).run()
