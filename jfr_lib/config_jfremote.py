"""jobflow-remote's project file keys, as :class:`jfr_lib.config_check.ProjectChecker` reads them.

Every key of a jobflow-remote 1.0.1 project file is honoured (its queue store
mapped to jfr's MongoDB backend, a serialized scheduler to its name, its
execution and download settings to jfr's), accepted and listed by ``jfr
project show`` when jfr does without it (a delay jfr replaces with wake-ups),
or refused with a line saying what to use instead.
"""

from __future__ import annotations

from jfr_lib.config_model import QueueConfig


class JfremoteKeys:
    """The checks of jobflow-remote's own keys (a mixin of the project checker)."""

    #: qtoolkit scheduler classes that a serialized ``scheduler_type`` may name.
    SCHEDULER_CLASSES = {"ShellIO": "shell", "SlurmIO": "slurm", "PBSIO": "pbs", "SGEIO": "sge"}

    def jfremote_worker(self, key: str, raw: dict) -> dict:
        """jobflow-remote's worker forms: a serialized scheduler, the separated-transfer type."""
        kind = raw.get("scheduler_type")
        if isinstance(kind, dict):
            name = self.SCHEDULER_CLASSES.get(kind.get("@class"))
            extra = sorted(set(kind) - {"@module", "@class", "@version"})
            if name is None:
                self.problem(f"{key}.scheduler_type", f"{kind.get('@class')!r} is not a scheduler jfr runs: use "
                             "shell, slurm, pbs or sge")  # fmt: skip
                raw.pop("scheduler_type")
            elif extra:
                self.problem(f"{key}.scheduler_type", f"settings of a custom {kind['@class']} ({', '.join(extra)}) "
                             f"are not supported: write scheduler_type: {name}")  # fmt: skip
                raw.pop("scheduler_type")
            else:
                raw["scheduler_type"] = name
        if raw.get("type") == "separated_transfer":
            self.problem(f"{key}.type", "separated_transfer is not supported: jfr moves files over the worker's "
                         "own SSH connection; use type: remote (the host needs SFTP)")  # fmt: skip
            raw.pop("transfer", None)
            raw["type"] = "remote"
        return raw

    def log_level(self, value) -> str:
        levels = ("debug", "info", "warn", "warning", "error")
        if value is None:
            return "info"
        if not isinstance(value, str) or value.lower() not in levels:
            self.fail("log_level", f"must be one of {', '.join(levels)}")
        return "warning" if value.lower() == "warn" else value.lower()

    #: Top-level jobflow-remote keys jfr does without, and why.
    JFREMOTE_REPLACED = {
        "tmp_dir": "jfr writes each file under a temporary name beside it, then renames it",
        "daemon_dir": "the runner's state is its lease in the queue database and its log in log_dir",
        "remote_jobstore": "jobs write their outputs to files in their run folder, which the runner fetches",
    }

    def jfremote_top(self, data: dict) -> None:
        for key, why in self.JFREMOTE_REPLACED.items():
            if data.get(key) is not None:
                self.accept(key, why)
        optional = data.get("optional_jobstores")
        if optional:
            self.problem("optional_jobstores", "is not supported: give the JobStore additional stores "
                         "(jobstore.additional_stores) and save outputs there with jobflow's `data=`")  # fmt: skip

    #: Runner keys of jobflow-remote that jfr's wake-ups, heartbeat and file handling replace.
    RUNNER_REPLACED = {
        "delay_checkout": "actions wake each other when a job moves; idle ones look every runner.idle_sleep",
        "delay_advance_status": "actions wake each other when a job moves; idle ones look every runner.idle_sleep",
        "delay_refresh_limited": "max_jobs is counted from the queue database at each checkout",
        "delay_update_batch": "a batch worker's exchange folder is read at each poll of the worker",
        "delay_ping_db": "the runner's lease has its own heartbeat (runner.heartbeat)",
        "delete_tmp_folder": "jfr keeps no temporary folders",
    }

    def jfremote_queue(self, raw) -> QueueConfig:
        """Map jobflow-remote's ``queue.store`` (a maggma Mongo store) to our MongoDB backend."""
        self.keys(raw, self.JFREMOTE_QUEUE_KEYS, "queue")
        store = self.mapping("queue.store", raw["store"])
        timeout = self.check_type("queue.connect_timeout", "float", raw.get("connect_timeout", 5.0), True)
        kind = store.get("type")
        uri = None
        if kind == "MongoURIStore":
            uri = store.get("uri")
            if not uri or not isinstance(uri, str):
                self.problem("queue.store.uri", "is required")
        elif kind == "MongoStore":
            from urllib.parse import quote_plus

            host = store.get("host", "localhost")
            port = store.get("port", 27017)
            auth = ""
            if store.get("username"):
                auth = f"{quote_plus(str(store['username']))}:{quote_plus(str(store.get('password', '')))}@"
            uri = f"mongodb://{auth}{host}:{port}/"
        else:
            self.problem("queue.store.type", "must be MongoStore or MongoURIStore")
        options = {}
        known = {"type", "host", "port", "username", "password", "database", "collection_name", "uri", "key",
                 "auth_source", "mongoclient_kwargs", "ssh_tunnel", "safe_update", "last_updated_field",
                 "validator", "default_sort"}  # fmt: skip
        self.keys(store, known, "queue.store")
        if store.get("auth_source"):
            options["authSource"] = str(store["auth_source"])
        extra = store.get("mongoclient_kwargs") or {}
        if not isinstance(extra, dict):
            self.problem("queue.store.mongoclient_kwargs", "must be a mapping of MongoClient options")
        else:
            options.update(extra)
        if store.get("ssh_tunnel"):
            self.problem("queue.store.ssh_tunnel", "is not supported: open the tunnel yourself (e.g. `ssh -fNL "
                         "27018:dbhost:27017 gateway`) and point host and port at it")  # fmt: skip
        for name in ("key", "safe_update", "last_updated_field", "validator", "default_sort"):
            if store.get(name) is not None:
                self.accept(f"queue.store.{name}", "jfr's queue has its own keys and indexes")
        for name in ("flows_collection", "auxiliary_collection", "batches_collection"):
            if raw.get(name) is not None:
                self.accept(f"queue.{name}", "jfr keeps its own collections (<collection_name>_jobs, _flows, "
                            "_meta); a jobflow-remote queue is brought over with `jfr admin import-jobflow-remote`")
        if raw.get("db_id_prefix") is not None:
            self.accept("queue.db_id_prefix", "jfr's job ids are plain integers")
        database = store.get("database")
        if not database:
            self.fail("queue.store.database", "is required")
        prefix = store.get("collection_name", "jobs")
        return QueueConfig(backend="mongodb", uri=uri, database=database, prefix=prefix, connect_timeout=timeout,
                           client_options=options)  # fmt: skip
