"""Helpers shared by the benchmarks: a throw-away project, a runner process, memory and CPU sampling."""

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
BENCH = ROOT / "bench"
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "examples"))


def make_project(root: Path, name: str = "bench", extra_worker: str = "", extra: str = "") -> dict:
    """Write a project with one local worker under ``root``; return the environment that selects it.

    ``extra_worker`` is YAML added to the worker, ``extra`` top-level YAML (``runner: {...}``). The
    job modules of ``examples/`` and ``bench/`` (``bench_jobs``) are put on PYTHONPATH, here too.
    """
    projects = root / "projects"
    projects.mkdir(parents=True, exist_ok=True)
    (projects / f"{name}.yaml").write_text(
        f"name: {name}\nbase_dir: {root / 'data'}\n"
        f"workers:\n  local:\n    type: local\n    work_dir: {root / 'run'}\n{extra_worker}{extra}"
    )
    env = dict(os.environ)
    env["JFR_PROJECTS_DIR"] = str(projects)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "examples"), str(ROOT), str(BENCH), env.get("PYTHONPATH", "")])
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


def wait_completed(project, flow_uuid: str, n: int, timeout: float = 600) -> None:
    """Wait until ``n`` jobs of a flow are COMPLETED; raise if one failed or time runs out."""
    from jfr_lib.queue_db import open_queue_db

    deadline = time.monotonic() + timeout
    with open_queue_db(project) as db:
        while time.monotonic() < deadline:
            states = db.count_states({"flow_uuid": flow_uuid})
            if states.get("COMPLETED", 0) >= n:
                return
            if states.get("FAILED") or states.get("REMOTE_ERROR"):
                raise RuntimeError(f"jobs failed: {states}")
            time.sleep(0.02)
    raise TimeoutError(f"flow {flow_uuid} not done after {timeout} s")


def proc_comm(pid: int) -> str:
    """The process name (``/proc/PID/comm``), empty when the process is gone."""
    try:
        with open(f"/proc/{pid}/comm") as f:
            return f.read().strip()
    except OSError:
        return ""


_TICK = os.sysconf("SC_CLK_TCK")


def proc_cpu(pid: int) -> tuple | None:
    """(utime + stime, cutime + cstime) of a process in seconds; None when it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    # after the name: state is field 3, utime..cstime are fields 14..17
    utime, stime, cutime, cstime = (int(v) for v in fields[11:15])
    return (utime + stime) / _TICK, (cutime + cstime) / _TICK


def rss_kib(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") // 1024
    except (OSError, ValueError, IndexError):
        return 0


def children(pid: int) -> list:
    """The direct children of a process."""
    found = []
    try:
        for task in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{task}/children") as f:
                found += [int(c) for c in f.read().split()]
    except OSError:
        pass
    return found


def runner_processes(pid: int) -> dict:
    """pid -> name of a runner's own processes: ``runner`` (the parent) and its children, the
    action processes and the warm server (``jfr-upload``, ``jfr-warm``...). Jobs are not among
    them: a warm job is a child of the warm server (named ``jfr-warm`` until it renames itself
    ``jfr-job``), a shell job a process of its own session."""
    found = {pid: "runner"}
    for p in children(pid):
        name = proc_comm(p)
        if name.startswith("jfr-"):
            found[p] = name
    return found


class RunnerSampler(threading.Thread):
    """RSS, PSS and CPU of each process of a runner, by process name, every ``interval`` seconds.

    Action processes come and go (the runner replaces one that grew), so figures are kept per
    name (``runner``, ``jfr-upload``, ...): ``current`` and ``peak`` are (RSS KiB, PSS KiB), summed
    over the live processes of that name; ``pids`` counts the processes seen. :meth:`cpu` sums
    the CPU of every process ever seen as last sampled, so a process that ended still counts.
    """

    def __init__(self, pid: int, interval: float = 0.1):
        super().__init__(daemon=True)
        self.pid, self.interval = pid, interval
        self.lock = threading.Lock()
        self.current, self.peak, self.pids = {}, {}, {}
        self._cpu = {}  # pid -> (name, own s, reaped children s)
        self.halt = threading.Event()

    def run(self):
        while not self.halt.is_set():
            self.sample()
            time.sleep(self.interval)

    def sample(self) -> None:
        now, cpu = {}, {}
        for pid, name in runner_processes(self.pid).items():
            times, rss, pss = proc_cpu(pid), rss_kib(pid), pss_kib(pid)
            if times is None or rss == 0:
                continue  # gone, or a zombie
            cpu[pid] = (name, *times)
            old = now.get(name, (0, 0))
            now[name] = (old[0] + rss, old[1] + pss)
        with self.lock:
            self._cpu.update(cpu)
            self.current = now
            for name, (rss, pss) in now.items():
                peak = self.peak.setdefault(name, [0, 0])
                peak[0], peak[1] = max(peak[0], rss), max(peak[1], pss)
            for pid, (name, *_) in cpu.items():
                self.pids.setdefault(name, set()).add(pid)

    def cpu(self) -> dict:
        """Sample now; name -> (own CPU s, CPU s of reaped children) summed over its processes."""
        self.sample()
        out = {}
        with self.lock:
            for name, own, children in self._cpu.values():
                old = out.get(name, (0.0, 0.0))
                out[name] = (old[0] + own, old[1] + children)
        return out

    def reset_peaks(self) -> None:
        with self.lock:
            self.peak = {}


TIME = "/usr/bin/time"


def run_measured(cmd: list, env: dict, timeout: float = 120, cwd=None) -> tuple:
    """Run a command; return (wall s, CPU s, peak RSS KiB, exit code) of that command alone.

    The peak RSS comes from GNU time (``/usr/bin/time -f %M``) when it is installed: a child
    forked from this process carries this process's peak into its own across ``exec``, so
    ``os.wait4`` would report at least our size. Without GNU time it is ``os.wait4``'s figure
    (an upper bound). A watchdog kills the command's process group after ``timeout``.
    """
    import tempfile

    with tempfile.NamedTemporaryFile("r", suffix=".time") as out:
        timed = [TIME, "-f", "%M %U %S", "-o", out.name, *cmd] if os.path.exists(TIME) else cmd
        t0 = time.perf_counter()
        proc = subprocess.Popen(timed, env=env, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                start_new_session=True)  # fmt: skip
        watchdog = threading.Timer(timeout, os.killpg, (proc.pid, signal.SIGKILL))
        watchdog.start()
        try:
            _, status, usage = os.wait4(proc.pid, 0)
        finally:
            watchdog.cancel()
        wall = time.perf_counter() - t0
        proc.returncode = os.waitstatus_to_exitcode(status)  # reaped here, not by Popen
        cpu, peak = usage.ru_utime + usage.ru_stime, usage.ru_maxrss
        fields = out.read().split()[-3:] if timed is not cmd else []
        if len(fields) == 3:
            peak, cpu = int(fields[0]), float(fields[1]) + float(fields[2])
    return wall, cpu, peak, proc.returncode


def print_table(title: str, columns: list, rows: list) -> None:
    """Print ``title``, then ``rows`` (tuples of values already formatted) under ``columns``."""
    widths = [max(len(str(c)), *(len(str(r[i])) for r in rows)) if rows else len(c) for i, c in enumerate(columns)]
    print(title)
    print("  " + "  ".join(f"{c:>{w}}" for c, w in zip(columns, widths)))
    for row in rows:
        print("  " + "  ".join(f"{v!s:>{w}}" for v, w in zip(row, widths)))
    print(flush=True)


def load_bench_project(root: Path, extra: str = "") -> tuple:
    """A project under ``root`` (see :func:`make_project`), loaded, and the environment that selects it."""
    from jfr_lib.config import load_project

    env = make_project(root, extra=extra)
    return load_project("bench"), env  # make_project just pointed JFR_PROJECTS_DIR at it


def chain(n: int):
    """A flow of ``n`` ``quickstart_jobs.add`` jobs, each adding 1 to the output of the one before."""
    from jobflow import Flow

    from quickstart_jobs import add

    jobs = [add(0, 1)]
    for _ in range(n - 1):
        jobs.append(add(jobs[-1].output, 1))
    return Flow(jobs)


def warm_up(project, timeout: float = 120) -> None:
    """Run one trivial job to the end: every action process (and the warm server) is then up."""
    from jobflow import Flow

    from jfr_lib import submit_flow

    from quickstart_jobs import add

    flow = Flow([add(0, 0)])
    submit_flow(flow, project=project)
    wait_completed(project, flow.uuid, 1, timeout)
