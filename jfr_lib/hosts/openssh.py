"""A remote host through the system OpenSSH client (``ssh`` for commands, ``sftp -b`` for files).

Chosen with ``ssh_client: openssh``. The user's ssh config applies (``~/.ssh/config``
or the worker's ``ssh_config``: aliases, ``ProxyJump``, certificates, the agent);
the worker's own keys go as ``-o`` options, which win over it. ssh never prompts.

When the ssh config sets a ``ControlPath`` for the host, it is used as configured
(e.g. a master the user opened with ``ssh -fNM host``). Otherwise jfr keeps its own
master (``ControlMaster=auto``, a socket in this user's private temporary folder,
``ControlPersist``): the first call opens it and every call of every runner process
rides on it; a master that died is replaced by the next call. Failed connections
get the fabric host's back-off; every call has a timeout.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import re
import shlex
import signal
import subprocess
import tempfile
import time
import uuid

from jfr_lib.errors import HostError
from jfr_lib.hosts.base import Host, RunResult
from jfr_lib.hosts.openssh_login import MasterLogin, _describe, _last_line, _listening, _option
from jfr_lib.hosts.sockets import control_dir, exclusive
from jfr_lib.hosts.ssh import BACKOFF, _between_marks, marked

log = logging.getLogger("jfr.ssh")

#: Seconds a master opened by jfr outlives its last use.
CONTROL_PERSIST = 600
#: Printed on stderr by the remote shell as it exits, so that its own exit code 255 is told
#: apart from ssh's (which means "the connection failed").
EXIT_MARK = "JFR-EXIT-MARK-5c1e"
_SFTP_SAFE = re.compile(r"[A-Za-z0-9/._+,=:@%-]")


class _State:
    """What this process knows about one account: its back-off, home and whose ControlPath it uses."""

    def __init__(self):
        self.failures, self.next_try, self.last_error, self.home = 0, 0.0, None, None
        self.user_control = None  # None: not asked yet (ssh -G); True: the ssh config sets a ControlPath
        self.control_path = None  # the ControlPath the ssh config sets, expanded by ssh -G


#: identity -> _State, for this process.
_STATES: dict = {}


def reset() -> None:
    """Forget what this process learned about hosts (call in a freshly forked process)."""
    _STATES.clear()


def _sftp_path(path: str) -> str:
    """``path`` as one argument of an sftp batch line, taken literally (no glob, no quotes)."""
    path = f"./{path}" if path.startswith("-") else path
    return "".join(c if _SFTP_SAFE.match(c) else "\\" + c for c in path)


def _jump(gateway) -> str:
    """A ``ProxyJump`` value for the worker's ``gateway`` (a ``user@host:port`` string or a mapping)."""
    if isinstance(gateway, str):
        return gateway
    user, host, port = gateway.get("user"), gateway.get("host"), gateway.get("port")
    return f"{user + '@' if user else ''}{host}{f':{port}' if port else ''}"


def _identity(worker) -> tuple:
    return (worker.host, worker.user, worker.port, worker.ssh_config, repr(worker.key_filename),
            repr(worker.gateway), worker.known_hosts)  # fmt: skip


class OpenSSHHost(MasterLogin, Host):
    """A worker host reached with the system ``ssh`` and ``sftp``.

    Parameters
    ----------
    worker
        The :class:`jfr_lib.config.Worker` (``host``, ``user``, ``port``,
        ``key_filename``, ``known_hosts``, ``accept_new_host_keys``, ``gateway``,
        ``connect_timeout``, ``keepalive``, ``forward_agent``, ``ssh_config``,
        ``login_shell``, ``shell_cmd``, ``sanitize``, ``timeout_execute``).
    """

    def __init__(self, worker):
        self.worker = worker
        self.timeout = worker.timeout_execute
        self.label = f"{worker.user + '@' if worker.user else ''}{worker.host}" + (
            f":{worker.port}" if worker.port else "")  # fmt: skip
        self._state = _STATES.setdefault(_identity(worker), _State())
        self._sock = None  # jfr's own master socket (see options())

    # --- the ssh command line ---------------------------------------------------
    def _base_options(self, batch: bool = True) -> list:
        """The options for ssh, sftp and ``ssh -G``, without the connection sharing ones."""
        w = self.worker
        keys = [w.key_filename] if isinstance(w.key_filename, str) else list(w.key_filename or [])
        pairs = [("BatchMode", "yes" if batch else "no"), ("ConnectTimeout", max(1, round(w.connect_timeout or 30))),
                 ("LogLevel", "ERROR"),  # no "Permanently added ..." in a command's stderr
                 ("Port", w.port), ("User", w.user),
                 *[("IdentityFile", os.path.expanduser(key)) for key in keys],
                 ("IdentitiesOnly", "yes" if keys else None),
                 ("UserKnownHostsFile", w.known_hosts and os.path.expanduser(w.known_hosts)),
                 ("StrictHostKeyChecking", "accept-new" if w.accept_new_host_keys else "yes"),
                 ("ServerAliveInterval", w.keepalive and int(w.keepalive)),
                 ("ForwardAgent", "yes" if w.forward_agent else None),
                 ("ProxyJump", w.gateway and _jump(w.gateway))]  # fmt: skip
        opts = ["-F", os.path.expanduser(w.ssh_config)] if w.ssh_config else []
        return opts + [arg for name, value in pairs if value for arg in _option(name, value)]

    def options(self, batch: bool = True) -> list:
        """Every option jfr passes (ssh and sftp take the same), connection sharing included.

        With ``interactive_login`` no call ever opens a master: they all ride on the
        one ``jfr login`` opened (see :meth:`login`).

        Raises
        ------
        HostError
            The ssh config cannot be read.
        """
        opts = self._base_options(batch)
        state = self._state
        if state.user_control is None:
            proc = self._call(["ssh", "-G", *opts, "--", self.worker.host], 30, "ssh -G")
            if proc.returncode != 0:
                raise HostError(f"{self.label}: ssh config: {_last_line(proc.stderr)}")
            paths = [line[12:] for line in proc.stdout.decode().splitlines() if line.startswith("controlpath ")]
            state.user_control, state.control_path = bool(paths), (paths[0] if paths else None)
        self._sock = None
        interactive = self.worker.interactive_login
        if state.user_control:  # the user's ControlMaster/ControlPath/ControlPersist, as configured
            return opts + _option("ControlMaster", "no") if interactive else opts
        folder = control_dir()
        if folder is None:
            if interactive:
                raise HostError(f"{self.label}: interactive_login needs a private folder for the login's socket")
            return opts + _option("ControlPath", "none")
        self._sock = str(folder / f"ssh-{hashlib.sha1(repr(_identity(self.worker)).encode()).hexdigest()[:16]}")
        if interactive:
            return opts + _option("ControlMaster", "no") + _option("ControlPath", self._sock)
        return (opts + _option("ControlMaster", "auto") + _option("ControlPath", self._sock)
                + _option("ControlPersist", CONTROL_PERSIST))  # fmt: skip

    def _connect(self) -> list:
        """The options of a call, once jfr's own master connection (if it keeps one) is up.

        Processes starting at once would each open a master (all but one saying so on
        stderr): the first takes a lock and opens it, the others wait and ride on it.
        """
        self._gate()
        opts = self.options()
        if self.worker.interactive_login:
            if not self.logged_in():
                raise self._login_needed("no logged-in connection")
            return opts
        if self._sock is None or _listening(self._sock):
            return opts
        with exclusive(self._sock, self.timeout, f"{self.label}: timed out waiting for another process to connect"):
            if not _listening(self._sock):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(self._sock)  # its master died
                proc = self._call(["ssh", *opts, "--", self._target(), "true"], self.timeout, "connecting")
                if proc.returncode == 255:
                    raise self._failed(proc.stderr)
        return opts

    def _target(self, sftp: bool = False) -> str:
        host = self.worker.host
        return f"[{host}]" if sftp and ":" in host else host

    # --- processes --------------------------------------------------------------
    def _call(self, argv: list, timeout: float, what: str, stdin: bytes | None = None, detail: str = ""):
        """Run ``argv`` in its own session; on timeout kill its process group and raise
        ``HostError("LABEL: WHAT timed out after N s[: DETAIL]")``."""
        try:
            proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL if stdin is None else subprocess.PIPE,
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)  # fmt: skip
        except OSError as exc:
            raise HostError(f"{self.label}: cannot run {argv[0]}: {exc.strerror or exc}") from None
        try:
            out, err = proc.communicate(stdin, timeout=timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            # not communicate(): a client of a master handed our pipes to it, which holds them
            # open until the remote command ends
            for pipe in (proc.stdin, proc.stdout, proc.stderr):
                if pipe:
                    pipe.close()
            detail = f": {detail}" if detail else ""
            raise HostError(f"{self.label}: {what} timed out after {timeout:g} s{detail}") from None
        return subprocess.CompletedProcess(argv, proc.returncode, out, err)

    def _gate(self) -> None:
        """Refuse at once while the back-off after failed connections lasts."""
        state, now = self._state, time.monotonic()
        if now < state.next_try:
            raise HostError(f"{self.label}: cannot connect: {state.last_error} (not retrying for "
                            f"{state.next_try - now:.0f} s after {state.failures} failed attempts)")  # fmt: skip

    def _connected(self) -> None:
        if self._state.failures:
            log.info("reconnected to %s after %d failed attempts", self.label, self._state.failures)
        self._state.failures, self._state.next_try = 0, 0.0

    def _failed(self, stderr: bytes) -> HostError:
        """ssh said the connection failed (exit 255): start or grow the back-off.

        For a worker with ``interactive_login`` whose login is gone (its master died, or
        the server wants more than a key), a :class:`LoginNeeded` instead: no back-off.
        """
        if self.worker.interactive_login:
            described = _describe(stderr)
            if described.startswith("authentication failed") or not self.logged_in():
                return self._login_needed(described)
        state = self._state
        state.failures += 1
        state.next_try = time.monotonic() + BACKOFF[min(state.failures - 1, len(BACKOFF) - 1)]
        state.last_error = _describe(stderr)
        return HostError(f"{self.label}: cannot connect: {state.last_error}")

    def _sftp(self, lines: list, what: str):
        """Run sftp batch ``lines``; the completed process when sftp ran (exit 0 or 1)."""
        batch = "".join(f"{line}\n" for line in lines).encode()
        proc = self._call(["sftp", "-b", "-", *self._connect(), "--", self._target(sftp=True)], self.timeout,
                          what, stdin=batch)  # fmt: skip
        if proc.returncode == 255:
            raise self._failed(proc.stderr)
        self._connected()
        return proc

    # --- commands ---------------------------------------------------------------
    def run(self, command, timeout=None, cwd=None):
        """Run ``command`` through the remote login shell, as :meth:`jfr_lib.hosts.ssh.SSHHost.run` does.

        Returns
        -------
        RunResult
            The command's own exit code (255 included) and output.

        Raises
        ------
        HostError
            ssh cannot connect or lost the connection, or the command timed out.
        """
        shown = command
        if cwd:
            command = f"cd {shlex.quote(cwd)} || exit 1\n{command}"
        if self.worker.sanitize:
            command = marked(command)
        command = f"trap 'echo >&2; echo {EXIT_MARK} >&2' EXIT\n{command}"
        shell = self.worker.shell_cmd or "bash"
        # stdin from /dev/null: a job the command leaves in the background must not hold the session
        full = f"{shell} {'-l ' if self.worker.login_shell else ''}-c {shlex.quote(command)} < /dev/null"
        limit = timeout or self.timeout
        proc = self._call(["ssh", *self._connect(), "--", self._target(), full], limit, "command", detail=shown)
        out, err = proc.stdout.decode(errors="replace"), proc.stderr.decode(errors="replace")
        end = err.rfind(f"\n{EXIT_MARK}\n")
        if end < 0 and proc.returncode == 255:  # ssh's own failure: the shell never got to its end
            raise self._failed(proc.stderr)
        self._connected()
        if end >= 0:
            err = err[:end] + err[end + len(EXIT_MARK) + 2 :]
        if self.worker.sanitize:
            out, err = _between_marks(out), _between_marks(err)
        return RunResult(proc.returncode, out, err)

    def home(self) -> str:
        """The remote home folder (where sftp starts)."""
        if self._state.home is None:
            proc = self._sftp(["pwd"], "cannot find the home folder")
            found = re.search(r"^Remote working directory: (.*)$", proc.stdout.decode(errors="replace"), re.M)
            if proc.returncode != 0 or not found:
                raise HostError(f"{self.label}: cannot find the home folder: {_last_line(proc.stderr)}")
            self._state.home = found.group(1)
        return self._state.home

    def master_pid(self) -> int | None:
        """The pid of the master connection (``ssh -O check``), None when there is none."""
        proc = self._call(["ssh", *self.options(), "-O", "check", "--", self._target()], 30, "ssh -O check")
        found = re.search(rb"pid=(\d+)", proc.stderr)
        return int(found.group(1)) if proc.returncode == 0 and found else None

    def stop_master(self) -> None:
        """Ask the master connection to exit (``ssh -O exit``); nothing when there is none."""
        self._call(["ssh", *self.options(), "-O", "exit", "--", self._target()], 30, "ssh -O exit")

    def close(self):
        """Nothing to release: the master connection serves the other processes until ControlPersist ends."""

    # --- files ------------------------------------------------------------------
    @staticmethod
    def _missing(proc) -> bool:
        err = proc.stderr.decode(errors="replace")
        return "not found" in err or "No such file" in err

    def write_text(self, path, text):
        path = self.expand(str(path))
        tmp = f"{path}.tmp-{uuid.uuid4().hex[:8]}"
        with tempfile.TemporaryDirectory(prefix="jfr-put-") as folder:
            local = os.path.join(folder, "f")
            with open(local, "w", encoding="utf-8") as f:
                f.write(text)
            proc = self._sftp([f"put {_sftp_path(local)} {_sftp_path(tmp)}",
                               f"rename {_sftp_path(tmp)} {_sftp_path(path)}"], f"writing {path}")  # fmt: skip
        if proc.returncode != 0:
            reason = "no such folder" if self._missing(proc) else _last_line(proc.stderr)
            raise HostError(f"{self.label}: cannot write {path}: {reason}")

    def read_text(self, path):
        path = self.expand(str(path))
        with tempfile.TemporaryDirectory(prefix="jfr-get-") as folder:
            local = os.path.join(folder, "f")
            self._get(path, local)
            with open(local, "rb") as f:
                return f.read().decode(errors="replace")

    def _get(self, remote: str, local: str) -> None:
        proc = self._sftp([f"get {_sftp_path(remote)} {_sftp_path(local)}"], f"reading {remote}")
        if proc.returncode != 0:
            if self._missing(proc):
                raise FileNotFoundError(remote)
            raise HostError(f"{self.label}: cannot copy {remote}: {_last_line(proc.stderr)}")

    def _shell(self, command: str, what: str, ok=(0,)) -> int:
        result = self.run(command)
        if result.exit_code not in ok:
            raise HostError(f"{self.label}: {what}: {result.stderr.strip()}")
        return result.exit_code

    def exists(self, path):
        quoted = shlex.quote(self.expand(str(path)))
        return self._shell(f"test -e {quoted} || test -L {quoted}", f"cannot check {path}", ok=(0, 1)) == 0

    def mkdir(self, path):  # run folders hold a job's inputs and outputs: this user's only
        self._shell(f"umask 077 && mkdir -p {shlex.quote(self.expand(str(path)))}", f"cannot create folder {path}")

    def remove(self, path):
        self._shell(f"rm -rf {shlex.quote(self.expand(str(path)))}", f"cannot remove {path}")

    def put(self, local, remote):
        remote = self.expand(str(remote))
        proc = self._sftp([f"put {_sftp_path(os.path.abspath(local))} {_sftp_path(remote)}"],
                          f"copying {local} to {remote}")  # fmt: skip
        if proc.returncode != 0:
            reason = "no such file or folder" if self._missing(proc) else _last_line(proc.stderr)
            raise HostError(f"{self.label}: cannot copy {local} to {remote}: {reason}")

    def get(self, remote, local):
        self._get(self.expand(str(remote)), os.path.abspath(local))
