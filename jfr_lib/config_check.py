"""Checking a project file's mapping and turning it into typed objects.

Every problem of the file is collected, each as ``(dotted key, reason)``, and
reported together in one :class:`~jfr_lib.errors.ConfigError` (one line per
problem), so a user fixes a file in one round rather than one error per run.
A value found wrong is left out and the check goes on with the next one.
Reasons never quote a value: it may be a password.
"""

from __future__ import annotations

import math
import os
from dataclasses import MISSING, fields
from pathlib import Path

from jfr_lib.config_jfremote import JfremoteKeys
from jfr_lib.config_model import (
    NOTIFY_CHANNEL_KEYS,
    NOTIFY_CHANNEL_TYPES,
    NOTIFY_EVENTS,
    NOTIFY_NO_FLOW,
    SCHEDULERS,
    SMTP_SECURITY,
    SSH_CLIENTS,
    WORKER_TYPES,
    BatchConfig,
    ExecConfig,
    Notify,
    NotifyChannel,
    NotifyRule,
    Project,
    QueueConfig,
    RunnerOptions,
    Worker,
    default_base_dir,
)
from jfr_lib.errors import ConfigError

_WANTED = {"str": "a string", "bool": "true or false", "dict": "a mapping", "list": "a list",
           "int": "a whole number", "float": "a number", "BatchConfig": "a mapping"}  # fmt: skip
_TYPES = {"str": str, "bool": bool, "dict": dict, "list": list, "BatchConfig": dict}  # a section, checked on its own


class _Skip(Exception):
    """The value at hand is unusable; its problem is recorded and the check moves on."""


class ProjectChecker(JfremoteKeys):
    """Turns the raw mapping of a project file into a :class:`~jfr_lib.config.Project`.

    Parameters
    ----------
    path
        The project file, named in every error.
    problems
        Problems already found while reading the file (repeated keys).
    """

    TOP_KEYS = {
        "name", "base_dir", "tmp_dir", "log_dir", "daemon_dir", "log_level", "runner",
        "workers", "queue", "exec_config", "jobstore", "remote_jobstore", "metadata", "optional_jobstores",
        "notify",
    }  # fmt: skip
    JFREMOTE_QUEUE_KEYS = {"store", "flows_collection", "auxiliary_collection", "batches_collection",
                           "db_id_prefix", "connect_timeout"}  # fmt: skip

    def __init__(self, path: Path, problems=()):
        self.path = path
        self.problems = list(problems)
        self.replaced = {}

    def accept(self, key: str, why: str) -> None:
        """A jobflow-remote key that means nothing to jfr: accepted, and listed by ``jfr project show``."""
        self.replaced[key] = why

    # --- recording --------------------------------------------------------------
    def problem(self, key: str, reason: str) -> None:
        """Record a problem and go on."""
        self.problems.append((key, reason))

    def fail(self, key: str, reason: str):
        """Record a problem and give up the value at hand (see :meth:`guard`)."""
        self.problem(key, reason)
        raise _Skip

    def guard(self, func, *args, default=None):
        """``func(*args)``, or ``default`` when it gave up a value."""
        try:
            return func(*args)
        except _Skip:
            return default

    # --- the whole file ---------------------------------------------------------
    def project(self, data: dict) -> Project:
        """Check everything and build the project.

        Raises
        ------
        ConfigError
            Every problem found, one line each.
        """
        self.keys(data, self.TOP_KEYS, "")
        name = data.get("name", self.path.stem)
        if not isinstance(name, str) or not name.strip():
            self.problem("name", "must be a non-empty string")
            name = self.path.stem
        base = default_base_dir(name) if data.get("base_dir") is None else self.guard(
            self.abspath, "base_dir", data["base_dir"])  # fmt: skip
        log_dir = self.guard(self.abspath, "log_dir", data["log_dir"]) if data.get("log_dir") else None
        workers = {}
        workers_raw = data.get("workers")
        if not isinstance(workers_raw, dict) or not workers_raw:
            self.problem("workers", "must be a mapping with at least one worker")
        else:
            workers = {n: self.guard(self.worker, n, w) for n, w in workers_raw.items()}
        execs_raw = self.guard(self.mapping, "exec_config", data.get("exec_config") or {}, default={})
        execs = {n: self.guard(self.exec_config, f"exec_config.{n}", n, e) for n, e in execs_raw.items()}
        jobstore = data.get("jobstore")
        if jobstore is not None:
            self.guard(self.jobstore, jobstore)
        metadata = self.guard(self.mapping, "metadata", data.get("metadata") or {})
        queue = self.guard(self.queue, data.get("queue"))
        runner = self.guard(self.runner, data.get("runner") or {})
        self.jfremote_top(data)
        log_level = self.guard(self.log_level, data.get("log_level"), default="info")
        notify = None if data.get("notify") is None else self.guard(self.notify, data["notify"])
        if self.problems:
            (key, reason), *more = self.problems
            raise ConfigError(reason, self.path, key, more=more)
        return Project(name=name, path=self.path, base_dir=base, workers=workers, exec_config=execs,
                       queue=queue, runner=runner, jobstore=jobstore, metadata=metadata,
                       log_dir=log_dir, log_level=log_level, replaced=self.replaced,
                       notify=notify)  # fmt: skip

    # --- helpers ----------------------------------------------------------------
    def keys(self, data: dict, allowed, prefix: str) -> list:
        """Record each unknown key; return the known ones."""
        known = []
        for k in data:
            if k in allowed:
                known.append(k)
            else:
                self.problem(f"{prefix}.{k}" if prefix else str(k), "unknown key")
        return known

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
        """Build a dataclass from ``data``, checking every key name and value type.

        A wrong value is recorded and left at its default, so that the checks
        of the other fields still run; the project is not built then anyway.
        """
        known = {f.name: f for f in fields(cls)}
        values = {}
        for k in self.keys(data, set(known) - set(fixed), key):
            f = known[k]
            values[k] = self.guard(self.check_type, f"{key}.{k}", f.type, data[k], f.metadata.get("positive"),
                                   default=f.default if f.default is not MISSING else f.default_factory())  # fmt: skip
        return cls(**values, **fixed)

    def check_type(self, key: str, annotation: str, value, positive=None):
        """The value converted to the field's type; gives up on a wrong one."""
        if value is None or annotation == "Any":
            return value
        kinds = annotation.replace(" ", "").split("|")
        number = isinstance(value, (int, float)) and not isinstance(value, bool)
        if number and ("float" in kinds or ("int" in kinds and isinstance(value, int))):
            if not math.isfinite(value):
                self.fail(key, "must be a finite number")
            if value < 0:
                self.fail(key, "must not be negative")
            if positive and value == 0:
                self.fail(key, positive if isinstance(positive, str) else "must be more than 0 seconds")
            return float(value) if "float" in kinds else value
        for kind in kinds:
            if kind in _TYPES and isinstance(value, _TYPES[kind]):
                return value
        names = " or ".join(_WANTED[k] for k in kinds if k in _WANTED)
        self.fail(key, f"must be {names}")

    # --- sections ---------------------------------------------------------------
    def worker(self, name, raw) -> Worker:
        key = f"workers.{name}"
        self.mapping(key, raw)
        raw = self.jfremote_worker(key, dict(raw))
        w = self.typed(Worker, key, raw, name=name)
        if w.sanitize_command is not None:
            w.sanitize = bool(w.sanitize_command)
        if w.execution_cmd is not None and "{}" not in w.execution_cmd:
            self.problem(f"{key}.execution_cmd", "must hold `{}`, where the run folder goes")
        if w.interactive_login and w.type != "remote":
            self.problem(f"{key}.interactive_login", "is for remote workers only")
        elif w.interactive_login and w.ssh_client != "openssh" and w.gateway:
            self.problem(f"{key}.interactive_login", "with a gateway needs `ssh_client: openssh` (its ProxyJump)")
        if w.type not in WORKER_TYPES:
            self.problem(f"{key}.type", f"must be one of {', '.join(WORKER_TYPES)}")
        if w.scheduler_type not in SCHEDULERS:
            self.problem(f"{key}.scheduler_type", f"must be one of {', '.join(SCHEDULERS)}")
        if not w.work_dir:
            self.problem(f"{key}.work_dir", "is required")
        elif w.type == "local":
            w.work_dir = str(self.guard(self.abspath, f"{key}.work_dir", w.work_dir, default=w.work_dir))
        elif not w.work_dir.startswith(("/", "~", "$")):
            self.problem(f"{key}.work_dir", "must be an absolute path")
        if w.type == "remote" and not w.host:
            self.problem(f"{key}.host", "is required for a remote worker")
        if w.ssh_client not in SSH_CLIENTS:
            self.problem(f"{key}.ssh_client", f"must be one of {', '.join(SSH_CLIENTS)}")
        elif w.ssh_client == "openssh":
            for name in ("password", "passphrase"):
                if getattr(w, name):
                    self.problem(f"{key}.{name}", "is not used by ssh_client openssh, which never prompts: use an SSH "
                                 "agent, a key without passphrase, or a master connection (ControlMaster)")  # fmt: skip
            if w.connect_kwargs:
                self.problem(f"{key}.connect_kwargs", "holds paramiko's options: with ssh_client openssh, put them "
                             "in the ssh config (ssh_config)")  # fmt: skip
        elif w.ssh_config:
            self.problem(f"{key}.ssh_config", "is read by ssh_client openssh only")
        if w.max_jobs is not None and w.max_jobs < 1:
            self.problem(f"{key}.max_jobs", "must be at least 1")
        if w.port is not None and not 0 < w.port < 65536:
            self.problem(f"{key}.port", "must be a port number, from 1 to 65535")
        if w.batch is not None:
            w.batch = self.guard(self.batch, f"{key}.batch", w.batch, w)
        return w

    def batch(self, key: str, raw, worker) -> BatchConfig | None:
        self.mapping(key, raw)
        b = self.typed(BatchConfig, key, raw)
        for name in ("jobs_handle_dir", "work_dir"):
            value = getattr(b, name)
            if not value:
                self.problem(f"{key}.{name}", "is required")
            elif worker.type == "local":
                setattr(b, name, str(self.guard(self.abspath, f"{key}.{name}", value, default=value)))
            elif not value.startswith(("/", "~", "$")):
                self.problem(f"{key}.{name}", "must be an absolute path")
        for name in ("max_jobs_per_batch", "parallel_jobs"):
            value = getattr(b, name)
            if value is not None and value < 1:
                self.problem(f"{key}.{name}", "must be at least 1")
        if b.placement not in ("auto", "srun", "none"):
            self.problem(f"{key}.placement", "must be auto, srun or none")
        elif b.placement == "srun" and worker.scheduler_type != "slurm":
            self.problem(f"{key}.placement", "srun needs scheduler_type slurm")
        if b.max_time is not None and b.max_time <= b.time_margin:
            self.problem(f"{key}.max_time", f"must be more than time_margin ({b.time_margin:g} s)")
        return b

    def exec_config(self, key, name, raw) -> ExecConfig:
        self.mapping(key, raw)
        e = self.typed(ExecConfig, key, raw, name=name)
        if isinstance(e.modules, str):
            e.modules = [e.modules]
        for k, v in e.export.items():
            if not isinstance(v, (str, int, float)) or isinstance(v, bool):
                self.problem(f"{key}.export.{k}", "must be a string or a number")
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
                self.problem("queue.uri", "is required for the mongodb backend")
            if not q.database:
                self.problem("queue.database", "is required for the mongodb backend")
        return q

    def runner(self, raw) -> RunnerOptions:
        self.mapping("runner", raw)
        for key, why in self.RUNNER_REPLACED.items():
            if raw.get(key) is not None:
                self.accept(f"runner.{key}", why)
        r = self.typed(RunnerOptions, "runner", raw)
        if r.delay_check_run_status is not None and "queue_poll_interval" not in raw:
            r.queue_poll_interval = r.delay_check_run_status
        if isinstance(r.delta_retry, (int, float)):
            r.delta_retry = [r.delta_retry]
        if not r.delta_retry or not all(
            isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x) and x >= 0
            for x in r.delta_retry
        ):
            self.problem("runner.delta_retry", "must be a list of finite, non-negative numbers")
        if r.max_step_attempts < 1:
            self.problem("runner.max_step_attempts", "must be at least 1")
        if r.stale_heartbeats < 1:
            self.problem("runner.stale_heartbeats", "must be at least 1")
        many = ("upload", "submit", "download", "complete")
        for action, n in r.processes.items():
            key = f"runner.processes.{action}"
            if action not in (*many, "checkout", "monitor"):
                self.problem(key, "unknown action")
            elif not isinstance(n, int) or isinstance(n, bool) or n < 1:
                self.problem(key, "must be a whole number of at least 1")
            elif action not in many and n != 1:
                self.problem(key, "this action runs in exactly one process")
        return r

    def jobstore(self, raw) -> None:
        self.mapping("jobstore", raw)
        self.keys(raw, {"docs_store", "additional_stores", "save", "load"}, "jobstore")
        docs = raw.get("docs_store")
        if not isinstance(docs, dict) or "type" not in docs:
            self.problem("jobstore.docs_store", "must be a store mapping with a `type`")
        extra = self.mapping("jobstore.additional_stores", raw.get("additional_stores") or {})
        for n, s in extra.items():
            if not isinstance(s, dict) or "type" not in s:
                self.problem(f"jobstore.additional_stores.{n}", "must be a store mapping with a `type`")

    def notify(self, raw) -> Notify:
        self.mapping("notify", raw)
        n = self.typed(Notify, "notify", raw)
        if not n.channels and isinstance(raw.get("channels", {}), dict):
            self.problem("notify.channels", "must name at least one channel")
        n.channels = {name: self.guard(self.notify_channel, f"notify.channels.{name}", name, ch)
                      for name, ch in n.channels.items()}  # fmt: skip
        names = set(n.channels)
        n.rules = [self.guard(self.notify_rule, f"notify.rules[{i}]", r, names) for i, r in enumerate(n.rules)]
        if "rules" not in raw:  # no rules: every event goes to every channel
            n.rules = [NotifyRule()]
        for name in ("digest_after", "digest_lines"):
            if getattr(n, name) < 1:
                self.problem(f"notify.{name}", "must be at least 1")
        if not all(isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x) and x >= 0
                   for x in n.retry_delays):  # fmt: skip
            self.problem("notify.retry_delays", "must be a list of finite, non-negative numbers")
        return n

    def notify_channel(self, key: str, name: str, raw) -> NotifyChannel:
        self.mapping(key, raw)
        c = self.typed(NotifyChannel, key, raw, name=name)
        if c.type not in NOTIFY_CHANNEL_TYPES:
            self.fail(f"{key}.type", f"must be one of {', '.join(NOTIFY_CHANNEL_TYPES)}")
        for k in sorted(set(raw) - NOTIFY_CHANNEL_KEYS[c.type] - {"type", "timeout"}):
            self.problem(f"{key}.{k}", f"is not used by a channel of type {c.type}")
        if c.type == "email":
            if isinstance(c.to, str):
                c.to = [c.to]
            if not c.host:
                self.problem(f"{key}.host", "is required for an email channel")
            if not c.to or not all(isinstance(a, str) and "@" in a for a in c.to):
                self.problem(f"{key}.to", "must be an e-mail address or a list of them")
            if c.security not in SMTP_SECURITY:
                self.problem(f"{key}.security", f"must be one of {', '.join(SMTP_SECURITY)}")
            if c.port is not None and not 0 < c.port < 65536:
                self.problem(f"{key}.port", "must be a port number, from 1 to 65535")
            if c.password and not c.username:
                self.problem(f"{key}.password", "needs a username to log in with")
            loopback = (c.host or "").strip("[]") in ("localhost", "127.0.0.1", "::1")
            if c.password and c.security == "none" and c.host and not loopback:
                self.problem(f"{key}.password", "would cross the network in clear with security none: use "
                             "starttls or ssl (or a server on this host: localhost, 127.0.0.1, ::1)")  # fmt: skip
        elif c.type == "webhook":
            if not c.url:
                self.problem(f"{key}.url", "is required for a webhook channel")
            elif not c.url.startswith(("http://", "https://")):
                self.problem(f"{key}.url", "must be an http:// or https:// URL")
            for k, v in c.headers.items():
                if not isinstance(v, str):
                    self.problem(f"{key}.headers.{k}", "must be a string")
        elif not (isinstance(c.command, str) and c.command.strip()) and not (
                isinstance(c.command, list) and c.command and all(isinstance(a, str) for a in c.command)):
            self.problem(f"{key}.command", "must be a shell line or a non-empty list of strings")
        return c

    def notify_rule(self, key: str, raw, channels: set) -> NotifyRule:
        self.mapping(key, raw)
        r = self.typed(NotifyRule, key, {k: [v] if isinstance(v, str) and k != "metadata" else v
                                         for k, v in raw.items()})  # fmt: skip
        for i, event in enumerate(r.events):
            if event not in NOTIFY_EVENTS:
                self.problem(f"{key}.events[{i}]", f"must be one of {', '.join(NOTIFY_EVENTS)}")
        for i, channel in enumerate(r.channels):
            if channel not in channels:
                self.problem(f"{key}.channels[{i}]", "names no channel of notify.channels")
        if not all(isinstance(f, str) for f in r.flows):
            self.problem(f"{key}.flows", "must be a list of flow name patterns")
        if (r.flows or r.metadata) and r.events and all(e in NOTIFY_NO_FLOW for e in r.events):
            self.problem(f"{key}.events", f"{' and '.join(r.events)}: no flow is concerned, so flows and "
                         "metadata never match: use a rule without them")  # fmt: skip
        return r
