"""``jfr backup``: back the queue database and the embedded JobStore up, and restore them.

A folder that cannot be written (under a file, in /proc, on a full disk) is one
line naming it, never a traceback.
"""

from __future__ import annotations

from jfr_lib.cli.output import add_json_flag, print_json


def add_arguments(sub) -> None:
    p = sub.add_parser("backup", help="back up and restore the project's data",
                       description="Back the queue database and the embedded JobStore up together, "
                       "consistently even while the runner works, and restore them.")  # fmt: skip
    verbs = p.add_subparsers(dest="verb", metavar="VERB")
    verbs.required = True
    create = verbs.add_parser("create", help="write a backup into a new folder",
                              description="Write a backup of the project's data into DIR (new or empty).")
    create.add_argument("folder", metavar="DIR", help="backup folder")
    add_json_flag(create)
    create.set_defaults(func=run_create)
    restore = verbs.add_parser("restore", help="restore a backup into the project",
                               description="Restore a backup into the project's data folder; what was "
                               "there is kept under *.before-restore-* names. Refused while a runner "
                               "runs.")  # fmt: skip
    restore.add_argument("folder", metavar="DIR", help="backup folder")
    add_json_flag(restore)
    restore.set_defaults(func=run_restore)


def _failed(folder: str, doing: str, exc: Exception):
    """The one-line error of a backup or restore that the file system or SQLite refused."""
    from pathlib import Path

    from jfr_lib.cli.output import printable
    from jfr_lib.errors import JfrError, UsageError

    reason = getattr(exc, "strerror", None) or str(exc)
    if doing == "create" and not Path(folder).is_dir():  # the folder given could not even be made
        return UsageError(f"{printable(folder)}: cannot create the backup folder: {reason}")
    where = f" ({printable(exc.filename)})" if getattr(exc, "filename", None) else ""
    return JfrError(f"backup {doing} {printable(folder)} failed: {reason}{where}")


def run_create(args) -> int:
    import sqlite3

    from jfr_lib.backup import create
    from jfr_lib.config import load_project
    from jfr_lib.errors import UsageError

    if args.folder == "":
        raise UsageError("DIR: give a folder, not an empty string")
    project = load_project(args.project)
    try:
        manifest = create(project, args.folder)
    except (OSError, sqlite3.Error) as exc:
        raise _failed(args.folder, "create", exc) from None
    if args.json:
        print_json(manifest)
    else:
        print(f"backup of {manifest['project']} in {args.folder}: {manifest['jobs']} jobs, "
              f"{manifest['flows']} flows, {len(manifest['files'])} files ({manifest['seconds']} s)")  # fmt: skip
    return 0


def run_restore(args) -> int:
    import sqlite3

    from jfr_lib.backup import restore
    from jfr_lib.config import load_project

    project = load_project(args.project)
    try:
        manifest = restore(project, args.folder)
    except (OSError, sqlite3.Error) as exc:
        raise _failed(args.folder, "restore", exc) from None
    if args.json:
        print_json(manifest)
    else:
        print(f"restored {manifest['jobs']} jobs and {manifest['flows']} flows into {project.base_dir}")
    return 0
