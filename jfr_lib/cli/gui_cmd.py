"""``jfr gui``: the web dashboard, on 127.0.0.1 unless ``--host`` says otherwise.

Building the parser imports nothing of the dashboard: Starlette and uvicorn (the
``gui`` extra) are imported by :func:`run` only.
"""

from __future__ import annotations

import argparse
import sys

DEFAULT_PORT = 8765


def _port(text: str) -> int:
    """An argparse ``type``: a TCP port, 0 (any free port) to 65535; an address goes with --host."""
    from jfr_lib.cli.values import whole

    value = whole(text)
    if value is None and ":" in text:
        raise argparse.ArgumentTypeError(f"{text!r}: give only the port; the address goes with --host")
    if value is None or not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"{text!r}: give a port from 0 (any free port) to 65535")
    return value


def add_arguments(sub) -> None:
    p = sub.add_parser("gui", help="serve the web dashboard",
                       description="Serve a web dashboard of the project: jobs per state and worker, the runner, "
                       "jobs and flows with their details, the graph of a flow, a report; and the actions of jfr "
                       "job (rerun, retry, pause, resume, stop, delete, priority) under the same rules. It listens "
                       "on 127.0.0.1 and prints a URL with a random token: open it once, the browser then keeps "
                       "a cookie. From a laptop, forward the port through SSH (ssh -L 8765:127.0.0.1:8765 "
                       "login-node) and open the URL there. Needs the gui extra: pip install 'jfr[gui]'.")  # fmt: skip
    p.add_argument("-p", "--project", metavar="NAME", default=argparse.SUPPRESS,
                   help="project to show (as jfr -p NAME)")  # fmt: skip
    p.add_argument("--port", metavar="PORT", type=_port, default=DEFAULT_PORT,
                   help=f"port to listen on (default {DEFAULT_PORT}; 0: any free port)")  # fmt: skip
    p.add_argument("--host", metavar="ADDRESS",
                   help="address to listen on instead of 127.0.0.1 (another machine's browser may then reach "
                   "it: the token is still required)")  # fmt: skip
    p.add_argument("--read-only", action="store_true", help="offer no action and refuse every action request")
    p.set_defaults(func=run)


def run(args) -> int:
    from jfr_lib.config import load_project
    from jfr_lib.errors import UsageError

    try:
        import jinja2  # noqa: F401
        import starlette  # noqa: F401
        import uvicorn  # noqa: F401
    except ImportError as exc:
        raise UsageError(f"jfr gui needs the gui extra ({exc.name} is missing): pip install 'jfr[gui]'") from None
    from jfr_lib.cli.values import text_value
    from jfr_lib.gui.server import is_loopback, serve

    host = "127.0.0.1" if args.host is None else text_value(args.host, "--host").strip()
    if not host:
        raise UsageError("--host: give an address, not an empty string")
    project = load_project(args.project)
    if not is_loopback(host):
        print(f"jfr: warning: listening on {host}, not on 127.0.0.1 only: anyone who can reach this port can try; "
              "the token is still required, but the traffic is not encrypted (an SSH tunnel is safer)",
              file=sys.stderr, flush=True)  # fmt: skip
    return serve(project, host, args.port, read_only=args.read_only)
