"""The project file: find it, read it (YAML, TOML or JSON) and turn it into typed objects.

Only the standard library (and PyYAML for YAML files) is imported here: the
command line loads a project on every call and must start fast.

Errors name the file and the dotted key, one line each::

    /home/me/.config/jfr/projects/p.yaml: workers.cluster.work_dir: must be an absolute path
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from jfr_lib.errors import ConfigError

PROJECT_SUFFIXES = (".yaml", ".yml", ".toml", ".json")
SCHEDULERS = ("shell", "slurm", "pbs", "sge")
WORKER_TYPES = ("local", "remote")


def _doc(text: str, default=None, **kwargs):
    """A dataclass field whose metadata carries its description."""
    if callable(default):
        return field(default_factory=default, metadata={"doc": text}, **kwargs)
    return field(default=default, metadata={"doc": text}, **kwargs)


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
    poll_interval: float | None = _doc("seconds between queue status queries")
    timeout_execute: float = _doc("seconds before a command on the host times out", 60.0)
    scheduler_username: str | None = _doc("user name used to query the queue")
    host: str | None = _doc("remote host name")
    user: str | None = _doc("remote user name")
    port: int | None = _doc("SSH port")
    password: str | None = _doc("SSH password")
    key_filename: Any = _doc("SSH private key file(s)")
    passphrase: str | None = _doc("passphrase of the SSH key")
    gateway: Any = _doc("jump host: a host string or a mapping of connection keys")
    connect_timeout: float | None = _doc("seconds to wait for an SSH connection")
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


@dataclass
class RunnerOptions:
    """How the runner paces itself (``runner``)."""

    idle_sleep: float = _doc("seconds an idle action process sleeps between looks", 1.0)
    queue_poll_interval: float = _doc("default seconds between queue status queries", 5.0)
    local_poll_interval: float = _doc("seconds between status queries of local shell jobs", 1.0)
    max_step_attempts: int = _doc("attempts of a failing step before REMOTE_ERROR", 3)
    delta_retry: list = _doc("seconds to wait before each retry", lambda: [30, 300, 1200])
    heartbeat: float = _doc("seconds between heartbeats of the runner lease", 5.0)
    stale_heartbeats: int = _doc("missed heartbeats after which another runner may take over", 3)
    processes: dict = _doc("processes per action, e.g. {upload: 2, complete: 2}", dict)
    log_max_bytes: int = _doc("size at which the runner log is rotated", 10 * 1024 * 1024)
    log_backups: int = _doc("rotated runner logs kept", 5)
    warm_start: bool = _doc("local shell jobs fork from a runner process with jobflow already loaded", True)
    recycle_memory_mb: float = _doc("an action process whose resident memory grew by more than this many MB "
                                    "(a large output went through it) is replaced by a fresh one after its step",
                                    100.0)  # fmt: skip
    lock_timeout: float | None = _doc("seconds after which a lock counts as stale")
    delay_checkout: float | None = _doc("accepted for compatibility; unused")
    delay_check_run_status: float | None = _doc("alias of queue_poll_interval")
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


# --- reading -------------------------------------------------------------------


def read_mapping(path: Path) -> dict:
    """Read a YAML, TOML or JSON file into a dict, with one-line errors."""
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError(f"cannot read: {exc.strerror}", path) from None
    try:
        if path.suffix == ".json":
            data = json.loads(text)
        elif path.suffix == ".toml":
            try:
                import tomllib
            except ImportError:  # Python 3.10
                import tomli as tomllib
            data = tomllib.loads(text)
        else:
            import yaml

            loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
            data = yaml.load(text, Loader=loader)
    except Exception as exc:  # each parser has its own error classes
        msg = " ".join(str(exc).split())
        raise ConfigError(f"not valid {path.suffix.lstrip('.').upper()}: {msg}", path) from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError("must hold a mapping of keys", path)
    return data


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
        The first problem found, as ``FILE: KEY: reason``.
    """
    path = Path(path).expanduser().absolute()
    return _Parser(path).project(read_mapping(path))


class _Parser:
    """Turns the raw mapping into dataclasses, reporting ``FILE: key: reason``."""

    TOP_KEYS = {
        "name", "base_dir", "tmp_dir", "log_dir", "daemon_dir", "log_level", "runner",
        "workers", "queue", "exec_config", "jobstore", "remote_jobstore", "metadata",
    }  # fmt: skip

    def __init__(self, path: Path):
        self.path = path

    def fail(self, key: str, message: str):
        raise ConfigError(message, self.path, key)

    def project(self, data: dict) -> Project:
        self.keys(data, self.TOP_KEYS, "")
        name = data.get("name", self.path.stem)
        if not isinstance(name, str) or not name.strip():
            self.fail("name", "must be a non-empty string")
        if name != self.path.stem:
            self.fail("name", f"must match the file name ({self.path.stem!r})")
        base_dir = data.get("base_dir")
        if base_dir is None:
            base = default_base_dir(name)
        else:
            base = self.abspath("base_dir", base_dir)
        log_dir = self.abspath("log_dir", data["log_dir"]) if data.get("log_dir") else None
        workers_raw = data.get("workers")
        if not isinstance(workers_raw, dict) or not workers_raw:
            self.fail("workers", "must be a mapping with at least one worker")
        workers = {n: self.worker(n, w) for n, w in workers_raw.items()}
        execs_raw = self.mapping("exec_config", data.get("exec_config") or {})
        execs = {n: self.exec_config(f"exec_config.{n}", n, e) for n, e in execs_raw.items()}
        jobstore = data.get("jobstore")
        if jobstore is not None:
            self.jobstore(jobstore)
        metadata = self.mapping("metadata", data.get("metadata") or {})
        return Project(
            name=name,
            path=self.path,
            base_dir=base,
            workers=workers,
            exec_config=execs,
            queue=self.queue(data.get("queue")),
            runner=self.runner(data.get("runner") or {}),
            jobstore=jobstore,
            metadata=metadata,
            log_dir=log_dir,
        )

    # helpers
    def keys(self, data: dict, allowed, prefix: str):
        for k in data:
            if k not in allowed:
                where = f"{prefix}.{k}" if prefix else str(k)
                self.fail(where, "unknown key")

    def mapping(self, key: str, value) -> dict:
        if not isinstance(value, dict):
            self.fail(key, "must be a mapping")
        return value

    def abspath(self, key: str, value) -> Path:
        if not isinstance(value, str) or not value:
            self.fail(key, "must be a path")
        p = Path(os.path.expandvars(value)).expanduser()
        if not p.is_absolute():
            self.fail(key, "must be an absolute path")
        return p

    def typed(self, cls, key: str, data: dict, **fixed):
        """Build a dataclass from ``data``, checking key names and value types."""
        known = {f.name: f for f in fields(cls)}
        self.keys(data, set(known) - set(fixed), key)
        values = {}
        for k, v in data.items():
            f = known[k]
            values[k] = self.check_type(f"{key}.{k}", f.type, v)
        return cls(**values, **fixed)

    def check_type(self, key: str, annotation: str, value):
        if value is None or annotation == "Any":
            return value
        kinds = annotation.replace(" ", "").split("|")
        if "float" in kinds and isinstance(value, (int, float)) and not isinstance(value, bool):
            if value < 0:
                self.fail(key, "must not be negative")
            return float(value)
        if "int" in kinds and isinstance(value, int) and not isinstance(value, bool):
            if value < 0:
                self.fail(key, "must not be negative")
            return value
        checks = {"str": str, "bool": bool, "dict": dict, "list": list}
        for kind in kinds:
            if kind in checks and isinstance(value, checks[kind]):
                return value
        wanted = {"str": "a string", "bool": "true or false", "dict": "a mapping",
                  "list": "a list", "int": "a whole number", "float": "a number"}  # fmt: skip
        names = " or ".join(wanted[k] for k in kinds if k in wanted)
        self.fail(key, f"must be {names}")

    # sections
    def worker(self, name, raw) -> Worker:
        key = f"workers.{name}"
        self.mapping(key, raw)
        w = self.typed(Worker, key, raw, name=name)
        if w.type not in WORKER_TYPES:
            self.fail(f"{key}.type", f"must be one of {', '.join(WORKER_TYPES)}")
        if w.scheduler_type not in SCHEDULERS:
            self.fail(f"{key}.scheduler_type", f"must be one of {', '.join(SCHEDULERS)}")
        if not w.work_dir:
            self.fail(f"{key}.work_dir", "is required")
        if w.type == "local":
            w.work_dir = str(self.abspath(f"{key}.work_dir", w.work_dir))
        elif not w.work_dir.startswith(("/", "~", "$")):
            self.fail(f"{key}.work_dir", "must be an absolute path")
        if w.type == "remote" and not w.host:
            self.fail(f"{key}.host", "is required for a remote worker")
        if w.max_jobs is not None and w.max_jobs < 1:
            self.fail(f"{key}.max_jobs", "must be at least 1")
        return w

    def exec_config(self, key, name, raw) -> ExecConfig:
        self.mapping(key, raw)
        e = self.typed(ExecConfig, key, raw, name=name)
        if isinstance(e.modules, str):
            e.modules = [e.modules]
        for k, v in e.export.items():
            if not isinstance(v, (str, int, float)) or isinstance(v, bool):
                self.fail(f"{key}.export.{k}", "must be a string or a number")
        e.export = {str(k): str(v) for k, v in e.export.items()}
        return e

    def queue(self, raw) -> QueueConfig:
        if raw is None:
            return QueueConfig()
        self.mapping("queue", raw)
        if "store" in raw:
            return self.jfremote_queue(raw)
        q = self.typed(QueueConfig, "queue", raw)
        if q.backend not in ("sqlite", "mongodb"):
            self.fail("queue.backend", "must be sqlite or mongodb")
        if q.backend == "sqlite" and q.path:
            q.path = str(self.abspath("queue.path", q.path))
        if q.backend == "mongodb":
            if not q.uri:
                self.fail("queue.uri", "is required for the mongodb backend")
            if not q.database:
                self.fail("queue.database", "is required for the mongodb backend")
        return q

    def jfremote_queue(self, raw) -> QueueConfig:
        """Map jobflow-remote's ``queue.store`` (a maggma Mongo store) to our MongoDB backend."""
        allowed = {"store", "flows_collection", "auxiliary_collection", "batches_collection",
                   "db_id_prefix"}  # fmt: skip
        self.keys(raw, allowed, "queue")
        store = self.mapping("queue.store", raw["store"])
        kind = store.get("type")
        if kind == "MongoURIStore":
            uri = store.get("uri")
            if not uri:
                self.fail("queue.store.uri", "is required")
        elif kind == "MongoStore":
            from urllib.parse import quote_plus

            host = store.get("host", "localhost")
            port = store.get("port", 27017)
            auth = ""
            if store.get("username"):
                auth = f"{quote_plus(store['username'])}:{quote_plus(str(store.get('password', '')))}@"
            uri = f"mongodb://{auth}{host}:{port}/"
        else:
            self.fail("queue.store.type", "must be MongoStore or MongoURIStore")
        database = store.get("database")
        if not database:
            self.fail("queue.store.database", "is required")
        prefix = store.get("collection_name", "jobs")
        return QueueConfig(backend="mongodb", uri=uri, database=database, prefix=prefix)

    def runner(self, raw) -> RunnerOptions:
        self.mapping("runner", raw)
        r = self.typed(RunnerOptions, "runner", raw)
        if r.delay_check_run_status is not None and "queue_poll_interval" not in raw:
            r.queue_poll_interval = r.delay_check_run_status
        if isinstance(r.delta_retry, (int, float)):
            r.delta_retry = [r.delta_retry]
        if not r.delta_retry or not all(
            isinstance(x, (int, float)) and not isinstance(x, bool) and x >= 0
            for x in r.delta_retry
        ):
            self.fail("runner.delta_retry", "must be a list of non-negative numbers")
        if r.max_step_attempts < 1:
            self.fail("runner.max_step_attempts", "must be at least 1")
        if r.heartbeat <= 0:
            self.fail("runner.heartbeat", "must be positive")
        if r.stale_heartbeats < 1:
            self.fail("runner.stale_heartbeats", "must be at least 1")
        many = ("upload", "submit", "download", "complete")
        for action, n in r.processes.items():
            key = f"runner.processes.{action}"
            if action not in (*many, "checkout", "monitor"):
                self.fail(key, "unknown action")
            if not isinstance(n, int) or isinstance(n, bool) or n < 1:
                self.fail(key, "must be a whole number of at least 1")
            if action not in many and n != 1:
                self.fail(key, "this action runs in exactly one process")
        return r

    def jobstore(self, raw):
        self.mapping("jobstore", raw)
        docs = raw.get("docs_store")
        if not isinstance(docs, dict) or "type" not in docs:
            self.fail("jobstore.docs_store", "must be a store mapping with a `type`")
        extra = raw.get("additional_stores") or {}
        self.mapping("jobstore.additional_stores", extra)
        for n, s in extra.items():
            if not isinstance(s, dict) or "type" not in s:
                self.fail(f"jobstore.additional_stores.{n}", "must be a store mapping with a `type`")
        self.keys(raw, {"docs_store", "additional_stores", "save", "load"}, "jobstore")

