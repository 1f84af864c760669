"""Processes on this machine: naming them, tying a child's life to its parent's, telling a pid
apart from its reuse, learning when one ends; and rotating the log they share.

The monitor learns that a local job ended from a pidfd (Linux 5.3 and newer),
which becomes readable the moment the process exits: no ``ps`` polling, and the
monitor's wait wakes up at once. Where pidfds are missing it falls back to
asking the queue (``ps``) as for any other queue.
"""

from __future__ import annotations

import logging
import os
import select
import signal
import time


def process_start(pid: int) -> str | None:
    """Start time of a live process in clock ticks since boot (tells a reused pid apart)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return None if fields[0] in ("Z", "X") else fields[19]
    except (OSError, IndexError):
        return None


def _command_name(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/comm") as f:
            return f.read().strip()
    except OSError:
        return ""


class ProcessWatch:
    """pidfds of processes we wait for, by key (a job's db_id).

    Parameters
    ----------
    names
        Command names the watched processes may have: a pid that now belongs to a
        process of another name was reused, so the one we wanted is gone. A local
        job's script is ``nohup`` for the instant before it becomes ``bash``.
    """

    def __init__(self, names=("bash", "sh", "nohup")):
        self.names = tuple(names)
        self._fds = {}
        self.supported = hasattr(os, "pidfd_open") and os.path.isdir("/proc")
        if self.supported:
            try:
                os.close(os.pidfd_open(os.getpid()))
            except OSError:  # a kernel older than 5.3, or a sandbox forbidding it
                self.supported = False

    def alive(self, key, pid: int, start: str | None = None) -> bool:
        """Whether process ``pid`` (started at ``start``, when known) is still running."""
        fd = self._fds.get(key)
        if fd is None:
            try:
                fd = os.pidfd_open(int(pid))
            except ProcessLookupError:
                return False
            # checked once the pidfd holds the process: a reuse cannot happen after this;
            # a start time says it all, a name only that it is not something else
            other = process_start(pid) != start if start is not None else _command_name(pid) not in self.names
            if other:
                os.close(fd)
                return False
            self._fds[key] = fd
        return not select.select([fd], [], [], 0)[0]

    def keep_only(self, keys) -> None:
        """Stop watching every key not in ``keys``."""
        for key in set(self._fds) - set(keys):
            os.close(self._fds.pop(key))

    def fds(self) -> list:
        """The pidfds, to wait on with ``select``: each becomes readable when its process ends."""
        return list(self._fds.values())

    def close(self) -> None:
        self.keep_only(())


def _prctl(option: int, arg) -> None:
    """Linux's prctl(2); a no-op elsewhere."""
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(option, arg, 0, 0, 0)
    except (OSError, AttributeError):
        pass


def die_with_parent() -> None:
    """Ask Linux to kill this process when its parent dies."""
    _prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def set_title(title: str) -> None:
    """What ``ps -f`` shows as this process's command line (setproctitle rewrites it in place).

    A forked process would otherwise show its parent's command line: a warm job
    would look like ``jfr runner start``, and ``pkill -f`` would hit the wrong one.
    """
    try:
        from setproctitle import setproctitle
    except ImportError:  # without it, only the short name (name_process) tells them apart
        return
    setproctitle(title)


def name_process(name: str) -> None:
    """The name ``ps -o comm``, ``top`` and /proc/PID/comm show (15 bytes at most)."""
    _prctl(15, name.encode()[:15])  # PR_SET_NAME


def rotate_log(project) -> None:
    """Rotate the log file once it is larger than ``runner.log_max_bytes``."""
    path, opts = project.log_path, project.runner
    try:
        if path.stat().st_size < opts.log_max_bytes:
            return
    except OSError:
        return
    for n in range(opts.log_backups - 1, 0, -1):
        older = path.with_name(f"{path.name}.{n}")
        if older.exists():
            older.replace(path.with_name(f"{path.name}.{n + 1}"))
    if opts.log_backups > 0:
        path.replace(path.with_name(f"{path.name}.1"))
    else:
        path.unlink()
    logging.getLogger("jfr.runner").info("log rotated")


def say(fd: int, text: str) -> None:
    """Write one line to a pipe the parent waits on, then close it (a closed pipe is ignored)."""
    try:
        os.write(fd, text.encode(errors="replace")[:4000] + b"\n")
        os.close(fd)
    except OSError:
        pass


def hear(fd: int, timeout: float, silence: str) -> str:
    """The line :func:`say` wrote on the pipe ``fd``, or ``silence`` when none came within ``timeout``."""
    deadline = time.monotonic() + timeout
    data = b""
    while time.monotonic() < deadline:
        if not select.select([fd], [], [], max(0.0, deadline - time.monotonic()))[0]:
            break
        chunk = os.read(fd, 4096)
        if not chunk:
            break
        data += chunk
        if data.endswith(b"\n"):
            break
    return data.decode(errors="replace").strip() or silence


def write_status(status_file, doc: dict) -> None:
    """Replace a process's status file (what ``jfr runner info`` shows) in one step; a failure passes."""
    if status_file is None:
        return
    import json

    try:
        tmp = f"{status_file}.tmp"
        with open(tmp, "w") as f:
            json.dump(doc, f)
        os.replace(tmp, status_file)
    except OSError:
        pass
