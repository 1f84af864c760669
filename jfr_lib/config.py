"""The project file: find it, read it (YAML, TOML or JSON) and turn it into typed objects.

This module holds the typed objects and finds the files; reading a file is
:mod:`jfr_lib.config_load`, checking it and building the objects
:mod:`jfr_lib.config_check`. Only the standard library (and PyYAML for YAML
files) is imported: the command line loads a project on every call and must
start fast.

Errors name the file and the dotted key, one line for each problem; every
problem of a file is reported at once::

    /home/me/.config/jfr/projects/p.yaml: workers.cluster.work_dir: must be an absolute path
    /home/me/.config/jfr/projects/p.yaml: runner.heartbeat: must be a finite number
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from jfr_lib.errors import ConfigError

PROJECT_SUFFIXES = (".yaml", ".yml", ".toml", ".json")
SCHEDULERS = ("shell", "slurm", "pbs", "sge")
WORKER_TYPES = ("local", "remote")


def _doc(text: str, default=None, positive=None, **kwargs):
    """A dataclass field whose metadata carries its description.

    ``positive`` marks a number that must be more than 0 (True, or the reason
    to give when it is not); every number must be finite and not negative.
    """
    metadata = {"doc": text, "positive": positive}
    if callable(default):
        return field(default_factory=default, metadata=metadata, **kwargs)
    return field(default=default, metadata=metadata, **kwargs)


#: Why ``timeout_execute`` (jobflow-remote's key: the seconds a command on the host may run) must be > 0.
_TIMEOUT_EXECUTE = ("must be more than 0: it is how many seconds a command on the host may run before it "
                    "is stopped, so 0 would stop every command at once")  # fmt: skip


@dataclass
class ExecConfig:
    """How to prepare the environment of a job (``exec_config.<NAME>``).

    Also public as ``jfr_lib.ExecutionConfig``, with the fields of jobflow-remote's
    class of that name, to pass to ``submit_flow`` or ``set_run_config``.
    """

    name: str = _doc("name of this execution configuration", "")
    modules: list = _doc("environment modules loaded with `module load`", list)
    export: dict = _doc("environment variables exported before the job runs", dict)
    pre_run: str | None = _doc("shell lines run before the job")
    post_run: str | None = _doc("shell lines run after the job")


@dataclass
class Worker:
    """Where and how jobs run (``workers.<NAME>``)."""

    name: str = _doc("name of the worker", "")
    type: str = _doc("`local` (this machine) or `remote` (over SSH)", "local")
    scheduler_type: str = _doc("queue system: shell, slurm, pbs or sge", "shell")
    work_dir: str = _doc("absolute folder where run folders are created", "")
    resources: dict = _doc("default scheduler resources for every job", dict)
    pre_run: str | None = _doc("shell lines run before every job on this worker")
    post_run: str | None = _doc("shell lines run after every job on this worker")
    max_jobs: int | None = _doc("most jobs queued or running at once (none: no limit)")
    python: str | None = _doc("python command on the worker (local default: the runner's)")
    poll_interval: float | None = _doc("seconds between queue status queries", positive=True)
    timeout_execute: float = _doc("seconds before a command on the host times out", 60.0,
                                  positive=_TIMEOUT_EXECUTE)  # fmt: skip
    scheduler_username: str | None = _doc("user name used to query the queue")
    host: str | None = _doc("remote host name")
    user: str | None = _doc("remote user name")
    port: int | None = _doc("SSH port")
    password: str | None = _doc("SSH password")
    key_filename: Any = _doc("SSH private key file(s)")
    passphrase: str | None = _doc("passphrase of the SSH key")
    gateway: Any = _doc("jump host: a host string or a mapping of connection keys")
    connect_timeout: float | None = _doc("seconds to wait for an SSH connection", positive=True)
    keepalive: int | None = _doc("seconds between SSH keepalive packets", 60)
    login_shell: bool = _doc("run remote commands in a login shell", True)
    shell_cmd: str = _doc("shell used for remote commands", "bash")
    connect_kwargs: dict = _doc("extra keyword arguments for the SSH connection", dict)
    known_hosts: str | None = _doc("known_hosts file checked for the host key (default ~/.ssh/known_hosts)")
    accept_new_host_keys: bool = _doc("accept and record keys of hosts not yet known (changed keys fail)", False)
    interactive_login: bool = _doc("log in interactively (two-factor authentication)", False)
    forward_agent: bool = _doc("forward the SSH agent", False)
    inline_ssh_env: bool = _doc("pass environment variables inline", True)
    batch: Any = _doc("batch submission settings (not used by jfr)")
    sanitize: bool = _doc("strip banners from command output", False)

    @property
    def is_local(self) -> bool:
        return self.type == "local"


@dataclass
class QueueConfig:
    """Where the queue database lives (``queue``)."""

    backend: str = _doc("`sqlite` (embedded file) or `mongodb`", "sqlite")
    path: str | None = _doc("SQLite file (default: queue.db in the project's data folder)")
    uri: str | None = _doc("MongoDB connection URI")
    database: str | None = _doc("MongoDB database name")
    prefix: str = _doc("prefix of the MongoDB collection names", "jfr")
    connect_timeout: float = _doc("seconds to wait for the MongoDB server (to find it and to connect) "
                                  "before a command gives up", 5.0, positive=True)  # fmt: skip


@dataclass
class RunnerOptions:
    """How the runner paces itself (``runner``)."""

    idle_sleep: float = _doc("seconds an idle action process sleeps between looks", 1.0, positive=True)
    queue_poll_interval: float = _doc("default seconds between queue status queries", 5.0, positive=True)
    local_poll_interval: float = _doc("seconds between status queries of local shell jobs", 1.0, positive=True)
    max_step_attempts: int = _doc("attempts of a failing step before REMOTE_ERROR", 3)
    delta_retry: list = _doc("seconds to wait before each retry", lambda: [30, 300, 1200])
    heartbeat: float = _doc("seconds between heartbeats of the runner lease", 5.0, positive=True)
    stale_heartbeats: int = _doc("missed heartbeats after which another runner may take over", 3)
    processes: dict = _doc("processes per action, e.g. {upload: 2, complete: 2}", dict)
    log_max_bytes: int = _doc("size at which the runner log is rotated", 10 * 1024 * 1024)
    log_backups: int = _doc("rotated runner logs kept", 5)
    warm_start: bool = _doc("local shell jobs fork from a runner process with jobflow already loaded", True)
    recycle_memory_mb: float = _doc("an action process whose resident memory grew by more than this many MB "
                                    "(a large output went through it) is replaced by a fresh one after its step",
                                    100.0)  # fmt: skip
    lock_timeout: float | None = _doc("seconds after which a lock counts as stale", positive=True)
    delay_checkout: float | None = _doc("accepted for compatibility; unused")
    delay_check_run_status: float | None = _doc("alias of queue_poll_interval", positive=True)
    delay_advance_status: float | None = _doc("accepted for compatibility; unused")
    delay_refresh_limited: float | None = _doc("accepted for compatibility; unused")
    delay_update_batch: float | None = _doc("accepted for compatibility; unused")
    delete_tmp_folder: bool = _doc("accepted for compatibility; unused", True)


@dataclass
class Project:
    """A whole project file."""

    name: str
    path: Path
    base_dir: Path
    workers: dict
    exec_config: dict
    queue: QueueConfig
    runner: RunnerOptions
    jobstore: dict | None = None
    metadata: dict = field(default_factory=dict)
    log_dir: Path | None = None

    @property
    def queue_db_path(self) -> Path:
        return Path(self.queue.path) if self.queue.path else self.base_dir / "queue.db"

    @property
    def log_path(self) -> Path:
        """The runner's log file."""
        if self.log_dir is not None:
            return self.log_dir / f"{self.name}.log"
        import platformdirs

        return platformdirs.user_log_path("jfr") / f"{self.name}.log"

    @property
    def jobstore_dir(self) -> Path:
        return self.base_dir / "jobstore"

    def worker(self, name: str) -> Worker:
        """The worker called ``name``; ConfigError if the project has none."""
        try:
            return self.workers[name]
        except KeyError:
            raise ConfigError(f"unknown worker {name!r}", self.path) from None


# --- where projects live -------------------------------------------------------


def projects_dir() -> Path:
    """The folder holding project files: ``$JFR_PROJECTS_DIR`` or the user config folder."""
    env = os.environ.get("JFR_PROJECTS_DIR")
    if env:
        return Path(env).expanduser()
    import platformdirs

    return platformdirs.user_config_path("jfr") / "projects"


def default_base_dir(name: str) -> Path:
    """The data folder of a project: the user data folder, one sub-folder per project."""
    import platformdirs

    return platformdirs.user_data_path("jfr") / name


def project_files(folder: Path | None = None) -> dict:
    """Map project name -> file for every project file in the projects folder."""
    folder = folder or projects_dir()
    found = {}
    if folder.is_dir():
        for p in sorted(folder.iterdir()):
            if p.suffix in PROJECT_SUFFIXES and p.is_file() and not p.name.startswith("."):
                found.setdefault(p.stem, p)
    return found


def find_project_file(name: str | None = None) -> Path:
    """Choose the project file: by name, by ``$JFR_PROJECT``, or the only one there is."""
    name = name or os.environ.get("JFR_PROJECT") or None
    if name and (os.sep in name or Path(name).suffix in PROJECT_SUFFIXES) and Path(name).is_file():
        return Path(name)
    files = project_files()
    if name:
        if name not in files:
            from jfr_lib.errors import NotFoundError

            known = ", ".join(files) or "none"
            raise NotFoundError(f"no project named {name!r} in {projects_dir()} (known: {known})")
        return files[name]
    if len(files) == 1:
        return next(iter(files.values()))
    if not files:
        from jfr_lib.errors import NotFoundError

        raise NotFoundError(
            f"no project file in {projects_dir()}: create one with `jfr project init NAME`"
        )
    raise ConfigError(
        f"several projects ({', '.join(files)}): choose one with -p NAME or $JFR_PROJECT"
    )


def load_project(name: str | None = None) -> Project:
    """Find and load a project (see :func:`find_project_file`)."""
    return load_project_file(find_project_file(name))




def read_mapping(path: Path) -> dict:
    """Read a YAML, TOML or JSON file into a dict (see :func:`jfr_lib.config_load.read_mapping`)."""
    from jfr_lib.config_load import read_mapping as read

    return read(Path(path))


def load_project_file(path) -> Project:
    """Read and validate one project file.

    Parameters
    ----------
    path
        The project file.

    Returns
    -------
    Project
        The typed project.

    Raises
    ------
    ConfigError
        Every problem found, one line each as ``FILE: KEY: reason`` (repeated
        keys included); or one line when the file cannot be read or parsed.
    """
    from jfr_lib.config_check import ProjectChecker
    from jfr_lib.config_load import read_mapping as read

    path = Path(path).expanduser().absolute()
    problems = []
    data = read(path, problems)
    return ProjectChecker(path, problems).project(data)
