"""The runner's actions: checkout, upload, submit, monitor, download, complete.

Each action is a module with ``step(ctx) -> int`` (how many jobs it moved) and
runs in its own process. Every step is idempotent: it looks at what is already
recorded (a queue id, an input file, a started marker) before acting, so a
runner killed at any instant can simply start again.

``STATE_ACTIONS`` is the dispatch table: which action picks up a job in each state.
"""

from __future__ import annotations

import json
import logging
import os
import time
import traceback

from jfr_lib.errors import ConfigError, HostError, JobFailure, LoginNeeded, QueueError
from jfr_lib.queue_db import lock_token, open_queue_db
from jfr_lib.rundir import run_dir_for  # noqa: F401 (the actions take it from here)
from jfr_lib.states import JobState

#: Seconds between two tries of a job whose worker waits for a login (``jfr login`` makes them due at once).
LOGIN_RETRY = 30.0

ORDER = ("checkout", "upload", "submit", "monitor", "download", "complete")

#: Which action has new work after an action moved a job.
NEXT_ACTION = {"checkout": "upload", "upload": "submit", "submit": "monitor",
               "monitor": "download", "download": "complete", "complete": "checkout"}  # fmt: skip

STATE_ACTIONS = {
    JobState.READY: "checkout",
    JobState.CHECKED_OUT: "upload",
    JobState.UPLOADED: "submit",
    JobState.SUBMITTED: "monitor",
    JobState.RUNNING: "monitor",
    JobState.RUN_FINISHED: "download",
    JobState.DOWNLOADED: "complete",
}


class ActionContext:
    """What one action process holds: the database, hosts, queue adapters, JobStore.

    Parameters
    ----------
    project
        The loaded project.
    action
        Name of the action, used in the lock token and the logger.
    """

    def __init__(self, project, action: str, lock_id: str | None = None, status_file=None):
        self.project = project
        self.action = action
        self.db = open_queue_db(project)
        self.lock_id = lock_id or lock_token(action)
        self.status_file = status_file
        self._status = "unset"
        self._pending, self._written = None, float("-inf")
        self.fault = None  # the fault this process is waiting out, if any
        self.stop_flag = lambda: False
        self.log = logging.getLogger(f"jfr.{action}")
        self._hosts = {}
        self._queues = {}
        self._jobstore = None
        self.last_poll = {}
        self.woken_at = float("-inf")
        self.notified = set()  # actions woken during the current step
        self.login_marked = set()  # workers this process found without their login

    def worker(self, name: str):
        worker = self.project.workers.get(name)
        if worker is None:
            raise JobFailure(f"worker {name!r} is not in the project file")
        return worker

    def host(self, worker):
        if worker.name not in self._hosts:
            from jfr_lib.hosts import get_host

            self._hosts[worker.name] = get_host(worker)
        return self._hosts[worker.name]

    def queue(self, worker):
        if worker.scheduler_type not in self._queues:
            from jfr_lib.queue import QueueAdapter

            self._queues[worker.scheduler_type] = QueueAdapter(worker.scheduler_type)
        return self._queues[worker.scheduler_type]

    def jobstore(self):
        if self._jobstore is None:
            from jfr_lib.jobstore import get_jobstore

            self._jobstore = get_jobstore(self.project)
        return self._jobstore

    def claim(self, state) -> dict | None:
        """Lock the next job in ``state`` whose retry time has come (None when stopping)."""
        return self.claim_query({"state": str(state), "retry_due": time.time()})

    def claim_query(self, query: dict) -> dict | None:
        if self.stop_flag():
            return None
        job = self.db.claim_job(query, self.lock_id)
        if job is not None:
            self.set_status(job)
        return job

    #: Seconds between two writes of the status file: ``jfr runner info`` needs no more.
    STATUS_EVERY = 0.5

    def set_status(self, job, force: bool = False) -> None:
        """Record what this process is doing, for ``jfr runner info``.

        Written at most every :attr:`STATUS_EVERY` seconds while jobs stream by (two
        file writes per job in every process would cost more than the rest of some
        steps); ``force`` writes what is pending, as the process goes idle.
        """
        key = None if job is None else job["db_id"]
        if key != self._status:
            self._status = key
            self._pending = self._status_doc("idle" if job is None else "busy", job=key)
        self._flush_status(force)

    def _status_doc(self, state: str, **extra) -> dict:
        from datetime import datetime, timezone

        fault = {"fault": self.fault} if self.fault else {}  # shown until a job gets through again
        return {"pid": os.getpid(), "action": self.action, "state": state, "job": None, **fault, **extra,
                "since": datetime.now(timezone.utc).isoformat(timespec="seconds")}  # fmt: skip

    def _flush_status(self, force: bool) -> None:
        now = time.monotonic()
        if self.status_file is None or self._pending is None or (not force and now - self._written < self.STATUS_EVERY):
            return
        tmp = f"{self.status_file}.tmp"
        try:
            with open(tmp, "w") as f:
                json.dump(self._pending, f)
            os.replace(tmp, self.status_file)
            self._pending, self._written = None, now
        except OSError:
            pass

    def close(self):
        for host in self._hosts.values():
            try:
                host.close()
            except Exception:
                pass
        self.db.close()

    # --- outcomes -------------------------------------------------------------
    def advance(self, job: dict, new_state, **changes) -> bool:
        """Move a job this process locked to ``new_state`` and unlock it."""
        changes.update(lock_id=None, lock_time=None, step_attempts=0, retry_time=None, fault_attempts=0)
        if job.get("login_wait"):
            changes["login_wait"] = None
        ok = self.db.set_state(job, new_state, expect_lock=self.lock_id, **changes)
        if ok and (job.get("login_wait") or job["worker"] in self.login_marked):
            self.logged_in_again(job["worker"])
        if not ok:
            self.log.warning("job %s: changed by someone else before reaching %s", job["db_id"], new_state)
            self.db.release_job(job["db_id"], self.lock_id)
        else:
            self.fault = None
        if ok and new_state in STATE_ACTIONS:  # the next action starts on it now, not when this step ends
            from jfr_lib.wakeup import notify

            notify(self.project.base_dir, STATE_ACTIONS[new_state])
            self.notified.add(STATE_ACTIONS[new_state])
        return ok

    def login_needed(self, worker: str, exc: LoginNeeded) -> None:
        """Mark ``worker`` as waiting for a login (said once in the log, until it is back)."""
        from jfr_lib import login_marks

        self.login_marked.add(worker)
        if login_marks.mark(self.db, worker, " ".join(str(exc).split())):
            self.log.warning("worker %s needs a login; its jobs wait (run `jfr login %s`): %s", worker, worker, exc)

    def logged_in_again(self, worker: str) -> None:
        """A step on ``worker`` got through: drop its login mark, if it still has one."""
        from jfr_lib import login_marks

        self.login_marked.discard(worker)
        if login_marks.clear(self.db, worker):
            self.log.info("worker %s is logged in again: its jobs go on", worker)

    def wait_out_fault(self, job: dict, exc: BaseException) -> None:
        """A fault of the storage or the database: the step is tried again later, the job kept.

        The job's retry budget is not touched; the delay grows while the fault
        lasts. When even releasing the job fails, :class:`jfr_lib.faults.Fault`
        goes up to the process's loop, which waits for the database.
        """
        from jfr_lib import faults

        n = int(job.get("fault_attempts") or 0)
        wait, message = faults.delay(n), faults.describe(exc)
        self.log.warning("job %s: the %s step met a fault, trying again in %g s: %s",
                         job["db_id"], self.action, wait, message)  # fmt: skip
        self.set_fault(message)
        try:
            self.db.release_job(job["db_id"], self.lock_id, {
                "retry_time": time.time() + wait, "fault_attempts": n + 1,
                "last_error": message, "last_error_step": self.action,
            })  # fmt: skip
        except Exception as again:
            if faults.is_fault(again):
                raise faults.Fault(faults.describe(again)) from None
            raise

    def set_fault(self, message: str) -> None:
        """Say in the status file (``jfr runner info``) which fault this process is waiting out."""
        self.fault = message
        self._status = "fault"
        self._pending = self._status_doc("fault")
        self._flush_status(force=True)

    def release_own_locks(self) -> int:
        """Unlock the jobs this process held when a fault interrupted it (their steps start over)."""
        held = self.db.find_jobs({"lock_id": self.lock_id})
        for job in held:
            self.db.release_job(job["db_id"], self.lock_id)
        return len(held)

    def fail(self, job: dict, message: str, tb: str | None = None, state=JobState.FAILED) -> None:
        """Record a permanent failure: the error, its traceback, the state it came from."""
        self.log.info("job %s (%s) %s: %s", job["db_id"], job["name"], state, message)
        if not self.db.set_state(job, state, expect_lock=self.lock_id, error=message, traceback=tb,
                                 failed_step=self.action, lock_id=None, lock_time=None):  # fmt: skip
            self.db.release_job(job["db_id"], self.lock_id)
            return
        from jfr_lib.dependencies import release_children

        release_children(self.db, job["uuid"])
        self.db.refresh_flow_state(job["flow_uuid"])

    def step_failed(self, job: dict, exc: BaseException) -> None:
        """Route an exception raised while acting on ``job``.

        Host and queue errors are transient: the step is retried after the
        configured delays, then the job becomes REMOTE_ERROR. Anything else is
        permanent and the job becomes FAILED at once.
        """
        from jfr_lib.faults import is_fault

        if is_fault(exc):
            self.wait_out_fault(job, exc)
            return
        if isinstance(exc, LoginNeeded):  # no attempt spent: the job waits for `jfr login`
            self.login_needed(job["worker"], exc)
            self.db.release_job(job["db_id"], self.lock_id, {
                "retry_time": time.time() + LOGIN_RETRY, "login_wait": True,
                "last_error": " ".join(str(exc).split()), "last_error_step": self.action,
            })  # fmt: skip
            return
        opts = self.project.runner
        transient = isinstance(exc, HostError) or (isinstance(exc, QueueError) and exc.transient)
        message = " ".join(str(exc).split()) or type(exc).__name__
        if isinstance(exc, (JobFailure, ConfigError)) or not transient:
            tb = getattr(exc, "traceback", None)
            if tb is None and not isinstance(exc, (JobFailure, QueueError, ConfigError)):
                tb = traceback.format_exc()
            self.fail(job, message, tb)
            return
        if getattr(exc, "limit", False):
            delay = opts.delta_retry[0]
            self.log.info("job %s: %s; trying again in %g s", job["db_id"], message, delay)
            self.db.release_job(job["db_id"], self.lock_id, {"retry_time": time.time() + delay})
            return
        attempts = int(job.get("step_attempts") or 0) + 1
        if attempts >= opts.max_step_attempts:
            self.fail(job, f"{self.action} failed {attempts} times: {message}",
                      state=JobState.REMOTE_ERROR)  # fmt: skip
            return
        delay = opts.delta_retry[min(attempts - 1, len(opts.delta_retry) - 1)]
        self.log.warning("job %s: %s failed (attempt %d), retry in %g s: %s",
                         job["db_id"], self.action, attempts, delay, message)  # fmt: skip
        self.db.release_job(job["db_id"], self.lock_id, {
            "step_attempts": attempts, "retry_time": time.time() + delay,
            "last_error": message, "last_error_step": self.action,
        })  # fmt: skip


def guarded(ctx: ActionContext, job: dict, func) -> bool:
    """Run ``func(job)``; route any exception through :meth:`ActionContext.step_failed`."""
    try:
        func(job)
        return True
    except Exception as exc:  # every failure must land in the job document
        ctx.step_failed(job, exc)
        return False
