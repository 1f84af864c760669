"""Running the runner in the background: start, stop, kill, status, logs.

``start`` double-forks a daemon (its own session, stdio on /dev/null, logging
to the project's log file) and returns once the daemon holds the lease and
its action processes are up; it reports instead when a runner already runs,
so a crontab line can call it every few minutes (and says so in the log, since
cron discards what it prints). ``stop`` writes a stop request into the queue
database, so it works from any host that reaches it.

status, stop, kill and logs work from an invalid project file too
(:mod:`jfr_lib.config_lenient`).
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import time
from pathlib import Path

from jfr_lib import lease as leases
from jfr_lib.errors import JfrError, UsageError
from jfr_lib.private import private_dir, private_file
from jfr_lib.proc import hear, say
from jfr_lib.queue_db import open_queue_db

log = logging.getLogger("jfr.runner")
LOG_FORMAT = "%(asctime)s %(name)s[%(process)d] %(levelname)s %(message)s"

#: ``jfr runner status`` exit codes, as LSB init scripts use them.
STATUS_CODES = {leases.RUNNING: 0, leases.STALE: 1, leases.STOPPED: 3}


class MaskingFormatter(logging.Formatter):
    """A formatter that masks secrets (URI passwords and the like) in every line, tracebacks included."""

    def format(self, record) -> str:
        from jfr_lib.redact import mask_text

        return mask_text(super().format(record))


def setup_logging(project, stderr: bool, debug: bool = False) -> Path:
    """Send the ``jfr`` loggers to the project's log file (and stderr in the foreground).

    Every process appends to the same file; the parent rotates it by renaming,
    and each process's ``WatchedFileHandler`` reopens the new file.
    """
    from logging.handlers import WatchedFileHandler

    path = project.log_path
    private_dir(path.parent)
    handlers = [WatchedFileHandler(path)]
    private_file(path)
    if stderr:
        handlers.append(logging.StreamHandler())
    formatter = MaskingFormatter(LOG_FORMAT, "%Y-%m-%d %H:%M:%S")
    for h in handlers:
        h.setFormatter(formatter)
    root = logging.getLogger("jfr")
    root.handlers[:] = handlers
    level = getattr(project, "log_level", "info") or "info"  # the project's log_level, --debug above it
    root.setLevel(logging.DEBUG if debug else getattr(logging, level.upper(), logging.INFO))
    root.propagate = False
    return path


def note(project, message: str, level: int = logging.INFO) -> None:
    """Write one line into the project's runner log from a short-lived command.

    ``jfr runner start`` run by cron has its output discarded: what it decided
    must be in the log that ``jfr runner logs`` shows.
    """
    path = project.log_path
    try:
        private_dir(path.parent)
        handler = logging.FileHandler(path)
        private_file(path)
    except OSError:  # no log to write to: the command's own output still says it
        return
    try:
        handler.setFormatter(MaskingFormatter(LOG_FORMAT, "%Y-%m-%d %H:%M:%S"))
        handler.emit(log.makeRecord(log.name, level, __file__, 0, message, (), None))
    finally:
        handler.close()


def current(project) -> tuple:
    """(status word, lease or None).

    On the lease's own host, a live process is running even when its heartbeat
    is late (a loaded machine): stale means its process is gone. From another
    host only the heartbeat's age can tell.
    """
    with open_queue_db(project) as db:
        found = leases.read(db)
    return _status(found), found


def _status(found: dict | None) -> str:
    word = leases.status(found)
    if word == leases.STALE and found.get("host") == socket.gethostname() and leases.alive_here(found):
        word = leases.RUNNING
    return word


def start(project, timeout: float = 60.0, debug: bool = False) -> tuple:
    """Start a daemon unless a runner is already running.

    Returns
    -------
    (bool, dict)
        Whether a daemon was started, and the lease of the running runner.
    """
    from jfr_lib.runner import Runner, RunnerBusy

    word, found = current(project)
    if word == leases.RUNNING:
        note(project, f"start: nothing to do, a runner already runs on {found['host']} (pid {found['pid']})")
        return False, found
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the first child: detach, fork the daemon, leave
        os.close(read_end)
        os.setsid()
        if os.fork():
            os._exit(0)
        code = 1
        try:
            os.chdir("/")
            null = os.open(os.devnull, os.O_RDWR)
            for fd in (0, 1, 2):
                os.dup2(null, fd)
            setup_logging(project, stderr=False, debug=debug)

            def ready():
                try:  # a fresh heartbeat: the lease has aged while the heavy imports loaded
                    runner.beat()
                except Exception:  # the loop beats again soon; say ready regardless
                    log.debug("heartbeat before ready failed", exc_info=True)
                say(write_end, "ok")

            runner = Runner(project, on_ready=ready)
            code = runner.run()
        except RunnerBusy as exc:
            say(write_end, f"busy {exc}")
        except BaseException as exc:  # the daemon has no terminal: the log and the pipe say why
            log.exception("the runner failed")
            say(write_end, f"error {type(exc).__name__}: {exc}")
        finally:
            logging.shutdown()
            os._exit(code)
    os.close(write_end)
    os.waitpid(pid, 0)
    message = hear(read_end, timeout, "error the runner exited during start-up")
    os.close(read_end)
    if message == "ok":
        return True, current(project)[1]
    if message.startswith("busy"):
        holder = current(project)[1]
        note(project, f"start: nothing to do, {message.split(' ', 1)[-1]}")
        return False, holder
    detail = message.split(" ", 1)[1] if " " in message else f"see {project.log_path}"
    raise JfrError(f"the runner did not start: {detail}")


def stop(project, wait: float = 120.0) -> dict | None:
    """Ask the runner to stop and wait until it has. Returns its lease, or None."""
    with open_queue_db(project) as db:
        found = leases.read(db)
        if _status(found) != leases.RUNNING:
            return None
        found = leases.request_stop(db)
    if found is None or wait <= 0:
        return found
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        word, now = current(project)
        if word != leases.RUNNING or now is None or now["token"] != found["token"]:
            return found
        time.sleep(0.2)
    raise JfrError(f"the runner on {found['host']} (pid {found['pid']}) did not stop within {wait:g} s")


def kill(project) -> dict | None:
    """Kill a runner on this host at once (its action processes die with it)."""
    word, found = current(project)
    if found is None:
        return None
    if found["host"] != socket.gethostname():
        raise UsageError(f"the runner runs on {found['host']}: kill it there, or use "
                         "`jfr runner stop` from here")  # fmt: skip
    if word == leases.RUNNING:
        try:
            os.kill(int(found["pid"]), signal.SIGKILL)
        except ProcessLookupError:
            pass
        deadline = time.monotonic() + 10
        while leases.alive_here(found) and time.monotonic() < deadline:
            time.sleep(0.05)
    with open_queue_db(project) as db:
        leases.release(db, found["token"])
        for job in db.find_jobs({"locked": True}):
            db.update_job(job["db_id"], {"lock_id": None, "lock_time": None}, lock_id=job["lock_id"])
    return found


def tail(path, n: int, max_bytes: int | None = None) -> list:
    """The last ``n`` lines of a file, reading it backwards from its end only as far as needed.

    ``max_bytes`` bounds what is read when the lines are very long (a file
    without line breaks); the first line returned may then be cut.
    """
    if n <= 0:
        return []
    chunks, newlines, got = [], 0, 0
    try:
        with open(path, "rb") as f:
            size = f.seek(0, os.SEEK_END)
            while size > 0 and newlines <= n and (max_bytes is None or got < max_bytes):
                step = min(65536, size)
                size -= step
                f.seek(size)
                chunk = f.read(step)
                chunks.append(chunk)
                newlines += chunk.count(b"\n")
                got += step
    except FileNotFoundError:
        return []
    data = b"".join(reversed(chunks))
    return [line.decode(errors="replace") for line in data.splitlines()[-n:]]


def follow(path: Path, out, poll: float = 0.3) -> None:
    """Print lines appended to ``path`` until interrupted, across rotations."""
    f, ino, first = None, None, True
    while True:
        try:
            st = os.stat(path)
        except FileNotFoundError:
            time.sleep(poll)
            continue
        if st.st_ino != ino:
            if f is not None:
                out.write(f.read())  # the end of the rotated file
                f.close()
            f, ino = open(path, errors="replace"), st.st_ino  # noqa: SIM115 (kept open while following)
            if first:
                f.seek(0, os.SEEK_END)
                first = False
        line = f.readline()
        if line:
            out.write(line)
            out.flush()
        else:
            time.sleep(poll)
