"""Shared fixtures: a throw-away project in a temporary folder, and a real runner."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent
ROOT = TESTS.parent
sys.path.insert(0, str(TESTS))  # the job functions in testjobs.py


class ProjectEnv:
    """A project file in a temporary folder, with helpers to run the real runner."""

    def __init__(self, root: Path, name: str = "test"):
        self.root = root
        self.name = name
        self.projects = root / "projects"
        self.projects.mkdir(parents=True, exist_ok=True)
        self.base = root / "data"
        self.work = root / "run"
        self.path = self.projects / f"{name}.yaml"

    def write(self, text: str | None = None, runner: dict | None = None, workers: str = "",
              **worker_extra) -> Path:
        """Write the project file: the default local worker plus ``worker_extra`` keys,
        then the YAML of more ``workers`` (indented as entries of ``workers:``)."""
        if text is None:
            extra = "".join(f"    {k}: {v}\n" for k, v in worker_extra.items()) + workers
            opts = {"delta_retry": "[0.2, 0.5]", "max_step_attempts": 3, "heartbeat": 0.5, **(runner or {})}
            text = (
                f"name: {self.name}\nbase_dir: {self.base}\nlog_dir: {self.root / 'logs'}\n"
                f"workers:\n  local:\n    type: local\n    scheduler_type: shell\n"
                f"    work_dir: {self.work}\n{extra}"
                "exec_config:\n  with_env:\n    export:\n      JFR_TEST_VAR: from-exec-config\n"
                "runner:\n" + "".join(f"  {k}: {v}\n" for k, v in opts.items())
            )
        self.path.write_text(text)
        self._project = None
        return self.path

    @property
    def project(self):
        """The project as last written by :meth:`write` (a test may break the file afterwards)."""
        from jfr_lib.config import load_project_file

        if getattr(self, "_project", None) is None:
            self._project = load_project_file(self.path)
        return self._project

    def db(self):
        from jfr_lib.queue_db import open_queue_db

        return open_queue_db(self.project)

    def isolation(self) -> dict:
        """Variables that keep the user's own projects, defaults and jobflow-remote files out of a test."""
        return {"JFR_PROJECTS_DIR": str(self.projects), "XDG_CONFIG_HOME": str(self.root / "config"),
                "JFREMOTE_PROJECTS_FOLDER": str(self.root / "jfremote"),
                "JFREMOTE_CONFIG_FILE": str(self.root / "jfremote.yaml")}  # fmt: skip

    def env(self) -> dict:
        env = dict(os.environ)
        env.update(self.isolation())
        env["PYTHONPATH"] = os.pathsep.join([str(TESTS), str(ROOT), env.get("PYTHONPATH", "")])
        env.pop("JFR_PROJECT", None)
        env.pop("JFREMOTE_PROJECT", None)
        return env

    def jfr(self, *args, timeout: float = 60, check: bool = True, stdin: str | None = None):
        """Run the real ``jfr`` command (through the launcher) in a subprocess."""
        proc = subprocess.Popen(
            [sys.executable, str(ROOT / "jfr.py"), *args], env=self.env(), text=True,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True,
            stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL,
        )  # fmt: skip
        try:
            out, err = proc.communicate(input=stdin, timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            out, err = proc.communicate()
            raise AssertionError(f"jfr {' '.join(args)} timed out after {timeout} s:\n{err}") from None
        if check and proc.returncode != 0:
            raise AssertionError(f"jfr {' '.join(args)} exited {proc.returncode}:\n{err}")
        return proc.returncode, out, err

    def start_runner(self) -> RunnerProc:
        return RunnerProc(self)

    def run_until_idle(self, timeout: float = 180):
        return self.jfr("runner", "run", "--exit-when-idle", timeout=timeout)

    def jobs(self) -> dict:
        """name -> list of job documents, and db_id -> document."""
        with self.db() as db:
            return db.find_jobs(sort=[("db_id", 1)])

    def output(self, job: dict):
        from jfr_lib.jobstore import get_jobstore

        store = get_jobstore(self.project)
        return store.get_output(job["uuid"], which=job["index"], load=True)


#: Processes of a runner of the default test project: one per action, and the warm server.
RUNNER_CHILDREN = 7


def children_of(pid: int) -> list:
    out = []
    try:
        for task in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{task}/children") as f:
                out += [int(c) for c in f.read().split()]
    except OSError:
        pass
    return out


def gone(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] in ("Z", "X")
    except OSError:
        return True


def wait_for(predicate, timeout: float, interval: float = 0.1, message: str = "condition"):
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout} s waiting for {message}")


class RunnerProc:
    """``jfr runner run`` in a subprocess (the foreground runner), stopped on exit."""

    def __init__(self, env: ProjectEnv):
        self.env = env
        self.proc = subprocess.Popen(
            [sys.executable, str(ROOT / "jfr.py"), "runner", "run"], env=env.env(),
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
        )  # fmt: skip
        self.pid = self.proc.pid

    def wait_children(self, n: int = RUNNER_CHILDREN, timeout: float = 60) -> list:
        return wait_for(lambda: len(children_of(self.pid)) >= n and children_of(self.pid), timeout,
                        message=f"{n} action processes")  # fmt: skip

    def stop(self, timeout: float = 60) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.pid, signal.SIGKILL)
            return self.proc.wait()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()


INFRA_DIR = Path(os.environ.get("JFR_TEST_INFRA_DIR", "/tmp/jfr-test-infra"))
#: A valid ed25519 public key that is not the test server's: known_hosts lines with it must fail.
OTHER_HOST_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFX1lq0t7fS8uV4pG9x7rX8m3m0m2rSg2aH3kK0o7Qy1"
INFRA_SCRIPTS = TESTS / "infra"


def _read_env(name: str) -> dict:
    path = INFRA_DIR / name
    return dict(line.split("=", 1) for line in path.read_text().splitlines() if "=" in line)


def _alive(pidfile: Path) -> bool:
    try:
        pid = int(pidfile.read_text())
        return not gone(pid)
    except (OSError, ValueError):
        return False


@pytest.fixture(scope="session")
def infra():
    """Real sshd (127.0.0.1:2222), SLURM and a worker environment for the test user.

    Started (and installed) by ``tests/infra`` scripts when ``JFR_TEST_INFRA=1``
    and we are root; stopped at the end if this session started them.
    """
    if os.environ.get("JFR_TEST_INFRA") != "1":
        pytest.skip("set JFR_TEST_INFRA=1 (as root) to run against real sshd and SLURM")
    if os.geteuid() != 0:
        pytest.skip("the infrastructure tests need root (they install and start sshd and SLURM)")
    INFRA_DIR.mkdir(parents=True, exist_ok=True)
    started = []
    daemons = (("sshd", INFRA_DIR / "ssh" / "sshd.pid"), ("slurm", INFRA_DIR / "slurm" / "slurmctld.pid"),
               ("sge", INFRA_DIR / "sge" / "qmaster.pid"))  # fmt: skip
    for name, pidfile in daemons:
        if not _alive(pidfile):
            started.append(name)
        subprocess.run(["bash", str(INFRA_SCRIPTS / f"start-{name}.sh"), str(INFRA_DIR)], check=True, timeout=900)
    subprocess.run(["bash", str(INFRA_SCRIPTS / "worker-env.sh"), str(INFRA_DIR), str(ROOT)], check=True,
                   timeout=900)  # fmt: skip
    env = {**_read_env("ssh.env"), **_read_env("slurm.env"), **_read_env("sge.env"), **_read_env("worker.env")}
    yield env
    for name in reversed(started):
        subprocess.run(["bash", str(INFRA_SCRIPTS / f"stop-{name}.sh"), str(INFRA_DIR)], timeout=300)


def remote_worker_yaml(infra: dict, name: str, work_dir: str, scheduler: str = "shell", **extra) -> str:
    """YAML lines of a remote worker on the test sshd (indented under ``workers:``)."""
    keys = {
        "type": "remote", "scheduler_type": scheduler, "host": infra["TEST_SSH_HOST"],
        "port": infra["TEST_SSH_PORT"], "user": infra["TEST_SSH_USER"],
        "key_filename": infra["TEST_SSH_KEY"], "known_hosts": infra["TEST_SSH_KNOWN_HOSTS"],
        "work_dir": work_dir, "python": infra["TEST_WORKER_PYTHON"],
        "pre_run": f"export PYTHONPATH={infra['TEST_WORKER_PYTHONPATH']}", "connect_timeout": 5,
        **extra,
    }  # fmt: skip
    return f"  {name}:\n" + "".join(f"    {k}: {v}\n" for k, v in keys.items())


@pytest.fixture
def remote_dir(infra, request):
    """A fresh folder in the test user's home, removed afterwards."""
    import shutil
    import uuid

    home = Path("/home") / infra["TEST_SSH_USER"]
    path = home / "jfr-tests" / f"{request.node.name[:40]}-{uuid.uuid4().hex[:6]}"
    yield str(path)
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def penv(tmp_path, monkeypatch):
    env = ProjectEnv(tmp_path)
    env.write()
    for key, value in env.isolation().items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("JFR_PROJECT", raising=False)
    monkeypatch.delenv("JFREMOTE_PROJECT", raising=False)
    monkeypatch.setenv("PYTHONPATH", env.env()["PYTHONPATH"])
    return env


@pytest.fixture(scope="module")
def module_penv(tmp_path_factory):
    """A project shared by the tests of one module (one runner pass for many flows)."""
    env = ProjectEnv(tmp_path_factory.mktemp("proj"))
    env.write()
    keys = ("PYTHONPATH", "JFR_PROJECT", "JFREMOTE_PROJECT", *env.isolation())
    old = {k: os.environ.get(k) for k in keys}
    os.environ.update({k: v for k, v in env.env().items() if k in keys})
    os.environ.pop("JFR_PROJECT", None)
    os.environ.pop("JFREMOTE_PROJECT", None)
    yield env
    for k, v in old.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v
