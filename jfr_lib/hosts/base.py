"""The narrow interface every host implements. Every call has a timeout and
raises :class:`jfr_lib.errors.HostError` when the host cannot be reached or the
operation fails for a reason that may pass."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass


@dataclass
class RunResult:
    """What a command printed and returned."""

    exit_code: int
    stdout: str
    stderr: str


class Host(ABC):
    """A machine on which commands run and files are read and written."""

    timeout: float = 60.0

    @abstractmethod
    def run(self, command: str, timeout: float | None = None, cwd: str | None = None) -> RunResult:
        """Run a shell command; a non-zero exit code is returned, not raised."""

    @abstractmethod
    def write_text(self, path: str, text: str) -> None:
        """Write a file atomically (readers see the old or the new content)."""

    @abstractmethod
    def read_text(self, path: str) -> str:
        """Read a file; ``FileNotFoundError`` when it does not exist."""

    @abstractmethod
    def exists(self, path: str) -> bool:
        """Whether a file or folder exists."""

    @abstractmethod
    def mkdir(self, path: str) -> None:
        """Create a folder and its parents; no error when it exists."""

    @abstractmethod
    def remove(self, path: str) -> None:
        """Remove a file or a whole folder; no error when it is missing."""

    @abstractmethod
    def put(self, local: str, remote: str) -> None:
        """Copy a local file to the host."""

    @abstractmethod
    def get(self, remote: str, local: str) -> None:
        """Copy a file from the host."""

    def close(self) -> None:
        """Release connections."""

    def home(self) -> str:
        """The user's home folder on the host."""
        raise NotImplementedError

    def expand(self, path: str) -> str:
        """An absolute path for ``~/...`` (file transfers do not expand it) and ``$VARIABLES``."""
        if path == "~":
            return self.home()
        if path.startswith("~/"):
            return f"{self.home()}/{path[2:]}"
        if "$" in path:
            result = self.run(f"echo {path}")
            if result.exit_code == 0 and result.stdout.strip():
                return result.stdout.strip()
        return path
