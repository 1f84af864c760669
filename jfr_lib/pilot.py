"""A pilot: one queue job that runs many jobs, ``python -m jfr_lib.pilot HANDLE_DIR PILOT_ID``.

The runner submits pilots for a batch worker (:mod:`jfr_lib.actions.batch`);
each runs inside its allocation with no database access. It loads jobflow once,
keeps a warm server (:func:`jfr_lib.warm.serve_at`) as its child, and then:

- takes tickets from ``ready/`` by renaming them into ``running/<pilot>/``
  (exactly one pilot wins a rename), lowest rank (highest priority) first, up
  to ``--parallel`` at once;
- runs each job's script (its exports, modules, pre/post commands) in its own
  session, with ``JFR_PILOT_SOCKET`` set so that the job forks from the warm
  server (same fallback to a cold start as on the runner's machine); on SLURM,
  with ``--placement srun`` (or ``auto`` in a several-node allocation), the
  script runs as an ``srun`` step of one task instead, placed by SLURM, and
  starts cold; a job asking for ``gpus`` gets its own devices from the
  pilot's ``CUDA_VISIBLE_DEVICES``;
- moves the ticket to ``done/`` when the script ends (the run folder holds the
  outcome), ends a job whose ticket appears in ``cancel/``;
- never starts a job that cannot end before the allocation does: its expected
  time (declared by the job, else ``--default-job-time``, else the longest run
  of a job of the same name in this pilot, else none) plus ``--margin`` must fit
  before ``--deadline`` seconds after the pilot started;
- leaves after ``--max-wait`` idle seconds, ``--max-jobs`` jobs, when asked
  (``stop/<pilot>``), or when no waiting job fits in the time left, once its
  running jobs have ended. On SIGTERM (a cancel, the time limit) it ends its
  jobs and leaves their tickets in ``running/``: the runner sees the pilot gone
  and sends those jobs back to READY.

It writes what it is doing to ``pilots/<pilot>.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import time
from datetime import datetime, timezone

from jfr_lib import batch
from jfr_lib.rundir import QUEUE_ERR, QUEUE_OUT, SCRIPT_NAME

#: Environment variable naming the pilot's warm server socket (read by the warm client).
SOCKET_VARIABLE = "JFR_PILOT_SOCKET"
STATUS_EVERY = 1.0


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _write_json(path: str, data: dict) -> None:
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "w") as f:
        json.dump(data, f)
    os.replace(tmp, path)


def queue_id() -> str | None:
    for name in ("SLURM_JOB_ID", "JOB_ID", "PBS_JOBID"):
        if os.environ.get(name):
            return os.environ[name]
    return None


class Running:
    """A job this pilot runs: its script's process, when it started, its devices."""

    def __init__(self, ticket: str, name: str, proc, devices: list):
        self.ticket, self.name, self.proc, self.devices = ticket, name, proc, devices
        self.started = time.monotonic()


class Pilot:
    def __init__(self, args):
        self.args = args
        self.home = args.handle_dir
        self.id = args.pilot_id
        self.mine = os.path.join(self.home, batch.RUNNING, self.id)
        self.started_wall = time.time()
        self.started = time.monotonic()
        self.deadline = self.started + args.deadline if args.deadline else None
        self.jobs: dict = {}  # ticket -> Running
        self.done = 0
        self.longest: dict = {}  # job name -> longest run seen here, seconds
        self.idle_since = time.monotonic()
        self.leaving = None  # why the pilot takes no more jobs
        self.terminated = False
        self.devices = [d for d in os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",") if d.strip()]
        self.free_devices = list(self.devices)
        self.server_pid = None
        self.socket = None
        self._status_written = float("-inf")
        self._status_key = None

    # --- status ---------------------------------------------------------------------
    def status(self, state: str, force: bool = False) -> None:
        key = (state, self.done, tuple(sorted(self.jobs)), self.leaving)
        now = time.monotonic()
        if not force and key == self._status_key and now - self._status_written < STATUS_EVERY * 10:
            return
        if not force and now - self._status_written < STATUS_EVERY and state == "running":
            return
        left = None if self.deadline is None else round(self.deadline - now, 1)
        data = {"pilot": self.id, "state": state, "host": socket.gethostname(), "pid": os.getpid(),
                "queue_id": queue_id(), "started": datetime.fromtimestamp(self.started_wall, timezone.utc)
                .isoformat(timespec="seconds"), "time_left": left, "jobs_done": self.done,
                "running": sorted(self.jobs), "leaving": self.leaving, "updated": _now()}  # fmt: skip
        try:
            _write_json(os.path.join(self.home, batch.PILOTS, f"{self.id}.json"), data)
            self._status_key, self._status_written = key, now
        except OSError as exc:
            print(f"jfr pilot: cannot write its status: {exc}", file=sys.stderr)

    # --- the warm server ----------------------------------------------------------------
    def start_server(self) -> None:
        import tempfile

        from jfr_lib.proc import die_with_parent

        folder = os.path.join(tempfile.gettempdir(), f"jfr-{os.getuid()}")
        self.socket = os.path.join(folder, f"pilot-{self.id}.sock")
        parent = os.getpid()
        pid = os.fork()
        if pid == 0:
            code = 0
            try:
                die_with_parent()
                from jfr_lib.proc import set_title

                set_title(f"jfr-pilot-warm {self.id}")  # not counted as a pilot by who reads command lines
                for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGUSR1, signal.SIGUSR2):
                    signal.signal(signum, signal.SIG_DFL)  # the pilot's handlers are not the server's
                import logging

                from jfr_lib import warm

                log = logging.getLogger("jfr.pilot")
                log.addHandler(logging.StreamHandler(sys.stderr))
                log.setLevel(logging.WARNING)
                warm.serve_at(self.socket, lambda: os.getppid() != parent, log)
            except BaseException:  # the pilot goes on; jobs start cold
                import traceback

                traceback.print_exc()
                code = 1
            finally:
                os._exit(code)
        self.server_pid = pid

    # --- taking and running jobs ----------------------------------------------------
    def expected(self, ticket: dict) -> float:
        for value in (ticket.get("expected_time"), self.args.default_job_time, self.longest.get(ticket.get("name"))):
            if value is not None:
                return float(value)
        return 0.0

    def fits(self, ticket: dict) -> bool:
        if self.deadline is None:
            return True
        return time.monotonic() + self.expected(ticket) + self.args.margin <= self.deadline

    def waiting(self) -> list:
        try:
            return sorted(n for n in os.listdir(os.path.join(self.home, batch.READY)) if batch.TICKET.match(n))
        except FileNotFoundError:
            return []

    def take(self) -> int:
        """Claim and start jobs while there is room; how many were started."""
        started = 0
        names = self.waiting()
        unfit = 0
        for name in names:
            if len(self.jobs) >= self.args.parallel or self.full():
                break
            path = os.path.join(self.home, batch.READY, name)
            try:
                with open(path) as f:
                    ticket = json.load(f)
            except (OSError, ValueError):
                continue  # taken meanwhile, or being rewritten
            if not self.fits(ticket):
                unfit += 1
                continue  # a pilot with more time left will take it
            if int(ticket.get("gpus") or 0) > len(self.free_devices) and self.devices:
                continue
            try:
                os.rename(path, os.path.join(self.mine, name))
            except FileNotFoundError:
                continue  # another pilot won it
            if os.path.exists(os.path.join(self.home, batch.CANCEL, name)):  # stopped as it was taken
                self.finish(name)
                continue
            self.start_job(name, ticket)
            started += 1
        if names and unfit == len(names) and not self.jobs and not started:
            self.leaving = "no waiting job can end before this allocation does"
        return started

    def full(self) -> bool:
        limit = self.args.max_jobs
        return limit is not None and self.done + len(self.jobs) >= limit

    def srun(self) -> bool:
        placement = self.args.placement
        if placement == "srun":
            return True
        return placement == "auto" and int(os.environ.get("SLURM_JOB_NUM_NODES") or 1) > 1

    def start_job(self, name: str, ticket: dict) -> None:
        run_dir = ticket["run_dir"]
        env = dict(os.environ, JFR_PILOT=self.id)
        devices = []
        wanted = int(ticket.get("gpus") or 0)
        if wanted and self.devices:
            devices, self.free_devices = self.free_devices[:wanted], self.free_devices[wanted:]
            env["CUDA_VISIBLE_DEVICES"] = ",".join(devices)
        command = ["bash", SCRIPT_NAME]
        if self.srun():
            command = ["srun", "--nodes=1", "--ntasks=1", "--exclusive", f"--job-name={name}", *command]
        elif self.socket:
            env[SOCKET_VARIABLE] = self.socket
        try:
            out_path, err_path = os.path.join(run_dir, QUEUE_OUT), os.path.join(run_dir, QUEUE_ERR)
            with open(out_path, "ab") as out, open(err_path, "ab") as err:
                proc = subprocess.Popen(command, cwd=run_dir, env=env, stdin=subprocess.DEVNULL, stdout=out,
                                        stderr=err, start_new_session=True)  # fmt: skip
        except OSError as exc:  # the run folder is gone or unwritable: the runner reads why in done/
            print(f"jfr pilot: cannot start {name}: {exc}", file=sys.stderr)
            self.free_devices += devices
            self.finish(name)
            return
        self.jobs[name] = Running(name, ticket.get("name"), proc, devices)
        self.idle_since = None

    def finish(self, name: str) -> None:
        try:
            os.rename(os.path.join(self.mine, name), os.path.join(self.home, batch.DONE, name))
        except FileNotFoundError:
            pass
        self.done += 1

    def reap(self) -> None:
        for name, job in list(self.jobs.items()):
            if job.proc.poll() is None:
                continue
            del self.jobs[name]
            ran = time.monotonic() - job.started
            if job.name:
                self.longest[job.name] = max(ran, self.longest.get(job.name, 0.0))
            self.free_devices += job.devices
            self.finish(name)
        if not self.jobs and self.idle_since is None:
            self.idle_since = time.monotonic()

    def cancels(self) -> None:
        folder = os.path.join(self.home, batch.CANCEL)
        for name, job in self.jobs.items():
            path = os.path.join(folder, name)
            if os.path.exists(path):
                self.signal_job(job, signal.SIGTERM)
                try:
                    os.unlink(path)
                except FileNotFoundError:
                    pass

    def signal_job(self, job: Running, signum) -> None:
        try:
            os.killpg(job.proc.pid, signum)
        except (ProcessLookupError, PermissionError):
            pass

    def end_jobs(self, grace: float = 10.0) -> None:
        """SIGTERM to every job (they write why they stopped), SIGKILL to what is left after ``grace``."""
        for job in self.jobs.values():
            self.signal_job(job, signal.SIGTERM)
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline and any(j.proc.poll() is None for j in self.jobs.values()):
            time.sleep(0.05)
        for job in self.jobs.values():
            if job.proc.poll() is None:
                self.signal_job(job, signal.SIGKILL)

    # --- the loop ---------------------------------------------------------------------
    def should_leave(self) -> bool:
        if self.jobs:
            return False
        if self.leaving:
            return True
        if self.full():
            self.leaving = f"ran {self.done} jobs (max_jobs_per_batch)"
        elif self.idle_since is not None and time.monotonic() - self.idle_since >= self.args.max_wait:
            self.leaving = f"no job for {self.args.max_wait:g} s (max_wait)"
        elif self.deadline is not None and time.monotonic() + self.args.margin >= self.deadline:
            self.leaving = "the allocation's time is up"
        return self.leaving is not None

    def run(self) -> int:
        def on_term(signum, frame):
            self.terminated = True

        for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGUSR1, signal.SIGUSR2):
            signal.signal(signum, on_term)
        os.makedirs(self.mine, exist_ok=True)
        self.status("starting", force=True)
        _preload()
        self.start_server()
        stop_file = os.path.join(self.home, batch.STOP, self.id)
        while not self.terminated:
            self.reap()
            self.cancels()
            if self.leaving is None and os.path.exists(stop_file):
                self.leaving = "asked to stop"
            if self.leaving is None and not self.full():
                self.take()
            if self.should_leave():
                break
            self.status("running")
            time.sleep(self.args.sleep)
        if self.terminated:
            self.leaving = "terminated by a signal (time limit or cancel)"
            self.status("leaving", force=True)
            self.end_jobs()
            # their tickets stay in running/: the runner sees this pilot gone and sends them back
        self.status("left", force=True)
        for remove in (lambda: os.unlink(stop_file), lambda: os.rmdir(self.mine)):  # rmdir: only if empty
            try:
                remove()
            except OSError:
                pass
        if self.server_pid:
            try:
                os.kill(self.server_pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        return 0


def _preload() -> None:
    """Import what every job needs once, before the warm server forks from this process."""
    import gc

    import jobflow  # noqa: F401
    import maggma.stores  # noqa: F401
    import monty.json  # noqa: F401

    import jfr_lib.worker  # noqa: F401

    gc.collect()
    gc.freeze()


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m jfr_lib.pilot", description="Run jobs handed over in HANDLE_DIR.")
    p.add_argument("handle_dir")
    p.add_argument("pilot_id")
    p.add_argument("--parallel", type=int, default=1)
    p.add_argument("--max-jobs", type=int, default=None)
    p.add_argument("--max-wait", type=float, default=60.0)
    p.add_argument("--deadline", type=float, default=None, help="seconds from start to the allocation's end")
    p.add_argument("--margin", type=float, default=30.0)
    p.add_argument("--sleep", type=float, default=0.1)
    p.add_argument("--default-job-time", type=float, default=None)
    p.add_argument("--placement", choices=("auto", "srun", "none"), default="auto")
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    if not batch.PILOT.match(args.pilot_id):
        print(f"jfr pilot: {args.pilot_id!r} is not a pilot id", file=sys.stderr)
        return 2
    return Pilot(args).run()


if __name__ == "__main__":
    sys.exit(main())
