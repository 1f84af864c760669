"""Where jfr keeps its SSH sockets (master connections, login processes), and the lock that lets
one process at a time open what sits behind one of them."""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import time
from pathlib import Path

from jfr_lib.errors import HostError

log = logging.getLogger("jfr.ssh")


def control_dir() -> Path | None:
    """This user's private folder for jfr's sockets (None when it cannot be made private).

    ``/tmp/jfr-UID`` (or ``$JFR_SOCKET_DIR``), not under ``$TMPDIR``: a runner cron starts, with
    another environment than the shell where ``jfr login`` ran, must find the same logins.
    """
    folder = Path(os.environ.get("JFR_SOCKET_DIR") or f"/tmp/jfr-{os.getuid()}")
    try:
        folder.mkdir(mode=0o700, exist_ok=True)
        st = os.lstat(folder)
        if st.st_uid != os.getuid() or os.path.islink(folder) or not folder.is_dir():
            raise PermissionError(f"{folder} belongs to someone else")
        if st.st_mode & 0o077:
            os.chmod(folder, 0o700)
    except OSError as exc:
        log.warning("no shared SSH connections: %s", exc)
        return None
    return folder


@contextlib.contextmanager
def exclusive(socket_path, timeout: float, what: str):
    """Hold ``SOCKET_PATH.lock`` (flock) for the block; ``HostError("WHAT")`` after ``timeout`` s of waiting.

    Processes about to open the connection behind one socket at once (a master, a login)
    take it in turn, and the later ones find the first one's.
    """
    deadline = time.monotonic() + timeout
    with open(f"{socket_path}.lock", "a") as lock:
        while True:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise HostError(what) from None
                time.sleep(0.05)
        yield
