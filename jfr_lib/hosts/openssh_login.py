"""The interactive login of an OpenSSH worker (``interactive_login: true``): its master connection.

``jfr login`` (or ``jfr runner start`` on a terminal) runs ``ssh -fN`` with the terminal, so ssh
itself asks for what the server wants, then leaves the authenticated master in the background;
every call of the runner's processes rides on it (``ControlMaster=no``) and none ever opens a
connection of its own. The socket is jfr's own (in this user's private folder) or the
``ControlPath`` of the user's ssh config. Also the small helpers of ssh's command line and
messages that :mod:`jfr_lib.hosts.openssh` shares with it.
"""

from __future__ import annotations

import os
import socket
import struct
import subprocess

from jfr_lib.errors import HostError, LoginNeeded


def _option(name: str, value) -> list:
    value = str(value)
    return ["-o", f'{name}="{value}"' if any(c.isspace() for c in value) else f"{name}={value}"]


def _last_line(stderr: bytes) -> str:
    """The last line that says something of what ssh or sftp printed on stderr."""
    lines = [" ".join(line.split()) for line in stderr.decode(errors="replace").splitlines()]
    lines = [line for line in lines if line and not line.startswith("sftp>") and line != "Connection closed"]
    return lines[-1] if lines else "ssh failed without a message"


def _describe(stderr: bytes) -> str:
    """One line for a failed connection (ssh's exit 255), in plain words for the usual causes."""
    last = _last_line(stderr)
    stderr = stderr.decode(errors="replace")
    if "REMOTE HOST IDENTIFICATION HAS CHANGED" in stderr:
        return "the host key does not match known_hosts (possible attack, or the host was reinstalled)"
    if "host key is known" in stderr or "Host key verification failed" in stderr:
        return "unknown host key (Host key verification failed); add it to known_hosts or set accept_new_host_keys"
    if "Permission denied" in last or "Too many authentication failures" in last:
        return f"authentication failed ({last})"
    if any(s in last for s in ("Connection refused", "No route to host", "Could not resolve", "Network is")):
        return f"connection refused or unreachable ({last})"
    if "timed out" in last:
        return f"timed out ({last})"
    return last


def _listening(path: str) -> bool:
    """Whether a master of this user answers on the socket ``path`` (a socket left by a dead one
    does not, nor one of another user in a shared folder)."""
    with socket.socket(socket.AF_UNIX) as sock:
        sock.settimeout(5)
        if sock.connect_ex(path) != 0:
            return False
        uid = struct.unpack("3i", sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, 12))[1]
        return uid == os.getuid()



class MasterLogin:
    """The login methods of :class:`jfr_lib.hosts.openssh.OpenSSHHost`."""

    def _login_needed(self, why: str) -> LoginNeeded:
        return LoginNeeded(f"{self.label}: login needed ({why}): run `jfr login {self.worker.name}`")

    def login_socket(self) -> str | None:
        """The socket of the master connection the calls ride on (None: each call connects)."""
        self.options()
        return self._sock or self._state.control_path

    def logged_in(self) -> bool:
        """Whether a master connection answers on the login's socket."""
        path = self.login_socket()
        return bool(path) and _listening(path)

    def login(self, timeout: float = 300.0) -> None:
        """Open the master connection, asking on this terminal for what the server wants.

        ``ssh -fN`` with the terminal: ssh itself asks (one-time code, password,
        passphrase), then leaves the authenticated master in the background, where
        it lives until :meth:`logout` or the server ends it. Its socket is jfr's own
        (or the ssh config's ``ControlPath``), in a folder only this user can enter.

        Raises
        ------
        HostError
            The login failed (one line: a wrong code, an unknown host key, a refused port...).
        """
        path = self.login_socket()
        if not path or path == "none":
            raise HostError(f"{self.label}: interactive_login needs a ControlPath (the ssh config sets `none`)")
        from jfr_lib.hosts.sockets import exclusive

        busy = f"{self.label}: another login of this account did not end"
        with exclusive(path, timeout, busy):  # two logins at once: the second finds the first's master
            if _listening(path):
                return
            try:
                os.unlink(path)  # left by a master that died: ssh would not replace it
            except FileNotFoundError:
                pass
            except OSError as exc:
                raise HostError(f"{self.label}: cannot replace the socket {path}: {exc.strerror}") from None
            self._open_master(path, timeout)
        self._state.failures, self._state.next_try = 0, 0.0

    def _open_master(self, path: str, timeout: float) -> None:
        sharing = _option("ControlMaster", "yes") + _option("ControlPath", path) + _option("ControlPersist", "yes")
        argv = ["ssh", *self._base_options(batch=False), *sharing, "-fN", "--", self._target()]
        try:  # the terminal stays ssh's (it asks on /dev/tty); its messages are kept for the error
            proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        except OSError as exc:
            raise HostError(f"{self.label}: cannot run ssh: {exc.strerror or exc}") from None
        try:
            _, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.terminate()  # not SIGKILL: ssh puts the terminal back as it was (echo on)
            try:
                proc.communicate(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.communicate()
            raise HostError(f"{self.label}: login timed out after {timeout:g} s") from None
        if proc.returncode != 0 or not _listening(path):
            raise HostError(f"{self.label}: login failed: {_describe(err)}")

    def logout(self) -> bool:
        """Close the master connection the calls ride on (:meth:`login`'s); whether there was one."""
        path = self.login_socket()
        if not path or not _listening(path):
            return False
        self._call(["ssh", "-o", f"ControlPath={path}", "-O", "exit", "--", self._target()], 30, "ssh -O exit")
        return True
