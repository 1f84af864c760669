"""Helpers shared by the benchmarks: a throw-away project, a runner process, memory sampling."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "examples"))


def make_project(root: Path, name: str = "bench", extra_worker: str = "") -> dict:
    projects = root / "projects"
    projects.mkdir(parents=True, exist_ok=True)
    (projects / f"{name}.yaml").write_text(
        f"name: {name}\nbase_dir: {root / 'data'}\n"
        f"workers:\n  local:\n    type: local\n    work_dir: {root / 'run'}\n{extra_worker}"
    )
    env = dict(os.environ)
    env["JFR_PROJECTS_DIR"] = str(projects)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "examples"), str(ROOT), env.get("PYTHONPATH", "")])
    os.environ.update({k: env[k] for k in ("JFR_PROJECTS_DIR", "PYTHONPATH")})
    return env


def tmpdir() -> Path:
    return Path(tempfile.mkdtemp(prefix="jfr-bench-"))


def descendants(pid: int) -> list:
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        try:
            for task in os.listdir(f"/proc/{p}/task"):
                with open(f"/proc/{p}/task/{task}/children") as f:
                    todo += [int(c) for c in f.read().split()]
        except OSError:
            pass
    return out


def pss_kib(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Pss:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


class MemorySampler(threading.Thread):
    """Peak of the summed PSS of a process and its descendants, sampled every 0.1 s.

    ``exclude`` names command-line words whose processes are left out (the
    jobs themselves are not part of the runner), as are jobs started warm
    (process name ``jfr-job``).
    """

    def __init__(self, pid: int, exclude=("jfr_lib.worker",)):
        super().__init__(daemon=True)
        self.pid, self.exclude = pid, exclude
        self.peak_kib = 0
        self.stop = threading.Event()

    def _cmd(self, pid):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                return f.read().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            return ""

    @staticmethod
    def _comm(pid):
        try:
            with open(f"/proc/{pid}/comm") as f:
                return f.read().strip()
        except OSError:
            return ""

    def run(self):
        while not self.stop.is_set():
            pids = [p for p in descendants(self.pid) if self._comm(p) != "jfr-job"
                    and not any(word in self._cmd(p) for word in self.exclude)]  # fmt: skip
            self.peak_kib = max(self.peak_kib, sum(pss_kib(p) for p in pids))
            time.sleep(0.1)


class RunnerProcess:
    """``jfr runner run`` in the background, stopped with SIGTERM."""

    def __init__(self, env: dict):
        self.proc = subprocess.Popen(
            [sys.executable, str(ROOT / "jfr.py"), "runner", "run"], env=env,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
        )  # fmt: skip
        self.sampler = MemorySampler(self.proc.pid)
        self.sampler.start()

    def stop(self):
        self.sampler.stop.set()
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        return self.sampler.peak_kib
