"""The login process of a fabric worker with ``interactive_login`` (see :mod:`jfr_lib.hosts.broker`).

:func:`login` runs in the foreground, on a terminal: it forks the login process,
which authenticates (a key, then what the server asks: a one-time code, a
password, each prompt asked on the terminal), leaves the terminal's session and
serves the host operations of this user's processes over its UNIX socket until
the connection ends or :func:`jfr_lib.hosts.broker.logout` asks it to stop.
"""

from __future__ import annotations

import getpass
import logging
import os
import signal
import socket
import struct
import threading
from pathlib import Path

from jfr_lib.errors import HostError, LoginNeeded
from jfr_lib.hosts.broker import OPERATIONS, _label, _needed, _receive, _send, logged_in, socket_path
from jfr_lib.hosts.sockets import exclusive
from jfr_lib.hosts.ssh import SSHHost, _describe, _Link, _one_line
from jfr_lib.proc import hear, say

log = logging.getLogger("jfr.login")


# --- logging in (in the foreground, on a terminal) --------------------------------
def _ask(label: str, prompt: str, echo: bool) -> str:
    """Ask on the terminal (``/dev/tty``), without echo for secrets."""
    text = f"({label}) {prompt.strip()} "
    if echo:
        with open("/dev/tty", "r+") as tty:
            tty.write(text)
            tty.flush()
            return tty.readline().rstrip("\n")
    return getpass.getpass(text)


def _keys(worker, conn, ask):
    """The private keys to offer, one at a time: the worker's files, else the agent's and then the
    usual files (a passphrase is asked only when the key before it did not do)."""
    import paramiko

    files = conn.connect_kwargs.get("key_filename")
    files = [files] if isinstance(files, str) else list(files or [])
    if not files and conn.connect_kwargs.get("allow_agent", True):
        yield from paramiko.Agent().get_keys()
    if not files and conn.connect_kwargs.get("look_for_keys", True):
        files = [p for p in (os.path.expanduser(f"~/.ssh/id_{t}") for t in ("ed25519", "ecdsa", "rsa"))
                 if os.path.exists(p)]  # fmt: skip
    for name in files:
        path = os.path.expanduser(name)
        try:
            key = paramiko.PKey.from_path(path, worker.passphrase)
        except paramiko.PasswordRequiredException:
            key = paramiko.PKey.from_path(path, ask(_label(worker), f"passphrase of {name}:", False))
        yield key


def _check_host_key(conn, transport) -> None:
    from paramiko import BadHostKeyException

    key = transport.get_remote_server_key()
    name = conn.host if int(conn.port) == 22 else f"[{conn.host}]:{conn.port}"
    known = conn.client.get_host_keys().lookup(name)
    if known is None or key.get_name() not in known:
        conn.client._policy.missing_host_key(conn.client, name, key)  # refuses, or records a new one
    elif known[key.get_name()] != key:
        raise BadHostKeyException(name, key, known[key.get_name()])


def authenticate(worker, ask=_ask):
    """A fabric connection to ``worker``, authenticated by key and by what the server asks next.

    Keys first (the worker's, or the agent's and the usual files), then
    keyboard-interactive (one-time codes: every prompt goes to ``ask``) or a password.
    """
    import paramiko

    label = _label(worker)
    conn = SSHHost(worker)._build(None)
    if conn.gateway:  # a ProxyJump or ProxyCommand of the ssh config
        raise HostError(f"{label}: the ssh config reaches it through a jump host: with interactive_login, "
                        "use `ssh_client: openssh`")  # fmt: skip
    timeout = worker.connect_timeout or 30
    sock = socket.create_connection((conn.host, int(conn.port)), timeout=timeout)
    transport = paramiko.Transport(sock)
    conn.client._transport = transport  # paramiko's policies log through it
    try:
        transport.start_client(timeout=timeout)
        _check_host_key(conn, transport)
        remaining = None
        for key in _keys(worker, conn, ask):
            try:
                remaining = transport.auth_publickey(conn.user, key)
            except paramiko.AuthenticationException:
                continue
            if transport.is_authenticated() or remaining:
                break
        if not transport.is_authenticated():
            if remaining is None:
                try:
                    transport.auth_none(conn.user)
                except paramiko.BadAuthenticationType as exc:
                    remaining = exc.allowed_types
            if transport.is_authenticated():
                pass
            elif "keyboard-interactive" in remaining:
                def answer(title, instructions, prompts):
                    return [ask(label, prompt, echo) for prompt, echo in prompts]

                transport.auth_interactive(conn.user, answer)
            elif "password" in remaining:
                transport.auth_password(conn.user, worker.password or ask(label, "Password:", False))
            else:
                raise paramiko.AuthenticationException(f"the server allows only {', '.join(remaining)}")
    except BaseException:
        transport.close()
        raise
    if worker.keepalive:
        transport.set_keepalive(int(worker.keepalive))
    conn.transport = transport  # fabric sees a connected client and never reconnects it
    return conn


def login(worker, timeout: float = 300.0, log_path=None) -> None:
    """Log ``worker`` in on this terminal and leave the login process serving in the background.

    Raises
    ------
    HostError
        One line: the host key is unknown, the port refused, the code was wrong...
    """
    path = socket_path(worker)
    if path is None:
        raise HostError(f"{_label(worker)}: interactive_login needs a private folder for the login's socket")
    busy = f"{_label(worker)}: another login of this account did not end"
    with exclusive(path, timeout, busy):  # two logins at once: the second finds the first's
        if logged_in(worker):
            return
        read_end, write_end = os.pipe()
        pid = os.fork()
        if pid == 0:  # the first child leaves at once; its child logs in, then serves
            os.close(read_end)
            if os.fork():
                os._exit(0)
            _log_in_and_serve(worker, path, write_end, timeout, log_path)
        os.close(write_end)
        os.waitpid(pid, 0)
        answer = hear(read_end, timeout + 5, "error the login process ended without saying why")
        os.close(read_end)
    if answer != "ok":
        raise HostError(f"{_label(worker)}: login failed: {answer.removeprefix('error ')}")


def _log_in_and_serve(worker, path: Path, write_end: int, timeout: float, log_path) -> None:
    from jfr_lib.hosts import ssh

    code = 0
    try:
        ssh.reset()
        # nothing of the caller's (a database, the login lock) stays open in the login process
        os.closerange(3, write_end)
        os.closerange(write_end + 1, os.sysconf("SC_OPEN_MAX") if hasattr(os, "sysconf") else 4096)

        def too_late(signum, frame):
            raise _NothingTyped(f"nothing typed within {timeout:g} s")

        signal.signal(signal.SIGALRM, too_late)
        signal.alarm(max(1, int(timeout)))
        try:
            conn = authenticate(worker)
        except ConnectionRefusedError as exc:
            say(write_end, f"error connection refused or unreachable ({_one_line(exc)})")
            return
        except _NothingTyped as exc:
            say(write_end, f"error {exc}")
            return
        except Exception as exc:
            say(write_end, f"error {_describe(exc)}")
            return
        finally:
            signal.alarm(0)
        listener, inode = _listen(path)
        os.setsid()  # out of the terminal's session: closing it does not end the login
        os.umask(0o077)
        null = os.open(os.devnull, os.O_RDWR)
        for fd in (0, 1, 2):
            os.dup2(null, fd)
        if null > 2:
            os.close(null)
        if log_path is not None:
            from logging.handlers import WatchedFileHandler

            Path(log_path).parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            handler = WatchedFileHandler(log_path)  # reopened when the runner rotates the log
            handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s [%(name)s] %(message)s"))
            logging.getLogger("jfr").addHandler(handler)
            logging.getLogger("jfr").setLevel(logging.INFO)
        say(write_end, "ok")
        log.info("logged in to %s (worker %s): serving on %s", _label(worker), worker.name, path)
        serve(listener, path, inode, _HeldHost(worker, conn))
    except BaseException as exc:
        code = 1
        say(write_end, f"error {_one_line(exc)}")  # nothing, once it said ok: the pipe is closed
        log.exception("the login process of worker %s failed", worker.name)
    finally:
        os._exit(code)


class _NothingTyped(Exception):
    """The login's time to answer the prompts ran out."""


def _listen(path: Path) -> tuple:
    """A listening socket at ``path`` (only this user may connect), and the inode of its file."""
    tmp = path.with_name(f"{path.name}.{os.getpid()}")
    listener = socket.socket(socket.AF_UNIX)
    old = os.umask(0o177)
    try:
        listener.bind(str(tmp))
    finally:
        os.umask(old)
    listener.listen(64)
    os.replace(tmp, path)  # a dead login's socket is replaced in one step
    return listener, os.stat(path).st_ino


# --- serving ----------------------------------------------------------------------
class _HeldHost(SSHHost):
    """The login process's host: the connection authenticated at login, never reopened."""

    #: Commands at once on the one connection (sshd's MaxSessions is 10 by default; SFTP takes one).
    SESSIONS = 8

    def __init__(self, worker, conn):
        super().__init__(worker)
        self._link = _Link()  # its own, not the one other fabric workers of this process share
        self._conn = conn
        self.files = threading.Lock()  # one SFTP session: one file operation at a time
        self.sessions = threading.BoundedSemaphore(self.SESSIONS)

    def _connection(self):
        if self._conn is not None and self._conn.is_connected:
            return self._conn
        raise _needed(self.worker, "the logged-in connection ended")

    def sftp(self):
        """Its own SFTP session (called under ``files``), opened again when it broke."""
        if self._sftp is None or self._sftp.sock.closed:
            conn = self._connection()
            try:
                self._sftp = conn.client.open_sftp()
            except Exception as exc:
                raise HostError(f"{self.label}: cannot open SFTP: {_one_line(exc)}") from None
        self._sftp.get_channel().settimeout(self.timeout)
        return self._sftp

    def close(self):
        """Nothing: a failed or timed-out command must not end the only connection there is."""

    def alive(self) -> bool:
        return self._conn.is_connected


def serve(listener, path: Path, inode: int, host: _HeldHost) -> None:
    """Answer this user's processes until the connection ends or one asks to stop."""
    listener.settimeout(1.0)
    stop = threading.Event()
    try:
        while not stop.is_set() and host.alive():
            try:
                client, _ = listener.accept()
            except TimeoutError:
                continue
            uid = struct.unpack("3i", client.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, 12))[1]
            if uid != os.getuid():
                client.close()
                continue
            threading.Thread(target=_answer, args=(client, host, stop), daemon=True).start()
    finally:
        try:
            if os.stat(path).st_ino == inode:  # not the socket of a login that came after
                os.unlink(path)
        except OSError:
            pass
        listener.close()
        log.info("login of worker %s ended", host.worker.name)


def _answer(client, host: _HeldHost, stop) -> None:
    with client:
        while True:
            try:
                request = _receive(client)
            except (OSError, ValueError):
                return
            op = request.get("op")
            if op == "exit":
                stop.set()
                _send(client, {"ok": True})
                return
            try:
                _send(client, _perform(host, op, request.get("args") or [], request.get("kwargs") or {}))
            except OSError:
                return


def _perform(host: _HeldHost, op: str, args: list, kwargs: dict) -> dict:
    """Do one operation for a client: ``{"ok": result}``, or ``{"error": line, "kind": ...}`` where
    the kind is ``missing`` (FileNotFoundError), ``login`` (the connection has ended) or ``host``."""
    if op == "ping":
        return {"ok": host.label, "pid": os.getpid()}
    if op not in OPERATIONS:
        return {"error": f"unknown operation {op!r}", "kind": "host"}
    try:
        if op == "run":
            with host.sessions:
                result = host.run(*args, **kwargs)
            return {"ok": [result.exit_code, result.stdout, result.stderr]}
        with host.files, host.sessions:
            return {"ok": getattr(host, op)(*args, **kwargs)}
    except FileNotFoundError as exc:
        return {"error": str(exc), "kind": "missing"}
    except Exception as exc:  # every failure goes back as one line; after the connection's end, as a lost login
        line = str(exc) if isinstance(exc, HostError) else f"{host.label}: {op}: {_one_line(exc)}"
        if isinstance(exc, LoginNeeded) or not host.alive():
            return {"error": str(_needed(host.worker, "the logged-in connection ended")), "kind": "login"}
        return {"error": line, "kind": "host"}
