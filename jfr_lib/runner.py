"""The runner: one parent process that forks one process per action.

The parent takes the runner lease in the queue database (refusing to start
while another runner's lease is fresh), drops every lock a dead runner left,
imports the heavy libraries once (so the forked children share those pages),
and forks the action processes. Then it loops: it reaps and restarts children
that die (releasing the locks they held), beats the lease, obeys a stop request
written in the database, re-reads the project file when it changes, and
rotates the log. Children die with the parent (``PR_SET_PDEATHSIG``).

``once`` runs one pass of every action in order, each in its own child, then
returns. ``exit_when_idle`` returns once no job is READY, in a running state,
or locked.
"""

from __future__ import annotations

import gc
import json
import logging
import os
import signal
import time

from jfr_lib import lease as leases
from jfr_lib.action_process import RECYCLED, Recycle, run_action
from jfr_lib.actions import ORDER
from jfr_lib.errors import ConfigError, JfrError
from jfr_lib.faults import describe as describe_fault
from jfr_lib.faults import is_fault
from jfr_lib.proc import die_with_parent, name_process, set_title
from jfr_lib.queue_db import open_queue_db
from jfr_lib.states import ACTIVE_STATES

log = logging.getLogger("jfr.runner")


class RunnerBusy(JfrError):
    """Another runner holds the lease of the project."""

    exit_code = 1


def preload() -> None:
    """Import what the actions need, before forking, so children share it."""
    import jobflow  # noqa: F401
    import maggma.stores  # noqa: F401
    import monty.json  # noqa: F401
    import qtoolkit.io  # noqa: F401

    import jfr_lib.actions.complete
    import jfr_lib.actions.upload  # noqa: F401

    # keep the imported objects out of the collector's reach: a full collection
    # in a child would write to every page holding them and unshare it
    gc.collect()
    gc.freeze()


def status_dir(project):
    return project.base_dir / "runner"


class Runner:
    """Runs the actions of one project until stopped.

    Parameters
    ----------
    project
        The loaded :class:`jfr_lib.config.Project`.
    once
        One pass of every action, then return.
    exit_when_idle
        Return when nothing is left to do.
    """

    RESTART_DELAYS = (0.5, 1, 2, 5, 10, 30)

    def __init__(self, project, once: bool = False, exit_when_idle: bool = False, on_ready=None):
        self.project = project
        self.on_ready = on_ready
        self.once = once
        self.exit_when_idle = exit_when_idle
        self.children = {}  # pid -> (action, index, started)
        self.failures = {}  # (action, index) -> consecutive early deaths
        self.pending = []  # [(due, action, index)] restarts waiting for their back-off
        self.stopping = False
        self.lease = None
        self.file_stamp = self._stamp()
        self.bad_stamp = None
        self.fault = None  # what the parent cannot do now, if anything (see beat)
        self.last_beat = time.monotonic()
        self.suspended = False  # the action processes are stopped until the lease can be renewed
        self.unreleased = []  # lock ids of children that ended while the database could not be reached
        self.took_over = None  # the stale lease of a runner that died, taken at start (for the notifier)

    # --- children ---------------------------------------------------------------
    def slots(self) -> list:
        counts = self.project.runner.processes
        slots = [(a, i) for a in ORDER for i in range(counts.get(a, 1))]
        from jfr_lib.actions.submit import warm_socket

        if any(warm_socket(self.project, w) for w in self.project.workers.values()):
            slots.append(("warm", 0))
        from jfr_lib.notify import enabled

        if enabled(self.project):
            slots.append(("notify", 0))
        return slots

    def lock_for(self, action: str, index: int, pid: int) -> str:
        return f"{self.lease['token'][:12]}:{action}:{index}:{pid}"

    def spawn(self, action: str, index: int = 0) -> int:
        parent = os.getpid()
        pid = os.fork()
        if pid:
            self.children[pid] = (action, index, time.monotonic())
            return pid
        code = 0
        try:
            die_with_parent()
            set_title(f"jfr-{action} [{self.project.name}]")
            name_process(f"jfr-{action}")
            # a SIGTERM that came before our handler was set ran the parent's, which set self.stopping
            stop = {"now": os.getppid() != parent or self.stopping}

            def on_term(signum, frame):
                stop["now"] = True

            signal.signal(signal.SIGTERM, on_term)
            stop["now"] = stop["now"] or self.stopping
            signal.signal(signal.SIGINT, signal.SIG_IGN)
            signal.signal(signal.SIGHUP, signal.SIG_IGN)
            status = status_dir(self.project) / f"{action}-{index}.json"
            if action == "warm":
                from jfr_lib.warm import serve

                serve(self.project, lambda: stop["now"] or os.getppid() != parent,
                      logging.getLogger("jfr.warm"), status_file=status)  # fmt: skip
                return
            if action == "notify":
                from jfr_lib.notify import serve as notify

                notify(self.project, lambda: stop["now"] or os.getppid() != parent,
                       logging.getLogger("jfr.notify"), status_file=status, took_over=self.took_over)  # fmt: skip
                return
            run_action(self.project, action, self.once,
                       lambda: stop["now"] or os.getppid() != parent,
                       lock_id=self.lock_for(action, index, os.getpid()), status_file=status)  # fmt: skip
        except Recycle:
            code = RECYCLED
        except BaseException:
            logging.getLogger(f"jfr.{action}").exception("action %s crashed", action)
            code = 1
        finally:
            logging.shutdown()
            os._exit(code)

    def reap(self, block: bool = False) -> list:
        """Collect children that ended: [(pid, action, index, status)]."""
        ended = []
        while self.children:
            try:
                pid, status = os.waitpid(-1, 0 if block else os.WNOHANG)
            except ChildProcessError:
                self.children.clear()
                break
            if pid == 0:
                break
            entry = self.children.pop(pid, None)
            if entry is not None:
                ended.append((pid, entry[0], entry[1], status, entry[2]))
            if block:
                break
        return ended

    def signal_children(self, signum) -> None:
        for pid in list(self.children):
            try:
                os.kill(pid, signum)
            except ProcessLookupError:
                pass

    def stop_children(self, timeout: float = 60.0) -> None:
        self.signal_children(signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while self.children and time.monotonic() < deadline:
            if not self.reap():
                time.sleep(0.05)
        self.signal_children(signal.SIGKILL)
        while self.children:
            self.reap(block=True)
        self.pending.clear()

    def release_locks(self, lock_id: str | None = None) -> int:
        """Drop the locks of one dead child, or every lock (when taking over).

        The locks of a child that ended during a fault are dropped at the next
        heartbeat that reaches the database.
        """
        try:
            with open_queue_db(self.project) as db:
                released = self._release(db, lock_id)
                if lock_id is None:
                    from jfr_lib.dependencies import sweep_waiting

                    sweep_waiting(db)
                return released
        except Exception as exc:
            if lock_id is None or not is_fault(exc):
                raise
            self.fault_seen(exc)
            self.unreleased.append(lock_id)
            return 0

    @staticmethod
    def _release(db, lock_id) -> int:
        jobs = db.find_jobs({"lock_id": lock_id} if lock_id else {"locked": True})
        for job in jobs:
            db.update_job(job["db_id"], {"lock_id": None, "lock_time": None}, lock_id=job["lock_id"])
        return len(jobs)

    def fault_seen(self, exc) -> None:
        """Log a fault the parent met, once until it clears or changes."""
        message = describe_fault(exc)
        if message != self.fault:
            log.warning("the queue database cannot be used now (the runner carries on): %s", message)
            self.fault = message

    def child_ended(self, pid, action, index, status, started) -> None:
        released = self.release_locks(self.lock_for(action, index, pid))
        if self.stopping:
            return
        if os.WIFEXITED(status) and os.WEXITSTATUS(status) == RECYCLED:
            self.spawn(action, index)
            return
        lived = time.monotonic() - started
        n = 0 if lived > 60 else self.failures.get((action, index), 0)
        delay = self.RESTART_DELAYS[min(n, len(self.RESTART_DELAYS) - 1)]
        how = f"signal {os.WTERMSIG(status)}" if os.WIFSIGNALED(status) else f"exit {os.WEXITSTATUS(status)}"
        log.warning("action %s[%d] (pid %d) ended (%s) after %.0f s; released %d locks; "
                    "restarting in %g s", action, index, pid, how, lived, released, delay)  # fmt: skip
        self.failures[(action, index)] = n + 1
        self.pending.append((time.monotonic() + delay, action, index))

    def restart_due(self) -> None:
        now = time.monotonic()
        for item in [p for p in self.pending if p[0] <= now]:
            self.pending.remove(item)
            self.spawn(item[1], item[2])

    # --- lease, reload, idle ----------------------------------------------------
    def acquire(self) -> None:
        opts = self.project.runner
        mine = leases.new_lease(opts.heartbeat, opts.heartbeat * opts.stale_heartbeats,
                                project=self.project.name, project_file=str(self.project.path))  # fmt: skip
        with open_queue_db(self.project) as db:
            ok, previous = leases.acquire(db, mine)
        if not ok:
            raise RunnerBusy(
                f"a runner is already running for project {self.project.name} on "
                f"{previous['host']} (pid {previous['pid']})"
            )
        self.lease = mine
        if previous is not None:
            self.took_over = previous
            log.warning("took over the stale lease of %s (pid %s)", previous["host"], previous["pid"])
        released = self.release_locks()
        if released:
            log.info("released %d locks left by a previous runner", released)

    def children_status(self) -> list:
        out = []
        for pid, (action, index, _started) in sorted(self.children.items(), key=lambda kv: kv[1][:2]):
            entry = {"pid": pid, "action": action, "index": index, "state": "starting"}
            try:
                data = json.loads((status_dir(self.project) / f"{action}-{index}.json").read_text())
                if data.get("pid") == pid:
                    entry.update(data)
            except (OSError, ValueError):
                pass
            out.append(entry)
        return out

    def beat(self) -> None:
        try:
            with open_queue_db(self.project) as db:
                outcome = leases.heartbeat(db, self.lease, self.children_status())
                for lock_id in list(self.unreleased):  # of processes that ended during a fault
                    self._release(db, lock_id)
                    self.unreleased.remove(lock_id)
        except Exception as exc:
            if not is_fault(exc):
                raise
            self.fault_seen(exc)
            if not self.suspended and time.monotonic() - self.last_beat > self.lease["stale_after"]:
                # another runner may take the project over now: ours must not act meanwhile
                log.error("the lease could not be renewed for %.0f s: the action processes stop until the queue "
                          "database answers again", time.monotonic() - self.last_beat)  # fmt: skip
                self.suspended = True
                self.pending.clear()
                self.stop_children()
            return
        self.last_beat = time.monotonic()
        if self.fault is not None:
            log.info("the queue database answers again")
            self.fault = None
        if outcome == "ok" and self.suspended and not self.stopping:
            log.info("the lease is still ours: the action processes start again")
            self.suspended = False
            self.pending.clear()
            for action, index in self.slots():
                self.spawn(action, index)
        if outcome == "stop":
            log.info("stop requested through the queue database")
            self.stopping = True
        elif outcome == "lost":
            log.error("the runner lease was taken by another runner: stopping at once")
            self.signal_children(signal.SIGKILL)
            self.stopping = True
            self.lease = None

    def _stamp(self):
        try:
            st = os.stat(self.project.path)
            return (st.st_mtime_ns, st.st_size, st.st_ino)
        except OSError:
            return None

    def check_reload(self) -> None:
        stamp = self._stamp()
        if stamp == self.file_stamp or stamp == self.bad_stamp or stamp is None:
            return
        from jfr_lib.config import load_project_file

        try:
            project = load_project_file(self.project.path)
        except ConfigError as exc:
            self.bad_stamp = stamp
            log.error("project file changed but is invalid, keeping the last valid one: %s", exc)
            return
        self.file_stamp, self.bad_stamp = stamp, None
        self.project = project
        log.info("project file changed: restarting the action processes with it")
        self.stop_children()
        for action, index in self.slots():
            self.spawn(action, index)

    def idle(self) -> bool:
        try:
            with open_queue_db(self.project) as db:
                active = db.count_jobs({"state": [str(s) for s in ACTIVE_STATES]})
                return active == 0 and db.count_jobs({"locked": True}) == 0
        except Exception as exc:
            if not is_fault(exc):
                raise
            self.fault_seen(exc)
            return False

    # --- the loop ---------------------------------------------------------------
    def run(self) -> int:
        from jfr_lib.private import UMASK

        os.umask(UMASK)  # what the runner, its processes and its local jobs write is private

        def on_signal(signum, frame):
            self.stopping = True

        handled = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
        old = {s: signal.signal(s, on_signal) for s in handled}
        try:
            self.acquire()
            status_dir(self.project).mkdir(parents=True, exist_ok=True)
            preload()  # seconds on a slow login node: renew the lease taken before it
            self.beat()
            if self.once:
                for action in ORDER:
                    self.spawn(action)
                    for entry in self.reap(block=True):
                        self.release_locks(self.lock_for(entry[1], entry[2], entry[0]))
                return 0
            for action, index in self.slots():
                self.spawn(action, index)
            log.info("runner started for project %s (pid %d)", self.project.name, os.getpid())
            if self.on_ready is not None:
                self.on_ready()
            idle_seen, next_beat = 0, time.monotonic() + self.project.runner.heartbeat
            while not self.stopping:
                time.sleep(0.2)
                for entry in self.reap():
                    self.child_ended(*entry)
                if not self.suspended:
                    self.restart_due()
                if time.monotonic() >= next_beat:
                    next_beat = time.monotonic() + self.project.runner.heartbeat
                    self.beat()
                    self.check_reload()
                    from jfr_lib.proc import rotate_log

                    rotate_log(self.project)
                if self.exit_when_idle and not self.stopping:
                    idle_seen = idle_seen + 1 if self.idle() else 0
                    if idle_seen >= 2:
                        log.info("nothing left to do: stopping")
                        break
            return 0
        finally:
            if self.children:
                log.info("stopping the action processes")
            self.stop_children()
            if self.lease is not None:
                try:
                    with open_queue_db(self.project) as db:
                        leases.release(db, self.lease["token"])
                except Exception as exc:
                    if not is_fault(exc):
                        raise
                    log.warning("the lease could not be given up (it goes stale): %s", describe_fault(exc))
                log.info("runner stopped")
            for s, handler in old.items():
                signal.signal(s, handler)
