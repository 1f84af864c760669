"""The typed objects of a project file: a project, its workers, exec configs, queue and runner options.

Imported by :mod:`jfr_lib.config` (which finds and loads files) and
:mod:`jfr_lib.config_check` (which builds these objects from a file's mapping);
it imports nothing of ours but the errors.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from jfr_lib.errors import ConfigError

PROJECT_SUFFIXES = (".yaml", ".yml", ".toml", ".json")
SCHEDULERS = ("shell", "slurm", "pbs", "sge")
WORKER_TYPES = ("local", "remote")
SSH_CLIENTS = ("fabric", "openssh")


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
class BatchConfig:
    """Pilot queue jobs that each run many jobs (``workers.<NAME>.batch``)."""

    jobs_handle_dir: str = _doc("absolute folder on the worker through which the runner hands jobs to pilots", "")
    work_dir: str = _doc("absolute folder on the worker where the pilots' own queue jobs run", "")
    max_jobs_per_batch: int | None = _doc("jobs a pilot runs before it leaves (none: no limit)")
    max_wait: float = _doc("seconds a pilot waits idle for a job before it leaves", 60.0)
    max_time: float | None = _doc("seconds after its start when a pilot's allocation ends (default: the "
                                  "worker's time resource)", positive=True)  # fmt: skip
    parallel_jobs: int = _doc("jobs a pilot runs at once", 1)
    sleep_time: float = _doc("seconds between a pilot's looks for new jobs", 0.1, positive=True)
    time_margin: float = _doc("seconds kept free before the allocation ends: no job starts that would "
                              "end inside them", 30.0)  # fmt: skip
    default_job_time: float | None = _doc("expected run time of a job that declares none (default: the "
                                          "longest run of a job of the same name in the pilot)")  # fmt: skip
    placement: str = _doc("`auto` (each job an `srun` step when the allocation has several nodes), `srun` "
                          "(always) or `none` (jobs run where the pilot runs)", "auto")  # fmt: skip


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
    ssh_client: str = _doc("how a remote worker is reached: `fabric` (paramiko) or `openssh` (the system `ssh` "
                           "and `sftp`, with the ssh config and shared master connections)", "fabric")  # fmt: skip
    ssh_config: str | None = _doc("ssh config file for `ssh_client: openssh` (`ssh -F`; default ~/.ssh/config)")
    batch: BatchConfig | None = _doc("run jobs inside pilot queue jobs, many per allocation (see BatchConfig)")
    sanitize: bool = _doc("cut what the remote shell prints around a command's output (banners)", False)
    sanitize_command: bool | None = _doc("jobflow-remote's name of `sanitize`")
    execution_cmd: str | None = _doc("the command that runs a job, `{}` standing for its run folder (e.g. a "
                                     "container wrapper: `apptainer exec img.sif jf -fe execution run {}`)")
    delay_download: float | None = _doc("seconds to wait after a job's end before fetching its files (a slow "
                                        "network file system)")  # fmt: skip

    @property
    def is_local(self) -> bool:
        return self.type == "local"

    @property
    def is_batch(self) -> bool:
        return self.batch is not None


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
    client_options: dict = _doc("more options of the MongoDB client (tls, authSource, ...)", dict)


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
    delay_ping_db: float | None = _doc("accepted for compatibility; unused (the lease's heartbeat replaces it)")
    delete_tmp_folder: bool = _doc("accepted for compatibility; unused", True)


#: Events a notification rule may choose (``notify.rules[].events``).
NOTIFY_EVENTS = ("flow_completed", "flow_failed", "job_failed", "job_remote_error", "runner_stopped",
                 "login_needed")  # fmt: skip
#: Events that belong to no flow: a rule's flow filters cannot choose them.
NOTIFY_NO_FLOW = ("runner_stopped", "login_needed")
#: The keys of each type of notification channel (besides ``type`` and ``timeout``).
NOTIFY_CHANNEL_KEYS = {"email": {"host", "port", "security", "username", "password", "sender", "to"},
                       "webhook": {"url", "headers"}, "command": {"command"}}  # fmt: skip
NOTIFY_CHANNEL_TYPES = tuple(NOTIFY_CHANNEL_KEYS)
SMTP_SECURITY = ("starttls", "ssl", "none")


@dataclass
class NotifyChannel:
    """Where notifications go (``notify.channels.<NAME>``)."""

    name: str = _doc("name of the channel", "")
    type: str = _doc("`email` (SMTP), `webhook` (a JSON POST with a `text` field) or `command`", "")
    timeout: float = _doc("seconds to wait for the server (or the command) before an attempt fails", 10.0,
                          positive=True)  # fmt: skip
    host: str | None = _doc("email: the SMTP server")
    port: int | None = _doc("email: the SMTP port (default 587 with starttls, 465 with ssl, 25 with none)")
    security: str = _doc("email: `starttls`, `ssl` (SMTP over TLS) or `none`", "starttls")
    username: str | None = _doc("email: the login name on the SMTP server (none: no login)")
    password: str | None = _doc("email: the password of the login", repr=False)
    sender: str | None = _doc("email: the From address (default: jfr@ this host)")
    to: Any = _doc("email: the recipient address, or a list of them", list)
    url: str | None = _doc("webhook: the URL the JSON message is posted to (kept secret: it often holds a token)",
                           repr=False)  # fmt: skip
    headers: dict = _doc("webhook: more HTTP headers (an Authorization header is kept secret)", dict, repr=False)
    command: Any = _doc("command: a shell line, or a list (program and arguments), run with the message on its "
                        "standard input and the event in JFR_* environment variables")  # fmt: skip


@dataclass
class NotifyRule:
    """Which events go to which channels (``notify.rules[N]``)."""

    channels: list = _doc("names of the channels the matching events go to (default: every channel)", list)
    events: list = _doc(f"events to send (default: all): {', '.join(NOTIFY_EVENTS)}", list)
    flows: list = _doc("shell patterns of flow names: only flows whose name matches one (default: any flow)", list)
    metadata: dict = _doc("metadata values the flow (or the job) must have: key -> value or list of values "
                          "(default: any)", dict)  # fmt: skip


@dataclass
class Notify:
    """Messages sent by the runner when flows end, jobs fail, a runner died or a worker needs a login
    (``notify``)."""

    channels: dict = _doc("the channels, by name (see NotifyChannel)", dict)
    rules: list = _doc("which events go where (see NotifyRule)", list)
    interval: float = _doc("seconds between two looks for new events", 2.0, positive=True)
    window: float = _doc("seconds during which the events for one channel are gathered before they go out", 5.0)
    digest_after: int = _doc("more events than this for one channel in one window go out as one digest", 5)
    digest_lines: int = _doc("events listed one by one in a digest (the rest are counted)", 10)
    retry_delays: list = _doc("seconds before each new attempt after a failed send; then the message is "
                              "logged and dropped", lambda: [5, 30, 120])  # fmt: skip


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
    log_level: str = "info"
    #: notifications (None: the project file has no ``notify`` section)
    notify: Notify | None = None
    #: jobflow-remote keys accepted although jfr does without them: dotted key -> why (``jfr project show``)
    replaced: dict = field(default_factory=dict)

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


def default_base_dir(name: str) -> Path:
    """The data folder of a project: the user data folder, one sub-folder per project."""
    import platformdirs

    return platformdirs.user_data_path("jfr") / name
