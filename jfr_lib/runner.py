"""The runner: one parent process that forks one process per action.

The parent loads the project, imports the heavy libraries once (so the forked
children share those pages), forks a child per action, restarts a child that
dies, and stops them all on SIGTERM/SIGINT. Each child opens its own database
connection and JobStore after the fork, never before.

``once`` runs one pass of every action in order, each in its own child, then
returns. ``exit_when_idle`` returns once no job is READY, in a running state,
or locked.
"""

from __future__ import annotations

import logging
import os
import signal
import time

from jfr_lib.actions import ORDER
from jfr_lib.queue_db import open_queue_db
from jfr_lib.states import ACTIVE_STATES

log = logging.getLogger("jfr.runner")


def preload() -> None:
    """Import what the actions need, before forking, so children share it."""
    import jobflow  # noqa: F401
    import maggma.stores  # noqa: F401
    import monty.json  # noqa: F401
    import qtoolkit.io  # noqa: F401

    import jfr_lib.actions.complete
    import jfr_lib.actions.upload  # noqa: F401


def run_action(project, action: str, once: bool, stop_flag) -> None:
    """The body of an action process: step, wake the next action, sleep when idle."""
    import importlib

    from jfr_lib.actions import NEXT_ACTION, ActionContext
    from jfr_lib.wakeup import Wakeup, notify

    module = importlib.import_module(f"jfr_lib.actions.{action}")
    ctx = ActionContext(project, action)
    wake = None if once else Wakeup(project.base_dir, action)
    try:
        if hasattr(module, "prepare"):
            module.prepare(ctx)
        while not stop_flag():
            moved = module.step(ctx)
            if moved:
                notify(project.base_dir, NEXT_ACTION[action])
            if once:
                break
            if not moved:
                timeout = project.runner.idle_sleep
                if hasattr(module, "next_due"):
                    timeout = min(timeout, module.next_due(ctx))
                if wake.wait(timeout):
                    ctx.woken_at = time.monotonic()
    finally:
        if wake is not None:
            wake.close()
        ctx.close()


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

    def __init__(self, project, once: bool = False, exit_when_idle: bool = False):
        self.project = project
        self.once = once
        self.exit_when_idle = exit_when_idle
        self.children = {}  # pid -> action
        self.failures = {}  # action -> consecutive quick deaths
        self.stopping = False

    # --- children ---------------------------------------------------------------
    def spawn(self, action: str) -> int:
        pid = os.fork()
        if pid:
            self.children[pid] = action
            return pid
        code = 0
        try:
            stop = {"now": False}

            def on_term(signum, frame):
                stop["now"] = True

            signal.signal(signal.SIGTERM, on_term)
            signal.signal(signal.SIGINT, signal.SIG_IGN)
            run_action(self.project, action, self.once, lambda: stop["now"])
        except BaseException:
            logging.getLogger(f"jfr.{action}").exception("action %s crashed", action)
            code = 1
        finally:
            logging.shutdown()
            os._exit(code)

    def reap(self, block: bool = False) -> list:
        """Collect children that ended: [(pid, action, status)]."""
        ended = []
        while self.children:
            try:
                pid, status = os.waitpid(-1, 0 if block else os.WNOHANG)
            except ChildProcessError:
                self.children.clear()
                break
            if pid == 0:
                break
            action = self.children.pop(pid, None)
            if action is not None:
                ended.append((pid, action, status))
            if block:
                break
        return ended

    def stop_children(self, timeout: float = 60.0) -> None:
        for pid in list(self.children):
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + timeout
        while self.children and time.monotonic() < deadline:
            if not self.reap():
                time.sleep(0.05)
        for pid in list(self.children):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        while self.children:
            self.reap(block=True)

    # --- the loop ---------------------------------------------------------------
    def idle(self) -> bool:
        with open_queue_db(self.project) as db:
            active = db.count_jobs({"state": [str(s) for s in ACTIVE_STATES]})
            return active == 0 and db.count_jobs({"locked": True}) == 0

    def startup(self) -> None:
        """Drop locks left by a runner that died (one runner per project)."""
        with open_queue_db(self.project) as db:
            for job in db.find_jobs({"locked": True}):
                db.update_job(job["db_id"], {"lock_id": None, "lock_time": None})
                log.info("released the stale lock of job %s", job["db_id"])

    def run(self) -> int:
        def on_signal(signum, frame):
            self.stopping = True

        old = {s: signal.signal(s, on_signal) for s in (signal.SIGTERM, signal.SIGINT)}
        try:
            preload()
            self.startup()
            if self.once:
                for action in ORDER:
                    self.spawn(action)
                    self.reap(block=True)
                return 0
            for action in ORDER:
                self.spawn(action)
            log.info("runner started for project %s (pid %d)", self.project.name, os.getpid())
            idle_seen = 0
            while not self.stopping:
                time.sleep(0.2)
                for _pid, action, status in self.reap():
                    self.restart(action, status)
                if self.exit_when_idle:
                    idle_seen = idle_seen + 1 if self.idle() else 0
                    if idle_seen >= 2:
                        log.info("nothing left to do: stopping")
                        break
            return 0
        finally:
            self.stop_children()
            for s, handler in old.items():
                signal.signal(s, handler)

    def restart(self, action: str, status: int) -> None:
        if self.stopping:
            return
        n = self.failures.get(action, 0)
        delay = self.RESTART_DELAYS[min(n, len(self.RESTART_DELAYS) - 1)]
        log.warning("action %s ended (status %d); restarting in %g s", action, status, delay)
        self.failures[action] = n + 1
        time.sleep(delay)
        self.spawn(action)

