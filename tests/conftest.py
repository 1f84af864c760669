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
        self.projects.mkdir(exist_ok=True)
        self.base = root / "data"
        self.work = root / "run"
        self.path = self.projects / f"{name}.yaml"

    def write(self, text: str | None = None, **worker_extra) -> Path:
        if text is None:
            extra = "".join(f"    {k}: {v}\n" for k, v in worker_extra.items())
            text = (
                f"name: {self.name}\nbase_dir: {self.base}\n"
                f"workers:\n  local:\n    type: local\n    scheduler_type: shell\n"
                f"    work_dir: {self.work}\n{extra}"
                "exec_config:\n  with_env:\n    export:\n      JFR_TEST_VAR: from-exec-config\n"
                "runner:\n  delta_retry: [0.2, 0.5]\n  max_step_attempts: 3\n"
            )
        self.path.write_text(text)
        return self.path

    @property
    def project(self):
        from jfr_lib.config import load_project_file

        return load_project_file(self.path)

    def db(self):
        from jfr_lib.queue_db import open_queue_db

        return open_queue_db(self.project)

    def env(self) -> dict:
        env = dict(os.environ)
        env["JFR_PROJECTS_DIR"] = str(self.projects)
        env["PYTHONPATH"] = os.pathsep.join([str(TESTS), str(ROOT), env.get("PYTHONPATH", "")])
        env.pop("JFR_PROJECT", None)
        return env

    def jfr(self, *args, timeout: float = 60, check: bool = True):
        """Run the real ``jfr`` command (through the launcher) in a subprocess."""
        proc = subprocess.Popen(
            [sys.executable, str(ROOT / "jfr.py"), *args], env=self.env(), text=True,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True,
        )  # fmt: skip
        try:
            out, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            out, err = proc.communicate()
            raise AssertionError(f"jfr {' '.join(args)} timed out after {timeout} s:\n{err}") from None
        if check and proc.returncode != 0:
            raise AssertionError(f"jfr {' '.join(args)} exited {proc.returncode}:\n{err}")
        return proc.returncode, out, err

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


@pytest.fixture
def penv(tmp_path, monkeypatch):
    env = ProjectEnv(tmp_path)
    env.write()
    monkeypatch.setenv("JFR_PROJECTS_DIR", str(env.projects))
    monkeypatch.delenv("JFR_PROJECT", raising=False)
    monkeypatch.setenv("PYTHONPATH", env.env()["PYTHONPATH"])
    return env


@pytest.fixture(scope="module")
def module_penv(tmp_path_factory):
    """A project shared by the tests of one module (one runner pass for many flows)."""
    env = ProjectEnv(tmp_path_factory.mktemp("proj"))
    env.write()
    old = {k: os.environ.get(k) for k in ("JFR_PROJECTS_DIR", "PYTHONPATH", "JFR_PROJECT")}
    os.environ.update({k: v for k, v in env.env().items() if k in ("JFR_PROJECTS_DIR", "PYTHONPATH")})
    os.environ.pop("JFR_PROJECT", None)
    yield env
    for k, v in old.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v
