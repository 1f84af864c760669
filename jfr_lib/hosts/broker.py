"""The interactive login of a fabric worker: one process holds the connection, the others ask it.

A paramiko connection cannot be shared between processes, and a one-time code
cannot be typed again by a daemon. So ``jfr login WORKER`` (and ``jfr runner
start`` on a terminal) authenticates once, asking on the terminal for what the
server wants (a one-time code, a password), then leaves a small process in the
background that keeps that connection and serves the host operations of every
runner process over a UNIX socket in this user's private folder (only this
user's processes are answered). When the connection ends, the process ends and
removes its socket: the workers' calls then raise :class:`LoginNeeded`.

Messages are a 4-byte length and a JSON document each way. Files are copied by
the login process itself (it runs as the same user on the same machine). This
module is the asking side; :mod:`jfr_lib.hosts.login_process` logs in and serves.
"""

from __future__ import annotations

import hashlib
import json
import os
import select
import socket
import struct
from pathlib import Path

from jfr_lib.errors import HostError, LoginNeeded
from jfr_lib.hosts.base import Host, RunResult
from jfr_lib.hosts.ssh import _identity

#: The host operations a login process performs for others.
OPERATIONS = ("run", "write_text", "read_text", "exists", "mkdir", "remove", "put", "get", "home")
_LENGTH = struct.Struct(">I")


def socket_path(worker) -> Path | None:
    """Where the login process of ``worker``'s account listens (None without a private folder)."""
    from jfr_lib.hosts.sockets import control_dir

    folder = control_dir()
    if folder is None:
        return None
    return folder / f"login-{hashlib.sha1(repr(_identity(worker)).encode()).hexdigest()[:16]}"


def _label(worker) -> str:
    return f"{worker.user + '@' if worker.user else ''}{worker.host}" + (f":{worker.port}" if worker.port else "")


def _needed(worker, why: str) -> LoginNeeded:
    return LoginNeeded(f"{_label(worker)}: login needed ({why}): run `jfr login {worker.name}`")


# --- messages -------------------------------------------------------------------
def _send(sock, doc) -> None:
    data = json.dumps(doc).encode()
    sock.sendall(_LENGTH.pack(len(data)) + data)


def _receive(sock):
    head = _exactly(sock, _LENGTH.size)
    return json.loads(_exactly(sock, _LENGTH.unpack(head)[0]))


def _exactly(sock, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            raise ConnectionResetError("the other end closed the connection")
        data += chunk
    return data


# --- asking -----------------------------------------------------------------------
def _connect(worker) -> socket.socket:
    path = socket_path(worker)
    sock = socket.socket(socket.AF_UNIX)
    sock.settimeout(10)
    try:
        sock.connect(str(path))
    except OSError:
        sock.close()
        raise _needed(worker, "no logged-in connection") from None
    return sock


def logged_in(worker) -> bool:
    """Whether a login process answers for ``worker``'s account."""
    try:
        with _connect(worker) as sock:
            _send(sock, {"op": "ping"})
            return "ok" in _receive(sock)
    except (LoginNeeded, OSError, ValueError):
        return False


def login_pid(worker) -> int | None:
    """The pid of the login process of ``worker``'s account, None when there is none."""
    try:
        with _connect(worker) as sock:
            _send(sock, {"op": "ping"})
            return _receive(sock).get("pid")
    except (LoginNeeded, OSError, ValueError):
        return None


def logout(worker) -> bool:
    """End the login process of ``worker``'s account; whether there was one."""
    try:
        with _connect(worker) as sock:
            _send(sock, {"op": "exit"})
            _receive(sock)
            return True
    except (LoginNeeded, OSError, ValueError):
        return False


class BrokerHost(Host):
    """A fabric worker with ``interactive_login``: every operation done by its login process."""

    def __init__(self, worker):
        self.worker = worker
        self.timeout = worker.timeout_execute
        self.label = _label(worker)
        self._sock = None
        self._home = None

    def _call(self, op: str, *args, limit: float | None = None, **kwargs):
        if self._sock is not None and select.select([self._sock], [], [], 0)[0]:
            self.close()  # the login process that served it has ended (a new one may be there)
        if self._sock is None:
            self._sock = _connect(self.worker)
        # a transfer takes as long as its size needs (each SFTP read and write has its own timeout)
        self._sock.settimeout(None if op in ("put", "get") else (limit or self.timeout) + 30)
        try:
            _send(self._sock, {"op": op, "args": args, "kwargs": kwargs})
            reply = _receive(self._sock)
        except TimeoutError:
            self.close()
            raise HostError(f"{self.label}: {op}: the login process did not answer") from None
        except (OSError, ValueError):
            self.close()
            raise _needed(self.worker, "the login process ended") from None
        if "ok" in reply:
            return reply["ok"]
        kind = reply.get("kind")
        if kind == "missing":
            raise FileNotFoundError(reply["error"])
        raise (LoginNeeded if kind == "login" else HostError)(reply["error"])

    def close(self):
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    def run(self, command, timeout=None, cwd=None):
        code, out, err = self._call("run", command, timeout=timeout, cwd=cwd, limit=timeout)
        return RunResult(code, out, err)

    def write_text(self, path, text):
        self._call("write_text", str(path), text)

    def read_text(self, path):
        return self._call("read_text", str(path))

    def exists(self, path):
        return self._call("exists", str(path))

    def mkdir(self, path):
        self._call("mkdir", str(path))

    def remove(self, path):
        self._call("remove", str(path))

    def put(self, local, remote):
        self._call("put", os.path.abspath(local), str(remote))

    def get(self, remote, local):
        self._call("get", str(remote), os.path.abspath(local))

    def home(self):
        if self._home is None:
            self._home = self._call("home")
        return self._home
