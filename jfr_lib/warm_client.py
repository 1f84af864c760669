"""The warm client: what the script of a warm job runs instead of a cold worker.

It hands the job over to the runner's warm server (:mod:`jfr_lib.warm`) and
stands in for it until it ends: it passes on signals and exits with the job's
exit code. It runs in an interpreter started with ``python -S`` and imports only
modules built into the interpreter (``_socket``, ``_signal``, ``_struct``,
``marshal``): ``site``, ``json``, ``socket`` and ``signal`` would each cost
milliseconds, and a short job's whole run takes a few tens of them. When the
job must start cold, the client replaces itself with ``python -m
jfr_lib.worker``, site included.

Messages, both ways, are marshal-encoded dicts of plain values behind a 4-byte
length. The server reads them only from processes of its own user (it checks
the peer's credentials), which could run any code as that user anyway.
"""

from __future__ import annotations

import _signal
import _socket
import _struct
import marshal
import os
import sys

RELAYED_SIGNALS = (_signal.SIGTERM, _signal.SIGINT, _signal.SIGHUP, _signal.SIGUSR1, _signal.SIGUSR2)
CONNECT_TIMEOUT = 5.0
REPLY_TIMEOUT = 30.0
MESSAGE_LIMIT = 64 * 1024 * 1024


def send(conn, message: dict) -> None:
    """Send one message (a dict of plain values)."""
    data = marshal.dumps(message)
    conn.sendall(_struct.pack("!I", len(data)) + data)


def _exactly(conn, n: int) -> bytes | None:
    data = b""
    while len(data) < n:
        chunk = conn.recv(min(n - len(data), 1 << 20))
        if not chunk:
            return None
        data += chunk
    return data


def receive(conn) -> dict | None:
    """The next message, or None when the other side closed the connection."""
    header = _exactly(conn, 4)
    if header is None:
        return None
    (size,) = _struct.unpack("!I", header)
    if size > MESSAGE_LIMIT:
        raise ValueError(f"message of {size} bytes")
    data = _exactly(conn, size)
    if data is None:
        return None
    message = marshal.loads(data)
    if not isinstance(message, dict):
        raise ValueError("not a message")
    return message


def hand_over(sock_path: str, argv: list, path=None) -> int | None:
    """Have the warm server run ``jfr_lib.worker`` with ``argv``; its exit code, or None to start cold.

    ``path``: the job's ``sys.path`` when this interpreter ran ``site``; None lets the
    server work it out (this interpreter was started without ``site``).
    """
    conn = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
    conn.settimeout(CONNECT_TIMEOUT)
    try:
        conn.connect(sock_path)
    except OSError as exc:
        print(f"jfr worker: starting cold: no warm server at {sock_path} ({exc.strerror})", file=sys.stderr)
        conn.close()
        return None
    try:
        request = {"host": _socket.gethostname(), "executable": sys.executable, "path": path,
                   "env": dict(os.environ), "cwd": os.getcwd(), "argv": list(argv)}  # fmt: skip
        sys.stdout.flush()
        sys.stderr.flush()
        conn.sendmsg([b"J"], [(_socket.SOL_SOCKET, _socket.SCM_RIGHTS, _struct.pack("3i", 0, 1, 2))])
        send(conn, request)
        conn.settimeout(REPLY_TIMEOUT)
        reply = receive(conn)
    except (OSError, ValueError, EOFError) as exc:
        print(f"jfr worker: starting cold: the warm server did not answer ({exc})", file=sys.stderr)
        conn.close()
        return None
    if not reply or "pid" not in reply:
        reason = (reply or {}).get("refused", "the warm server closed the connection")
        print(f"jfr worker: starting cold: {reason}", file=sys.stderr)
        conn.close()
        return None
    pid = int(reply["pid"])

    def relay(signum, frame):
        try:
            os.kill(pid, signum)
        except ProcessLookupError:
            pass

    for signum in RELAYED_SIGNALS:
        if _signal.getsignal(signum) is not _signal.SIG_IGN:  # nohup's SIGHUP stays ignored
            _signal.signal(signum, relay)
    conn.settimeout(None)  # the job may run for days
    try:
        done = receive(conn)
    except (OSError, ValueError, EOFError):
        done = None
    finally:
        conn.close()
    if not done or "exit" not in done:
        print(f"jfr worker: the job's process {pid} ended without reporting", file=sys.stderr)
        return 1
    return int(done["exit"])


def command(python: str, run_dir: str, sock_path, notify=None, here: bool = True) -> str:
    """The shell command that runs the warm client for the job of ``run_dir``.

    ``sock_path`` may be ``@VARIABLE``: the socket is then the value of that
    environment variable when the script runs (a pilot sets it), and without
    it the job starts cold.

    The folder holding ``jfr_lib`` goes first on ``sys.path`` only to import this
    module; :func:`main` takes it off again. On another machine (``here=False``)
    this module's folder means nothing: the client then starts with ``site``
    and finds ``jfr_lib`` where it is installed.
    """
    import shlex

    args = [run_dir, *(["--notify", str(notify)] if notify else []), "--warm", str(sock_path)]
    if not here:
        code = "from jfr_lib.warm_client import main; main(False)"
        return " ".join(shlex.quote(a) for a in [python, "-c", code, *args])
    home = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    code = f"import sys; sys.path.insert(0, {home!r}); from jfr_lib.warm_client import main; main()"
    return " ".join(shlex.quote(a) for a in [python, "-S", "-c", code, *args])


def main(inserted: bool = True) -> None:
    """Entry point of :func:`command`: ``RUN_DIR [--notify FIFO] --warm SOCKET``."""
    if inserted:
        del sys.path[0]  # the folder put there to import this module
    argv = sys.argv[1:]
    at = argv.index("--warm")
    sock_path, rest = argv[at + 1], argv[:at] + argv[at + 2 :]
    if sock_path.startswith("@"):  # a batch job: the pilot running it says where its server listens
        sock_path = os.environ.get(sock_path[1:], "")
    # started with site (not -S), this interpreter knows the job's sys.path itself
    code = hand_over(sock_path, rest, path=None if inserted else list(sys.path)) if sock_path else None
    sys.stdout.flush()
    sys.stderr.flush()
    if code is None:  # a cold start needs the whole interpreter, site included
        os.execv(sys.executable, [sys.executable, "-m", "jfr_lib.worker", *rest])
    os._exit(code)  # nothing of ours to clean up: skip the interpreter's shutdown
