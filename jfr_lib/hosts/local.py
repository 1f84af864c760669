"""The local host: commands run as subprocesses in their own session."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from jfr_lib.errors import HostError
from jfr_lib.hosts.base import Host, RunResult


class LocalHost(Host):
    """This machine.

    Commands run under ``bash`` in a new session, so a job they start in the
    background survives the runner, and a command that overruns its timeout is
    killed with its whole process group.
    """

    def __init__(self, timeout: float = 60.0):
        self.timeout = timeout

    def run(self, command, timeout=None, cwd=None):
        timeout = timeout or self.timeout
        try:
            proc = subprocess.Popen(
                ["bash", "-c", command], cwd=cwd, stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                start_new_session=True,
            )  # fmt: skip
        except OSError as exc:
            raise HostError(f"cannot run {command!r}: {exc.strerror}") from None
        try:
            out, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            try:
                os.killpg(proc.pid, 9)
            except ProcessLookupError:
                pass
            proc.communicate()
            raise HostError(f"command timed out after {timeout:g} s: {command}") from None
        return RunResult(proc.returncode, out, err)

    def write_text(self, path, text):
        path = Path(path)
        try:
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
            with os.fdopen(fd, "w") as f:
                f.write(text)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except OSError as exc:
            raise HostError(f"cannot write {path}: {exc.strerror}") from None

    def read_text(self, path):
        try:
            return Path(path).read_text()
        except FileNotFoundError:
            raise
        except OSError as exc:
            raise HostError(f"cannot read {path}: {exc.strerror}") from None

    def exists(self, path):
        return os.path.exists(path)

    def mkdir(self, path):
        from jfr_lib.private import private_dir

        try:
            private_dir(path)
        except OSError as exc:
            raise HostError(f"cannot create folder {path}: {exc.strerror}") from None

    def remove(self, path):
        p = Path(path)
        try:
            if p.is_dir() and not p.is_symlink():
                shutil.rmtree(p)
            elif p.exists() or p.is_symlink():
                p.unlink()
        except OSError as exc:
            raise HostError(f"cannot remove {path}: {exc.strerror}") from None

    def put(self, local, remote):
        try:
            shutil.copyfile(local, remote)
        except OSError as exc:
            raise HostError(f"cannot copy {local} to {remote}: {exc.strerror}") from None

    def get(self, remote, local):
        try:
            shutil.copyfile(remote, local)
        except FileNotFoundError:
            raise
        except OSError as exc:
            raise HostError(f"cannot copy {remote} to {local}: {exc.strerror}") from None
