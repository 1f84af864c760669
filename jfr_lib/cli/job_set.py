"""``jfr job set worker|exec-config|resources|priority`` and ``jfr job set-state``."""

from __future__ import annotations

import json
import sys

from jfr_lib.cli.selection import add_filters, confirm, select_jobs

#: Where ``set-state`` says it goes around jfr's rules.
BYPASS = ("set-state bypasses jfr's rules: it changes only the state (and clears the error and retry count), "
          "releases no child, touches no output and cancels nothing in a queue")  # fmt: skip


def add_verbs(verbs) -> None:
    """Add ``set`` and ``set-state`` to the verbs of ``jfr job``."""
    setp = verbs.add_parser("set", help="change a setting of jobs the runner is not working on",
                            description="Change the worker, exec_config, resources or priority of jobs that "
                            "are WAITING, READY, PAUSED, or finished (COMPLETED, FAILED, REMOTE_ERROR, STOPPED, "
                            "USER_STOPPED: the change applies to a rerun). A job the runner holds is refused. "
                            "The value comes first or after the selection, as in jobflow-remote "
                            "(`jfr job set worker -did 8 W`).")  # fmt: skip
    what = setp.add_subparsers(dest="setting", metavar="SETTING")
    what.required = True
    for name, metavar, text in (("worker", "WORKER", "the worker (a name from the project)"),
                                ("exec-config", "EXEC_CONFIG", "the exec_config (a name, or JSON)"),
                                ("resources", "RESOURCES", "the scheduler resources (JSON, or k=v,k2=v2)"),
                                ("priority", "PRIORITY", "the priority (higher runs first)")):  # fmt: skip
        desc = (f"Set {text}." if name != "resources" else "Merge a mapping (JSON, or k=v,k2=v2) into the "
                "scheduler resources: its keys win, a key set to null is removed; --replace replaces the whole "
                "mapping; --qresources gives a qtoolkit QResources instead.")  # fmt: skip
        sp = what.add_parser(name, help=f"change {text}", description=desc)
        sp.add_argument("value", metavar=metavar, help=text)
        add_filters(sp)
        sp.add_argument("-y", "--yes", action="store_true", help="do not ask for confirmation")
        sp.add_argument("-re", "--raise-on-error", action="store_true", help="stop at the first job refused")
        if name == "resources":
            sp.add_argument("--replace", "-r", action="store_true",
                            help="replace the resources instead of merging into them")  # fmt: skip
            sp.add_argument("--qresources", "-qr", action="store_true",
                            help="the keys are QResources fields; the job gets a QResources (replacing)")  # fmt: skip
        sp.set_defaults(func=run_set)
    st = verbs.add_parser("set-state", help="force the state of jobs (experts only)",
                          description="Set the state of jobs to any state, as jobflow-remote's set-state does. "
                          f"{BYPASS[0].upper() + BYPASS[1:]}. Without --force it asks first. A job the runner "
                          "holds is refused.")  # fmt: skip
    st.add_argument("new_state", metavar="STATE", help="the new state")
    add_filters(st)
    st.add_argument("-f", "--force", action="store_true", help="do not ask: I know the rules are bypassed")
    st.set_defaults(func=run_set_state)


def for_each(jobs: list, func, stop_at_error: bool = False) -> int:
    """Apply ``func`` to each job, printing one line per job; a refusal of one job among many is
    reported and the others go on (exit 1), unless ``stop_at_error``; a single job's refusal is
    the command's error."""
    from jfr_lib.cli.output import printable
    from jfr_lib.errors import JfrError

    failures = 0
    for job in jobs:
        try:
            print(f"job {job['db_id']}: {func(job)}")
        except JfrError as exc:
            if len(jobs) == 1 or stop_at_error:
                raise
            failures += 1
            print(f"jfr: error: {printable(exc)}", file=sys.stderr)
    return 1 if failures else 0


def _value(args):
    """The value given to ``set``, read for its setting."""
    from jfr_lib.cli.compat import mapping_value
    from jfr_lib.cli.values import parse_int, text_value

    value = text_value(args.value, args.setting)
    if args.setting == "priority":
        return parse_int(value, "priority")
    if args.setting == "resources":
        value = mapping_value(value, args.setting)
        if args.qresources:
            from qtoolkit.core.data_objects import QResources

            from jfr_lib.errors import UsageError

            unknown = sorted(set(value) - set(QResources.__dataclass_fields__))
            if unknown:
                raise UsageError(f"resources: {', '.join(unknown)} is not a QResources field")
            value = {"@module": "qtoolkit.core.data_objects", "@class": "QResources", **value}
        return value
    if args.setting == "exec-config" and value.lstrip().startswith("{"):
        return mapping_value(value, args.setting)
    return value


def run_set(args) -> int:
    from jfr_lib import control
    from jfr_lib.config import load_project
    from jfr_lib.errors import StateError
    from jfr_lib.queue_db import open_queue_db

    key = {"exec-config": "exec_config"}.get(args.setting, args.setting)
    value = _value(args)
    project = load_project(args.project)
    with open_queue_db(project) as db:
        jobs = select_jobs(args, db)
        if not jobs:
            print("no job matches", file=sys.stderr)
            return 3
        if not confirm(f"set the {args.setting} of", len(jobs), args.yes):
            print("nothing done", file=sys.stderr)
            return 1

        def change(job) -> str:
            if key == "worker" and job["state"] == "REMOTE_ERROR" and job.get("run_dir"):
                raise StateError(f"job {job['db_id']} is REMOTE_ERROR with a run folder on worker "
                                 f"{job['worker']}, where a retry would go on: rerun it (a fresh folder), "
                                 "then set its worker")  # fmt: skip
            replace = getattr(args, "replace", False) or getattr(args, "qresources", False)
            job = control.set_value(db, project, job, key, value, replace=replace)
            return f"{args.setting} {json.dumps(job.get(key, value))}"

        return for_each(jobs, change, args.raise_on_error)


def run_set_state(args) -> int:
    from jfr_lib import control
    from jfr_lib.cli.output import printable
    from jfr_lib.cli.selection import ask, states_of
    from jfr_lib.config import load_project
    from jfr_lib.errors import StateError, UsageError
    from jfr_lib.queue_db import open_queue_db
    from jfr_lib.states import JobState

    new = states_of([args.new_state], JobState)
    if len(new) != 1:
        raise UsageError("STATE: give one state")
    new = new[0]
    project = load_project(args.project)
    with open_queue_db(project) as db:
        jobs = select_jobs(args, db)
        if not jobs:
            print("no job matches", file=sys.stderr)
            return 3
        if not args.force:
            print(f"jfr: warning: {BYPASS}", file=sys.stderr)
            if not ask(f"set the state of {len(jobs)} job{'s' if len(jobs) > 1 else ''} to {new}?"):
                print("nothing done (--force to skip this question)", file=sys.stderr)
                return 1

        def force(job) -> str:
            changes = {"state": new, "previous_state": job["state"], "step_attempts": 0, "retry_time": None,
                       "error": None, "traceback": None}  # fmt: skip
            if job.get("lock_id") or not db.update_job(job["db_id"], changes, state=job["state"], lock_id=None):
                raise StateError(f"job {job['db_id']} ({printable(job.get('name'))}) is being worked on by the "
                                 "runner; try again")  # fmt: skip
            db.refresh_flow_state(job["flow_uuid"])
            control.wake(db, new)
            return f"{job['state']} -> {new}"

        return for_each(jobs, force)

