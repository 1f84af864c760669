"""Wake-ups between processes on the runner's machine, through named pipes.

Each action process listens on a FIFO in the project's data folder
(``base_dir/wake/<action>``). A process that just made work for an action
(another action, ``submit_flow``, a local job that finished) writes one byte to
it, so the work starts at once instead of after the next idle sleep. Writers
never block: with no reader the byte is simply dropped, and the reader's
periodic look still finds the work. This is only a shortcut, never a condition
for progress.
"""

from __future__ import annotations

import errno
import os
import select
import stat
from pathlib import Path


def fifo_path(base_dir, action: str) -> Path:
    return Path(base_dir) / "wake" / action


def notify(base_dir, action: str) -> None:
    """Wake the ``action`` process of the project with data folder ``base_dir``."""
    try:
        fd = os.open(fifo_path(base_dir, action), os.O_WRONLY | os.O_NONBLOCK)
    except OSError:  # no reader (ENXIO), no FIFO yet (ENOENT): nothing to wake
        return
    try:
        os.write(fd, b"!")
    except OSError:  # the pipe is full: the reader has wake-ups pending already
        pass
    finally:
        os.close(fd)


class Wakeup:
    """The listening end for one action."""

    def __init__(self, base_dir, action: str):
        from jfr_lib.private import private_dir

        path = fifo_path(base_dir, action)
        private_dir(path.parent)
        try:
            os.mkfifo(path, 0o600)
        except FileExistsError:
            if not stat.S_ISFIFO(path.stat().st_mode):
                path.unlink()
                os.mkfifo(path, 0o600)
        self.fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
        # our own idle writer keeps the FIFO from reporting end-of-file forever
        self._keep = os.open(path, os.O_WRONLY | os.O_NONBLOCK)

    def wait(self, timeout: float, extra=()) -> bool:
        """Sleep up to ``timeout`` seconds; True when woken by a notification.

        ``extra`` file descriptors (pidfds of watched processes) also end the
        wait when they become readable; they are left as they are.
        """
        ready, _, _ = select.select([self.fd, *extra], [], [], max(0.0, timeout))
        if not ready:
            return False
        if self.fd not in ready:
            return True
        try:
            while os.read(self.fd, 4096):
                pass
        except OSError as exc:
            if exc.errno not in (errno.EAGAIN, errno.EWOULDBLOCK):
                raise
        return True

    def close(self) -> None:
        for fd in (self.fd, self._keep):
            try:
                os.close(fd)
            except OSError:
                pass
