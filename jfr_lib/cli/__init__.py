"""The ``jfr`` command line.

Building the parser imports only the standard library; each command imports
what it needs inside its ``run``. Only :func:`main` catches errors: it prints
one line and returns the error's exit code (a traceback only with ``--debug``).
"""

from __future__ import annotations

import argparse
import sys

from jfr_lib import __version__

GROUPS = ("project", "job", "flow", "runner", "backup", "admin", "completion")


def build_parser() -> argparse.ArgumentParser:
    import importlib

    parser = argparse.ArgumentParser(
        prog="jfr",
        description="Run jobflow workflows on workstations, SSH hosts and HPC clusters. "
        "Jobs live in a queue database; a runner moves them through their states "
        "and stores their outputs in the project's JobStore.",
    )
    parser.add_argument("-p", "--project", metavar="NAME",
                        help="project to use (default: $JFR_PROJECT, or the only project)")  # fmt: skip
    parser.add_argument("--debug", action="store_true", help="show tracebacks and debug logs")
    parser.add_argument("-V", "--version", action="version", version=f"jfr {__version__}")
    sub = parser.add_subparsers(dest="group", metavar="COMMAND")
    sub.required = True
    for name in GROUPS:
        importlib.import_module(f"jfr_lib.cli.{name}_cmd").add_arguments(sub)
    return parser


def setup_logging(debug: bool) -> None:
    import logging

    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(
        "%(asctime)s %(name)s[%(process)d] %(levelname)s %(message)s", "%H:%M:%S"))  # fmt: skip
    root = logging.getLogger("jfr")
    root.handlers[:] = [handler]
    root.setLevel(logging.DEBUG if debug else logging.WARNING)
    root.propagate = False


def main(argv=None) -> int:
    """Run the command line; returns the exit code."""
    from jfr_lib.errors import JfrError

    parser = build_parser()
    args = parser.parse_args(argv)
    setup_logging(args.debug)
    try:
        return int(args.func(args) or 0)
    except JfrError as exc:
        if args.debug:
            raise
        print(f"jfr: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("jfr: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0
    except Exception as exc:  # an unexpected failure still gets one line
        if args.debug:
            raise
        print(f"jfr: internal error: {type(exc).__name__}: {exc} (rerun with --debug for "
              "the traceback)", file=sys.stderr)  # fmt: skip
        return 1
