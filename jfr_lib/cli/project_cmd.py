"""``jfr project``: create, list and show project files."""

from __future__ import annotations

import argparse

from jfr_lib.cli.output import add_json_flag, print_json, print_table

STARTER = """\
# jfr project file. Keys follow jobflow-remote's, so its files load unchanged.
name: {name}

# Data folder: the embedded queue database (queue.db) and JobStore live here.
base_dir: {base_dir}

workers:
  # A worker is where jobs run. `local` runs them on this machine, each as its
  # own background process; `remote` (with host, user, ...) runs them over SSH.
  local:
    type: local
    scheduler_type: shell      # shell, slurm, pbs or sge
    work_dir: {work_dir}
    # max_jobs: 4              # most jobs queued or running at once
    # pre_run: |               # shell lines run before every job
    #   source ~/venv/bin/activate
    # resources: {{}}            # default scheduler options

# Named environments for jobs (select with exec_config="NAME").
exec_config: {{}}
#  example:
#    modules: [python/3.11]
#    export: {{OMP_NUM_THREADS: "1"}}
#    pre_run: "echo starting"

# queue: absent = embedded SQLite file in base_dir. For MongoDB:
# queue:
#   backend: mongodb
#   uri: mongodb://localhost:27017
#   database: jfr
#   connect_timeout: 5         # seconds to wait for the server before giving up

# jobstore: absent = embedded MontyStore in base_dir with an additional store
# named `data`. Any JobStore.from_dict_spec mapping works, e.g.
# jobstore:
#   docs_store: {{type: MongoStore, database: db, collection_name: outputs}}
#   additional_stores:
#     data: {{type: GridFSStore, database: db, collection_name: outputs_blobs}}

runner:
  max_step_attempts: 3         # tries of a failing step before REMOTE_ERROR
  delta_retry: [30, 300, 1200] # seconds before each retry
  heartbeat: 5                 # seconds between beats of the runner lease
  # processes: {{upload: 2, complete: 2}}   # more processes for busy actions
  # queue_poll_interval: 5     # seconds between queue queries (per worker: poll_interval)
  # warm_start: true           # local shell jobs fork from a process with jobflow loaded
"""


def add_arguments(sub) -> None:
    p = sub.add_parser("project", help="create, list and show projects",
                       description="Manage project files. A project names the workers, the "
                       "queue database and the JobStore.")  # fmt: skip
    verbs = p.add_subparsers(dest="verb", metavar="VERB")
    verbs.required = True
    init = verbs.add_parser("init", help="write a starter project file",
                            description="Write a commented project file with a local worker, "
                            "the embedded queue database and the embedded JobStore.")  # fmt: skip
    init.add_argument("name", metavar="NAME", help="project name (also the file name)")
    init.add_argument("--base-dir", metavar="DIR", help="data folder (default: user data folder)")
    init.add_argument("--work-dir", metavar="DIR", help="run folder of the local worker")
    init.add_argument("--format", choices=("yaml",), default="yaml", help=argparse.SUPPRESS)
    init.set_defaults(func=run_init)
    lst = verbs.add_parser("list", help="list the projects",
                           description="List the project files in the projects folder.")
    add_json_flag(lst)
    lst.set_defaults(func=run_list)
    check = verbs.add_parser("check", help="check that every worker and database can be reached",
                             description="For each worker: run a command on its host, check that "
                             "python -m jfr_lib.worker can run there (and show the jfr and jobflow "
                             "versions on both sides), that work_dir is writable and that the queue "
                             "answers; then the queue database and the JobStore. Exit status 0 only "
                             "when every check passes.")  # fmt: skip
    check.add_argument("-w", "--worker", metavar="WORKER", action="append",
                       help="check only this worker (repeatable)")  # fmt: skip
    add_json_flag(check)
    check.set_defaults(func=run_check)
    validate = verbs.add_parser("validate", help="check a project file without using it",
                                description="Load and validate a project file (the selected project, or "
                                "FILE); print ok or the first problem, as FILE: key: reason.")  # fmt: skip
    validate.add_argument("file", metavar="FILE", nargs="?", help="a project file (default: the project)")
    validate.set_defaults(func=run_validate)
    workers = verbs.add_parser("workers", help="list the project's workers",
                               description="List the workers of the project.")
    add_json_flag(workers)
    workers.set_defaults(func=run_workers)
    execs = verbs.add_parser("exec-configs", help="list the project's exec_configs",
                             description="List the execution configurations of the project.")
    add_json_flag(execs)
    execs.set_defaults(func=run_exec_configs)
    show = verbs.add_parser("show", help="show the loaded project",
                            description="Load and validate the project file, then show it.")
    add_json_flag(show)
    show.set_defaults(func=run_show)
    remove = verbs.add_parser("remove", help="delete a project file",
                              description="Delete the project's file after confirmation; --data also deletes "
                              "its data folder (base_dir: the embedded queue database and JobStore). The run "
                              "folders on the workers and a MongoDB queue or store are kept. Refused while the "
                              "project's runner runs.")  # fmt: skip
    remove.add_argument("name", metavar="NAME", help="the project")
    remove.add_argument("--data", action="store_true", help="also delete its data folder")
    remove.add_argument("-k", "--keep-folders", action="store_true", help=argparse.SUPPRESS)  # the default here
    remove.add_argument("-y", "--yes", action="store_true", help="do not ask for confirmation")
    remove.set_defaults(func=run_remove)
    default = verbs.add_parser("default", help="show or set the default project",
                               description="Without NAME, print the project used when none is chosen with -p, "
                               "$JFR_PROJECT or $JFREMOTE_PROJECT (exit 3 when there is none); with NAME, make "
                               "it the default; --unset forgets it.")  # fmt: skip
    default.add_argument("name", metavar="NAME", nargs="?", help="the project to use by default")
    default.add_argument("--unset", action="store_true", help="forget the default project")
    default.set_defaults(func=run_default)


def run_init(args) -> int:
    import re
    from pathlib import Path

    from jfr_lib.config import default_base_dir, load_project_file, project_files, projects_dir
    from jfr_lib.errors import UsageError

    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", args.name):
        raise UsageError(f"project name {args.name!r}: use letters, digits, '.', '_' and '-'")
    if args.name in project_files():
        raise UsageError(f"project {args.name!r} already exists: {project_files()[args.name]}")
    base = Path(args.base_dir).expanduser().absolute() if args.base_dir else default_base_dir(args.name)
    work = Path(args.work_dir).expanduser().absolute() if args.work_dir else base / "run"
    folder = projects_dir()
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{args.name}.yaml"
    path.write_text(STARTER.format(name=args.name, base_dir=base, work_dir=work))
    load_project_file(path)  # the starter must always load
    print(f"created {path}")
    return 0


def run_list(args) -> int:
    from jfr_lib.config import load_project_file, project_files
    from jfr_lib.errors import ConfigError

    rows = []
    for name, path in project_files().items():
        try:
            load_project_file(path)
            status = "ok"
        except ConfigError as exc:
            key, reason = exc.problems[0]
            status = f"invalid: {f'{key}: ' if key else ''}{reason}"
            if len(exc.problems) > 1:
                status += f" (and {len(exc.problems) - 1} more: jfr project validate {path})"
        rows.append({"name": name, "path": str(path), "status": status})
    if args.json:
        print_json(rows)
    else:
        print_table(rows, [("name", "NAME"), ("status", "STATUS"), ("path", "FILE")],
                    empty="no projects: create one with `jfr project init NAME`")  # fmt: skip
    return 0


def run_show(args) -> int:
    from dataclasses import asdict

    from jfr_lib.config import load_project
    from jfr_lib.jobstore import legacy_monty
    from jfr_lib.redact import mask_mapping

    p = load_project(args.project)
    embedded = f"embedded ({'MontyStore' if legacy_monty(p) else 'SQLiteStore'} in {p.jobstore_dir})"
    # everything shown goes through mask_mapping: a password may sit in any store spec or URI
    data = mask_mapping({
        "name": p.name,
        "file": str(p.path),
        "base_dir": str(p.base_dir),
        "queue": asdict(p.queue) | ({"path": str(p.queue_db_path)} if p.queue.backend == "sqlite" else {}),
        "workers": {n: {k: v for k, v in asdict(w).items() if v not in (None, {}, [])}
                    for n, w in p.workers.items()},
        "exec_config": {n: asdict(e) for n, e in p.exec_config.items()},
        "jobstore": p.jobstore or embedded,
        "runner": asdict(p.runner),
        "metadata": p.metadata,
        "accepted_not_used": p.replaced,  # jobflow-remote keys jfr does without, and why
    })  # fmt: skip
    if p.notify is not None:  # after the mask: a webhook's path (its token) is cut off too
        from jfr_lib.notify_send import shown

        data["notify"] = shown(p)
    if getattr(args, "json", False):
        print_json(data)
        return 0
    import json

    print(f"project {p.name} ({p.path})")
    for key, value in data.items():
        if key in ("name", "file"):
            continue
        text = json.dumps(value, indent=2, default=str) if isinstance(value, (dict, list)) else value
        print(f"{key}: {text}")
    return 0


def run_check(args) -> int:
    import sys
    from dataclasses import asdict

    from jfr_lib.check import run_checks
    from jfr_lib.config import load_project
    from jfr_lib.redact import mask_text

    checks = run_checks(load_project(args.project), args.worker)
    for c in checks:  # a host's or a database's message may carry a password
        c.label, c.detail = mask_text(c.label), mask_text(c.detail)
    if args.json:
        print_json([asdict(c) for c in checks])
    else:
        fancy = (sys.stdout.encoding or "").lower().startswith("utf")
        yes, no = ("\u2713", "\u2717") if fancy else ("ok", "FAIL")
        for c in checks:
            print(f"{yes if c.ok else no} {c.label}" + (f": {c.detail}" if c.ok and c.detail else ""))
            if not c.ok and c.detail:
                print(f"    {c.detail}")
    return 0 if all(c.ok for c in checks) else 1


def run_validate(args) -> int:
    from jfr_lib.config import find_project_file, load_project_file

    path = args.file or find_project_file(args.project)
    project = load_project_file(path)
    print(f"{project.path}: ok ({len(project.workers)} workers, {len(project.exec_config)} exec_configs)")
    return 0


def run_workers(args) -> int:
    from jfr_lib.config import load_project

    project = load_project(args.project)
    rows = [{"name": w.name, "type": w.type, "scheduler_type": w.scheduler_type,
             "host": w.host or "localhost", "user": w.user, "work_dir": w.work_dir, "max_jobs": w.max_jobs}
            for w in project.workers.values()]  # fmt: skip
    if args.json:
        print_json(rows)
    else:
        print_table(rows, [("name", "NAME"), ("type", "TYPE"), ("scheduler_type", "QUEUE"), ("host", "HOST"),
                           ("max_jobs", "MAX_JOBS"), ("work_dir", "WORK_DIR")])  # fmt: skip
    return 0


def run_exec_configs(args) -> int:
    from dataclasses import asdict

    from jfr_lib.config import load_project

    project = load_project(args.project)
    rows = [asdict(e) for e in project.exec_config.values()]
    if args.json:
        print_json(rows)
    else:
        print_table([{**r, "modules": " ".join(r["modules"]), "export": " ".join(f"{k}={v}" for k, v in
                      r["export"].items())} for r in rows],
                    [("name", "NAME"), ("modules", "MODULES"), ("export", "EXPORT")],
                    empty="no exec_config")  # fmt: skip
    return 0


def run_remove(args) -> int:
    import shutil
    import sys
    from pathlib import Path

    from jfr_lib import daemon
    from jfr_lib.cli.output import printable
    from jfr_lib.cli.selection import ask
    from jfr_lib.config import default_project, default_project_path, project_files, set_default_project
    from jfr_lib.config_lenient import lenient_project
    from jfr_lib.errors import ConfigError, JfrError, NotFoundError, StateError, UsageError

    files = project_files()
    if args.name not in files:
        raise NotFoundError(f"no project named {args.name!r} (known: {', '.join(files) or 'none'})")
    path = files[args.name]
    try:
        project, _ = lenient_project(args.name)
    except ConfigError as exc:  # a file beyond reading can still go
        if args.data:
            raise UsageError(f"--data: the file does not say where the data folder is: {exc}") from None
        project = None
    word, lease = "stopped", None
    if project is not None and (project.queue.backend != "sqlite" or project.queue_db_path.exists()):
        try:
            word, lease = daemon.current(project)
        except JfrError as exc:
            print(f"jfr: warning: cannot tell whether its runner runs: {printable(exc)}", file=sys.stderr)
    if word == "running":
        raise StateError(f"the runner of project {args.name} runs on {lease['host']} (pid {lease['pid']}): "
                         "stop it first (`jfr runner stop`)")  # fmt: skip
    data = Path(project.base_dir).resolve() if project is not None else None
    if args.data and (data == Path(data.anchor) or data in (Path.home().resolve(), *Path.home().resolve().parents)
                      or data in path.resolve().parents):  # fmt: skip
        raise UsageError(f"--data: the data folder {data} holds more than this project: delete it by hand")
    what = f"project {args.name} ({path})" + (f" and its data folder {data}" if args.data else "")
    if not args.yes and not ask(f"delete {printable(what)}?"):
        print("nothing done", file=sys.stderr)
        return 1
    path.unlink()
    print(f"deleted {printable(path)}")
    if args.data and data.exists():
        shutil.rmtree(data)
        print(f"deleted {printable(data)}")
    if default_project() == args.name and default_project_path().exists():
        set_default_project(None)
        print("it was the default project: there is none now")
    return 0


def run_default(args) -> int:
    import os
    import sys

    from jfr_lib.cli.output import printable
    from jfr_lib.config import default_project, default_project_path, project_files, set_default_project
    from jfr_lib.errors import NotFoundError, UsageError

    if args.unset and args.name:
        raise UsageError("give NAME or --unset, not both")
    for var in ("JFR_PROJECT", "JFREMOTE_PROJECT"):
        if os.environ.get(var):
            print(f"jfr: note: ${var}={printable(os.environ[var])} is set and wins over the default",
                  file=sys.stderr)  # fmt: skip
            break
    if args.unset:
        set_default_project(None)
        print("no default project")
        return 0
    if args.name is None:
        name = default_project()
        if name is None:
            print("no default project (set one with `jfr project default NAME`)", file=sys.stderr)
            return 3
        own = default_project_path().exists()
        print(printable(name) + ("" if own else " (from jobflow-remote's settings file)"))
        return 0
    files = project_files()
    if args.name not in files:
        raise NotFoundError(f"no project named {args.name!r} (known: {', '.join(files) or 'none'})")
    set_default_project(args.name)
    print(f"default project: {printable(args.name)} ({printable(files[args.name])})")
    return 0
