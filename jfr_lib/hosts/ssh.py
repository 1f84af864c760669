"""A remote host over SSH (fabric/paramiko).

One connection per host per process, opened on first use and reused. Host
keys are checked against known_hosts (``RejectPolicy``); ``accept_new_host_keys``
accepts and records keys of hosts not yet known, and a key that *changed* is
always refused. A dropped connection is reopened on the next call, but no
sooner than a back-off that grows with each failed attempt (1 s to 60 s), so
an outage costs a few log lines, not a storm of connection attempts. Every
command and transfer has a timeout. Every failure is a :class:`HostError`.
"""

from __future__ import annotations

import logging
import os
import shlex
import socket
import time
import uuid
from pathlib import Path

from jfr_lib.errors import HostError
from jfr_lib.hosts.base import Host, RunResult

log = logging.getLogger("jfr.ssh")

BACKOFF = (1, 2, 5, 10, 30, 60)


def _one_line(exc) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return f"{type(exc).__name__}: {text}" if type(exc).__name__ not in text else text


class _AcceptNew:
    """Accept and record the key of a host not in known_hosts (changed keys still fail)."""

    def __init__(self, path: str):
        self.path = path

    def missing_host_key(self, client, hostname, key):
        client.get_host_keys().add(hostname, key.get_name(), key)
        Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a") as f:
            f.write(f"{hostname} {key.get_name()} {key.get_base64()}\n")
        log.warning("accepted the new host key of %s (%s) into %s", hostname, key.get_name(), self.path)


class _Link:
    """One SSH connection and its state, shared by the workers that use the same account."""

    FIELDS = ("_conn", "_sftp", "_failures", "_next_try", "_home", "connections_opened", "_last_error")

    def __init__(self):
        self._conn = self._sftp = self._home = self._last_error = None
        self._failures = 0
        self._next_try = 0.0
        self.connections_opened = 0


#: identity -> _Link, for this process (a forked child starts with its own, see reset()).
_LINKS: dict = {}


def _identity(worker) -> tuple:
    return (worker.host, worker.user, worker.port, repr(worker.gateway), repr(worker.key_filename),
            repr(sorted((worker.connect_kwargs or {}).items(), key=str)))  # fmt: skip


def reset() -> None:
    """Forget inherited connections (call in a freshly forked process)."""
    _LINKS.clear()


class SSHHost(Host):
    """A worker host reached over SSH.

    Parameters
    ----------
    worker
        The :class:`jfr_lib.config.Worker` (``host``, ``user``, ``port``,
        ``key_filename``, ``passphrase``, ``password``, ``gateway``,
        ``connect_timeout``, ``keepalive``, ``login_shell``, ``shell_cmd``,
        ``connect_kwargs``, ``known_hosts``, ``accept_new_host_keys``).
    """

    def __init__(self, worker):
        self.worker = worker
        self.timeout = worker.timeout_execute
        self.label = f"{worker.user + '@' if worker.user else ''}{worker.host}" + (
            f":{worker.port}" if worker.port else "")  # fmt: skip
        # workers on the same account of the same host share one connection
        self._link = _LINKS.setdefault(_identity(worker), _Link())

    def __getattr__(self, name):
        if name in _Link.FIELDS:
            return getattr(self._link, name)
        raise AttributeError(name)

    def __setattr__(self, name, value):
        if name in _Link.FIELDS:
            setattr(self._link, name, value)
        else:
            object.__setattr__(self, name, value)

    # --- the connection ---------------------------------------------------------
    def _build(self, spec, gateway_of=None):
        from fabric import Config, Connection
        from paramiko import RejectPolicy

        w = self.worker
        if gateway_of is None:
            kwargs = dict(w.connect_kwargs or {})
            if w.key_filename:
                kwargs["key_filename"] = w.key_filename
                kwargs.setdefault("look_for_keys", False)
            if w.passphrase:
                kwargs["passphrase"] = w.passphrase
            if w.password:
                kwargs["password"] = w.password
            host, user, port = w.host, w.user, w.port
            timeout = w.connect_timeout
        else:  # a gateway: a "user@host:port" string or a mapping of the same keys
            if isinstance(spec, str):
                host, user, port, kwargs, timeout = spec, None, None, {}, w.connect_timeout
            else:
                host, user, port = spec.get("host"), spec.get("user"), spec.get("port")
                kwargs = dict(spec.get("connect_kwargs") or {})
                if spec.get("key_filename"):
                    kwargs["key_filename"] = spec["key_filename"]
                timeout = spec.get("connect_timeout", w.connect_timeout)
        config = Config(overrides={"run": {"in_stream": False}, "load_ssh_configs": True})
        gateway = None
        if gateway_of is None and w.gateway:
            gateway = self._build(w.gateway, gateway_of=True)
        conn = Connection(host=host, user=user, port=port, config=config, connect_kwargs=kwargs,
                          connect_timeout=int(timeout or 30), gateway=gateway,
                          forward_agent=bool(w.forward_agent), inline_ssh_env=w.inline_ssh_env)  # fmt: skip
        known = os.path.expanduser(w.known_hosts or "~/.ssh/known_hosts")
        if os.path.exists(known):
            conn.client.load_host_keys(known)
        conn.client.set_missing_host_key_policy(_AcceptNew(known) if w.accept_new_host_keys else RejectPolicy())
        return conn

    def _connection(self):
        if self._conn is not None and self._conn.is_connected:
            return self._conn
        now = time.monotonic()
        if now < self._next_try:
            raise HostError(f"{self.label}: cannot connect: {self._last_error} (not retrying for "
                            f"{self._next_try - now:.0f} s after {self._failures} failed attempts)")  # fmt: skip
        self.close()
        conn = self._build(None)
        try:
            log.info("connecting to %s", self.label)
            conn.open()
            if self.worker.keepalive:
                conn.transport.set_keepalive(int(self.worker.keepalive))
        except Exception as exc:  # paramiko, socket and gateway errors all mean "not reachable now"
            self._failures += 1
            self._next_try = time.monotonic() + BACKOFF[min(self._failures - 1, len(BACKOFF) - 1)]
            try:
                conn.close()
            except Exception:  # closing a half-open connection may fail too
                pass
            self._last_error = _describe(exc)
            raise HostError(f"{self.label}: cannot connect: {self._last_error}") from None
        if self._failures or self.connections_opened:
            log.info("reconnected to %s (connection %d, after %d failed attempts)", self.label,
                     self.connections_opened + 1, self._failures)  # fmt: skip
        self._failures, self._next_try = 0, 0.0
        self._conn = conn
        self.connections_opened += 1
        return conn

    def _dropped(self, exc, what: str) -> HostError:
        """The connection failed during ``what``: forget it, so the next call reconnects."""
        self.close()
        return HostError(f"{self.label}: {what}: {_one_line(exc)}")

    def sftp(self):
        if self._sftp is not None and (self._conn is None or not self._conn.is_connected):
            self.close()  # the connection died under the SFTP session
        if self._sftp is None:
            conn = self._connection()
            try:
                self._sftp = conn.sftp()
            except Exception as exc:
                raise self._dropped(exc, "cannot open SFTP") from None
        self._sftp.get_channel().settimeout(self.timeout)
        return self._sftp

    def close(self):
        for thing in (self._sftp, self._conn):
            if thing is not None:
                try:
                    thing.close()
                except Exception:  # already broken
                    pass
        self._sftp = self._conn = None

    # --- commands ---------------------------------------------------------------
    def run(self, command, timeout=None, cwd=None):
        from invoke.exceptions import CommandTimedOut

        if cwd:
            # not "cd X && cmd": a trailing "&" would put the whole list, with the
            # channel's stdout, in the background and hold the command open
            command = f"cd {shlex.quote(cwd)} || exit 1\n{command}"
        if self.worker.sanitize:  # what the login shell prints around it (banners, module messages) is cut off
            command = marked(command)
        shell = self.worker.shell_cmd or "bash"
        # stdin from /dev/null: a job the command leaves in the background must not hold the channel
        full = f"{shell} {'-l ' if self.worker.login_shell else ''}-c {shlex.quote(command)} < /dev/null"
        conn = self._connection()
        limit = timeout or self.timeout
        started = time.monotonic()
        try:
            result = conn.run(full, hide=True, warn=True, timeout=limit, pty=False)
            # under load invoke may return the killed command's result instead of raising
            timed_out = time.monotonic() - started >= limit and result.exited != 0
        except CommandTimedOut:
            timed_out = True
        except Exception as exc:
            raise self._dropped(exc, f"command failed ({command})") from None
        if timed_out:
            self.close()
            raise HostError(f"{self.label}: command timed out after {limit:g} s: {command}")
        if result.exited == -1:  # the channel closed without an exit status: the connection went
            self.close()
            raise HostError(f"{self.label}: connection lost during the command ({command})")
        if self.worker.sanitize:
            return RunResult(result.exited, *(_between_marks(t) for t in (result.stdout, result.stderr)))
        return RunResult(result.exited, result.stdout, result.stderr)

    def home(self) -> str:
        if self._home is None:
            try:
                self._home = self.sftp().normalize(".")
            except Exception as exc:
                raise self._dropped(exc, "cannot find the home folder") from None
        return self._home

    # --- files ------------------------------------------------------------------
    def _file_error(self, exc, what: str, path: str):
        """A file operation failed: missing file, a refusal on the host, or a dead connection."""
        errno = getattr(exc, "errno", None)
        if isinstance(exc, FileNotFoundError) or errno == 2:
            return FileNotFoundError(path)
        if isinstance(exc, OSError) and errno is not None:  # the host said no (permission, space...)
            return HostError(f"{self.label}: {what} {path}: {exc.strerror or exc}")
        return self._dropped(exc, f"{what} {path}")  # "Socket is closed", EOF, timeouts

    def write_text(self, path, text):
        path = self.expand(str(path))
        tmp = f"{path}.tmp-{uuid.uuid4().hex[:8]}"
        try:
            sftp = self.sftp()
            with sftp.open(tmp, "w") as f:
                f.set_pipelined(True)
                f.write(text.encode())
            sftp.posix_rename(tmp, path)
        except HostError:
            raise
        except Exception as exc:
            error = self._file_error(exc, "cannot write", path)
            raise (HostError(f"{self.label}: cannot write {path}: no such folder")
                   if isinstance(error, FileNotFoundError) else error) from None

    def read_text(self, path):
        path = self.expand(str(path))
        try:
            with self.sftp().open(path, "r") as f:
                return f.read().decode(errors="replace")
        except HostError:
            raise
        except Exception as exc:
            raise self._file_error(exc, "cannot read", path) from None

    def exists(self, path):
        path = self.expand(str(path))
        try:
            self.sftp().stat(path)
            return True
        except HostError:
            raise
        except Exception as exc:
            error = self._file_error(exc, "cannot check", path)
            if isinstance(error, FileNotFoundError):
                return False
            raise error from None

    def mkdir(self, path):
        # run folders hold a job's inputs and outputs: this user's only
        result = self.run(f"umask 077 && mkdir -p {shlex.quote(self.expand(str(path)))}")
        if result.exit_code != 0:
            raise HostError(f"{self.label}: cannot create folder {path}: {result.stderr.strip()}")

    def remove(self, path):
        result = self.run(f"rm -rf {shlex.quote(self.expand(str(path)))}")
        if result.exit_code != 0:
            raise HostError(f"{self.label}: cannot remove {path}: {result.stderr.strip()}")

    def put(self, local, remote):
        remote = self.expand(str(remote))
        try:
            self.sftp().put(str(local), remote)
        except HostError:
            raise
        except Exception as exc:
            error = self._file_error(exc, f"cannot copy {local} to", remote)
            raise (HostError(f"{self.label}: cannot copy {local} to {remote}: no such file or folder")
                   if isinstance(error, FileNotFoundError) else error) from None

    def get(self, remote, local):
        remote = self.expand(str(remote))
        try:
            self.sftp().get(remote, str(local))
        except HostError:
            raise
        except Exception as exc:
            raise self._file_error(exc, "cannot copy", remote) from None


def _describe(exc) -> str:
    """Plain words for the usual connection failures."""
    from paramiko import AuthenticationException, BadHostKeyException, SSHException
    from paramiko.ssh_exception import NoValidConnectionsError

    if isinstance(exc, BadHostKeyException):
        return (f"the host key of {exc.hostname} does not match known_hosts "
                "(possible attack, or the host was reinstalled)")
    if isinstance(exc, AuthenticationException):
        return f"authentication failed ({_one_line(exc)})"
    if isinstance(exc, NoValidConnectionsError):
        return f"connection refused or unreachable ({_one_line(exc)})"
    if isinstance(exc, (socket.timeout, TimeoutError)):
        return "timed out"
    if isinstance(exc, SSHException) and "not found in known_hosts" in str(exc):
        return f"unknown host key ({_one_line(exc)}); add it to known_hosts or set accept_new_host_keys"
    return _one_line(exc)


#: Printed before and after a command's output when the worker has ``sanitize: true``.
MARK = "JFR-OUTPUT-MARK-7f3a"


def marked(command: str) -> str:
    """``command`` with a mark line printed before and after its output, on both streams (in a
    subshell: an ``exit`` in it must not skip the closing marks)."""
    return (f"printf '%s\\n' {MARK} && printf '%s\\n' {MARK} >&2\n(\n{command}\n)\nrc=$?\n"
            f"printf '\\n%s\\n' {MARK}; printf '\\n%s\\n' {MARK} >&2; exit $rc")  # fmt: skip


def _between_marks(text: str) -> str:
    """The part of ``text`` between the first and the last mark line (all of it without marks)."""
    first = text.find(MARK + "\n")
    last = text.rfind("\n" + MARK)
    if first < 0 or last < first:
        return text
    return text[first + len(MARK) + 1 : last]
