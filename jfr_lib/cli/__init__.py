"""The ``jfr`` command line.

Building the parser imports only the standard library; each command imports
what it needs inside its ``run``. Only :func:`main` catches errors: it prints
one line and returns the error's exit code (a traceback only with ``--debug``).
A bad option is one line too (exit 2), and what a message echoes (a job name, a
value given) is shown with control characters escaped.
"""

from __future__ import annotations

import argparse
import sys

from jfr_lib import __version__
from jfr_lib.redact import mask_text

GROUPS = ("project", "job", "flow", "runner", "login", "batch", "gui", "backup", "admin", "completion")


class Parser(argparse.ArgumentParser):
    """An argument parser whose errors are one line, like every other error of jfr.

    An unknown option is reported by the sub-command it was given to (``jfr job
    list: error: unrecognized arguments: --bogus (see jfr job list --help)``), not
    by the top-level parser, which is where argparse would report it.
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.register("action", "parsers", _SubCommands)

    def error(self, message):
        from jfr_lib.cli.output import printable

        self.exit(2, f"{self.prog}: error: {printable(message)} (see {self.prog} --help)\n")


class _SubCommands(argparse._SubParsersAction):
    """Sub-commands whose parser reports the arguments it did not recognize."""

    def __call__(self, parser, namespace, values, option_string=None):
        key = argparse._UNRECOGNIZED_ARGS_ATTR
        before = len(getattr(namespace, key, []))
        super().__call__(parser, namespace, values, option_string)
        extra = getattr(namespace, key, [])[before:]
        if extra:
            chosen = self._name_parser_map.get(values[0], parser)
            chosen.error(f"unrecognized arguments: {' '.join(extra)}")


def build_parser() -> argparse.ArgumentParser:
    import importlib

    parser = Parser(
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


def _keep_undecodable_bytes() -> None:
    # An argument that was not UTF-8 (a file name) reaches Python as surrogates;
    # printed back (the path of a copied file) it must be its own bytes, not a crash.
    for stream in (sys.stdout, sys.stderr):
        if getattr(stream, "errors", None) == "strict" and hasattr(stream, "reconfigure"):
            utf8 = (getattr(stream, "encoding", "") or "").lower().replace("-", "") == "utf8"
            stream.reconfigure(errors="surrogateescape" if utf8 else "backslashreplace")


def main(argv=None) -> int:
    """Run the command line; returns the exit code."""
    from jfr_lib.cli.output import printable
    from jfr_lib.errors import JfrError, UsageError

    _keep_undecodable_bytes()
    parser = build_parser()
    args = parser.parse_args(argv)
    setup_logging(args.debug)
    try:
        if args.project == "":  # not "no -p": an empty $VAR must not fall back to the only project
            raise UsageError("-p: give a project name or file, not an empty string")
        return int(args.func(args) or 0)
    except JfrError as exc:
        if args.debug:
            raise
        for line in str(exc).split("\n"):  # a file's problems, one line each
            print(f"jfr: error: {printable(mask_text(line))}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("jfr: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0
    except OSError as exc:  # the system refused a file or a process the command needed: say which
        if args.debug:
            raise
        what = f"{exc.filename}: {exc.strerror}" if exc.filename and exc.strerror else str(exc)
        print(f"jfr: error: {printable(mask_text(what))}", file=sys.stderr)
        return 1
    except Exception as exc:  # an unexpected failure still gets one line
        if args.debug:
            raise
        print(f"jfr: internal error: {type(exc).__name__}: {printable(mask_text(exc))} (rerun with --debug for "
              "the traceback)", file=sys.stderr)  # fmt: skip
        return 1
