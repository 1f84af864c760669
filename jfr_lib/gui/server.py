"""Serving the dashboard: the listening socket, the printed URL, uvicorn, a clean stop.

The socket is bound here, before uvicorn starts, so that a port in use or an
address that cannot be bound is a one-line error, and ``--port 0`` can print the
port the system chose. Ctrl-C and SIGTERM stop the server gracefully and the
command returns 0.
"""

from __future__ import annotations

import contextlib
import ipaddress
import signal
import socket
import sys

from jfr_lib.errors import JfrError, UsageError


def is_loopback(host: str) -> bool:
    """Whether ``host`` (an address or ``localhost``) is a loopback address."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def bind(host: str, port: int) -> socket.socket:
    """A listening TCP socket on ``host:port``; a one-line error when it cannot be had."""
    host = host.strip("[]")
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise UsageError(f"--host {host}: not an address of this machine ({exc.strerror})") from None
    family, kind, proto, _, address = infos[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(128)
    except OSError as exc:
        sock.close()
        import errno

        if exc.errno == errno.EADDRINUSE:
            raise JfrError(f"--port {port}: address {host}:{port} is already in use (choose another port, or "
                           "--port 0 for any free one)") from None  # fmt: skip
        if exc.errno == errno.EACCES:
            raise JfrError(f"--port {port}: not allowed to listen on {host}:{port} (ports below 1024 need root)") \
                from None  # fmt: skip
        raise JfrError(f"--host {host}: cannot listen on {host}:{port}: {exc.strerror}") from None
    sock.set_inheritable(True)
    return sock


def url_of(sock: socket.socket, token: str) -> str:
    host, port = sock.getsockname()[:2]
    shown = f"[{host}]" if ":" in host else host
    return f"http://{shown}:{port}/?token={token}"


def serve(project, host: str, port: int, read_only: bool = False, out=None) -> int:
    """Serve the dashboard of ``project`` until Ctrl-C or SIGTERM; returns the exit code.

    Parameters
    ----------
    project
        The project.
    host, port
        Where to listen (``port`` 0: any free port).
    read_only
        Offer no action and refuse every action request.
    out
        Where the URL is printed (stdout by default).
    """
    import uvicorn

    from jfr_lib.gui.app import create_app
    from jfr_lib.gui.auth import Keys, new_token

    out = out or sys.stdout
    sock = bind(host, port)
    token = new_token()
    keys = Keys(token, sock.getsockname()[1])
    app = create_app(project, keys, read_only=read_only, loopback_only=is_loopback(host),
                     bound=sock.getsockname()[0])  # fmt: skip
    config = uvicorn.Config(app, log_level="warning", access_log=False, timeout_graceful_shutdown=5,
                            lifespan="on", server_header=False)  # fmt: skip
    server = _server_class()(config)
    mode = " (read-only)" if read_only else ""
    print(f"jfr dashboard of project {project.name}{mode}: {url_of(sock, token)}", file=out, flush=True)
    print("open it in a browser (the token is asked once, then kept in a cookie); Ctrl-C stops it",
          file=out, flush=True)  # fmt: skip
    try:
        server.run(sockets=[sock])
    finally:
        sock.close()
    print("jfr dashboard stopped", file=out, flush=True)
    return 0


def _server_class():
    """uvicorn's server, stopping gracefully on SIGINT and SIGTERM and then returning normally
    (uvicorn would raise the signal again once stopped, killing the process by it)."""
    import uvicorn

    class Server(uvicorn.Server):
        @contextlib.contextmanager
        def capture_signals(self):
            wanted = (signal.SIGINT, signal.SIGTERM)
            previous = {s: signal.signal(s, self.handle_exit) for s in wanted}
            try:
                yield
            finally:
                for sig, handler in previous.items():
                    signal.signal(sig, handler)

    return Server
