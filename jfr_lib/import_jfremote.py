"""A jobflow-remote 1.0.1 queue brought into jfr's: ``jfr admin import-jobflow-remote``.

jobflow-remote keeps its queue in three collections of one MongoDB database: the
jobs (``jobs``: one document per job and index, holding the serialized jobflow
job, its ``db_id`` as a string, its parents' uuids, its state and, under
``remote``, the queue id and the error of a failed step), the flows (``flows``:
their jobs' uuids, ``ids`` as (db_id, uuid, index), parents per uuid and index)
and an auxiliary collection (``jf_auxiliary``: the next db_id, the runner that
runs). :class:`Importer` maps every job and flow to jfr's documents, refusing in
one line naming the document what it cannot map, then stores them in jfr's queue
database, keeping the db_ids when jfr's queue has none of them.

States: most keep their name. A job checked out or uploaded but not submitted
(CHECKED_OUT, UPLOADED) comes READY: jfr's checkout takes it again, into a run
folder of jfr's (a job to run keeps its old folder and queue id only as
``jfremote_run_dir`` and ``jfremote_queue_id``: a job jobflow-remote reran still
names its previous run's, which jfr's idempotent steps would take as done). A job
handed to jobflow-remote's own worker (SUBMITTED, RUNNING, RUN_FINISHED or its
old name TERMINATED, DOWNLOADED, BATCH_SUBMITTED, BATCH_RUNNING; or locked while
UPLOADED, its submission maybe under way) is decided by its run folder: when the
run has ended, its ``jfremote_out.json`` and stores become jfr's files in the
data folder (:mod:`jfr_lib.jfremote`) and the job comes DOWNLOADED, so jfr's
runner completes it; a run that has not ended cannot be taken over (its worker
writes jobflow-remote's files, not jfr's): the import refuses, or with
``rerun_running`` the job comes READY to run again under jfr. REMOTE_ERROR stays,
its ``previous_state`` mapped by the same rules so that ``jfr job retry`` resumes
where it can. Locks are dropped: jobflow-remote's runner must be stopped.
"""

from __future__ import annotations

import json
import re
from collections import Counter

from jfr_lib.errors import ConfigError, HostError, QueueDBError, StateError
from jfr_lib.jfremote import DEFAULT_COLLECTIONS, OUT_NAME, ended_output, last_line
from jfr_lib.submit_check import priority_value

#: States mapped by name alone (the job is not in jobflow-remote's worker).
SAME = {s: s for s in ("WAITING", "READY", "COMPLETED", "FAILED", "PAUSED", "STOPPED", "USER_STOPPED")}
SAME.update(CHECKED_OUT="READY", UPLOADED="READY")  # not submitted yet: jfr's checkout takes them again
#: States in which jobflow-remote's worker has the job; those in ENDED say its run is over.
STARTED = {"SUBMITTED", "RUNNING", "RUN_FINISHED", "TERMINATED", "DOWNLOADED", "BATCH_SUBMITTED", "BATCH_RUNNING"}
ENDED = {"RUN_FINISHED", "TERMINATED", "DOWNLOADED"}
STILL_RUNNING = "still running"
#: jfr states of jobs that run again (their worker and exec_config must be in the project).
TO_RUN = {"WAITING", "READY", "PAUSED", "REMOTE_ERROR", "DOWNLOADED"}
#: The step that failed, by the state a REMOTE_ERROR job came from.
FAILED_STEP = {"READY": "checkout", "CHECKED_OUT": "upload", "UPLOADED": "submit", "SUBMITTED": "monitor",
               "RUNNING": "monitor", "RUN_FINISHED": "download", "TERMINATED": "download",
               "DOWNLOADED": "complete"}  # fmt: skip


def detect_jobflow_remote(db, jobs: str = "jobs", flows: str = "flows") -> str | None:
    """A hint when a MongoDB database holds jobflow-remote's queue and no jfr queue with jobs.

    Parameters
    ----------
    db
        A pymongo (or mongomock) ``Database``.
    jobs, flows
        jobflow-remote's collection names.

    Returns
    -------
    str or None
        One line naming the number of jobflow-remote jobs and the command that
        imports them; None when there are none, or a jfr queue there holds flows.
    """
    names = set(db.list_collection_names())
    if jobs not in names or flows not in names:
        return None
    for meta in (n for n in names if n.endswith("_meta")):  # jfr's collections: PREFIX_jobs, _flows, _meta
        prefix = meta[: -len("_meta")]
        if db[meta].find_one({"_id": "schema_version"}) and f"{prefix}_flows" in names \
                and db[f"{prefix}_flows"].find_one({}, {"_id": 1}):  # fmt: skip
            return None
    sample = db[jobs].find_one({}, {"db_id": 1, "job": 1, "uuid": 1})
    if not sample or "db_id" not in sample or "job" not in sample:
        return None
    n = db[jobs].count_documents({})
    names = "".join(f" --{k}-collection {v}" for k, v in (("jobs", jobs), ("flows", flows)) if v != k)
    return (f"this database holds jobflow-remote's queue ({n} jobs in {jobs!r}); import it with "
            f"`jfr admin import-jobflow-remote --database {db.name}{names}`")  # fmt: skip


def _iso(value):
    """A stored time as jfr keeps it: ISO 8601 text in UTC (MongoDB gives naive UTC datetimes)."""
    from datetime import datetime, timezone

    if isinstance(value, datetime):
        value = value if value.tzinfo else value.replace(tzinfo=timezone.utc)
        return value.astimezone(timezone.utc).isoformat(timespec="milliseconds")
    return value


def _json(value, label: str):
    """JSON data from what MongoDB returned (datetimes and ObjectIds become monty's forms)."""
    from monty.json import MontyEncoder

    try:
        return json.loads(json.dumps(value, cls=MontyEncoder))
    except (TypeError, ValueError) as exc:
        raise QueueDBError(f"{label}: cannot be stored as JSON: {exc}") from None


def _plain_exec_config(value):
    if isinstance(value, dict):
        value = {k: v for k, v in value.items() if not k.startswith("@") and k != "name" and v not in (None, [], {})}
    return value or None


class Importer:
    """Reads a jobflow-remote queue and brings it into a jfr project's queue database.

    Parameters
    ----------
    project
        The jfr project (its workers, exec_configs, JobStore and data folder).
    queue_db
        Its open :class:`jfr_lib.queue_db.QueueDB`.
    source
        The pymongo ``Database`` holding jobflow-remote's collections.
    collections
        ``jobs``, ``flows``, ``aux``: their names (default: jobflow-remote's).
    rerun_running
        Import jobs whose jobflow-remote run has not ended as READY, to run again.
    db_id_prefix
        jobflow-remote's ``queue.db_id_prefix``, stripped from its db_ids.
    """

    def __init__(self, project, queue_db, source, collections=None, rerun_running: bool = False,
                 db_id_prefix: str | None = None):  # fmt: skip
        names = {**DEFAULT_COLLECTIONS, **{k: v for k, v in (collections or {}).items() if v}}
        self.project, self.db, self.source = project, queue_db, source
        self.jobs, self.flows, self.aux = (source[names[k]] for k in ("jobs", "flows", "aux"))
        self.names, self.rerun_running, self.prefix = names, rerun_running, db_id_prefix or ""
        self.plan = []  # (flow document, job documents, jobflow-remote db_ids as int or None)
        self.rows = Counter()  # (jobflow-remote state, jfr state) -> jobs
        self.converts, self.running, self.blockers, self.notes = [], [], [], []
        self.keep_ids = False
        self._hosts = {}

    # --- reading and mapping ----------------------------------------------------
    def read(self) -> Importer:
        """Map every flow and job; what would stop :meth:`write` is kept in ``blockers``.

        Raises
        ------
        QueueDBError
            A document that cannot be mapped (one line naming it), or no queue there.
        ConfigError
            A job to run whose worker or exec_config the project lacks.
        HostError
            The run folder of a job in jobflow-remote's worker cannot be read.
        """
        if not self.jobs.find_one({}, {"_id": 1}) and not self.flows.find_one({}, {"_id": 1}):
            raise QueueDBError(f"database {self.source.name!r} holds no jobflow-remote queue (no documents in "
                               f"{self.names['jobs']!r} nor {self.names['flows']!r})")  # fmt: skip
        seen = set()
        for flow in self.flows.find({}, sort=[("created_on", 1)]):
            docs = list(self.jobs.find({"uuid": {"$in": list(flow.get("jobs") or [])}}))
            docs.sort(key=lambda d: (self._number(d) or 0, d.get("index", 1)))
            mapped = [self._map_job(d, flow.get("uuid")) for d in docs]
            seen.update((d.get("uuid"), d.get("index")) for d in docs)
            self.plan.append((self._map_flow(flow, mapped), mapped, [self._number(d) for d in docs]))
        if self.jobs.count_documents({}) > len(seen):
            for d in self.jobs.find({}, {"db_id": 1, "uuid": 1, "index": 1}):
                if (d.get("uuid"), d.get("index")) not in seen:
                    raise QueueDBError(f"jobflow-remote {self._label(d)}: belongs to no flow of "
                                       f"{self.names['flows']!r}")  # fmt: skip
        self._check_target()
        self._check_runner()
        if self.running and not self.rerun_running:
            more = f" and {len(self.running) - 3} more" if len(self.running) > 3 else ""
            self.blockers.append(StateError(
                f"{len(self.running)} jobs still run under jobflow-remote ({', '.join(self.running[:3])}{more}): "
                "import once they have ended, or pass --rerun-running to run them again under jfr"))  # fmt: skip
        self._check_outputs()
        return self

    def _check_runner(self) -> None:
        doc = self.aux.find_one({"running_runner": {"$exists": True}}) or {}
        runner = doc.get("running_runner")
        if runner:
            where = runner.get("hostname", "?") if isinstance(runner, dict) else str(runner)
            self.blockers.append(StateError(f"jobflow-remote's runner is running on {where}: stop it first with "
                                            "`jf runner stop` (`jf runner reset` if it is gone)"))  # fmt: skip

    def _number(self, doc):
        """jobflow-remote's db_id as jfr's integer (None when it is not a number)."""
        text = str(doc.get("db_id", ""))
        text = text[len(self.prefix) :] if self.prefix and text.startswith(self.prefix) else text
        match = re.fullmatch(r"\D*(\d{1,18})", text)
        return int(match.group(1)) if match and int(match.group(1)) > 0 else None

    @staticmethod
    def _label(doc) -> str:
        return f"job db_id {doc.get('db_id')} ({doc.get('uuid')})"

    def _map_job(self, doc: dict, flow_uuid: str) -> dict:
        label = f"jobflow-remote {self._label(doc)}"
        job = doc.get("job")
        if not isinstance(job, dict) or not isinstance(doc.get("uuid"), str) or not isinstance(doc.get("index"), int):
            raise QueueDBError(f"{label}: not a jobflow-remote job document (no serialized job, uuid or index)")
        state, remote = doc.get("state"), doc.get("remote") or {}
        if state not in SAME and state not in STARTED and state != "REMOTE_ERROR":
            raise QueueDBError(f"{label}: unknown state {state!r}")
        if state == "REMOTE_ERROR":  # jfr's retry goes back to previous_state: it must be one jfr resumes
            previous = doc.get("previous_state") or "READY"
            back, extra, running = self._resolve(previous, doc, label)
            target, error = "REMOTE_ERROR", remote.get("error") or doc.get("error")
            extra["failed_step"] = FAILED_STEP.get("RUNNING" if previous.startswith("BATCH") else previous)
        else:
            target, extra, running = self._resolve(state, doc, label)
            back, error = SAME.get(doc.get("previous_state"), doc.get("previous_state")), doc.get("error")
        config = job.get("config") if isinstance(job.get("config"), dict) else {}
        out = {
            "uuid": doc["uuid"], "index": doc["index"], "name": str(job.get("name", "")), "state": target,
            "previous_state": back, "worker": doc.get("worker"),
            "exec_config": _plain_exec_config(_json(doc.get("exec_config"), label)),
            "resources": _json(doc.get("resources"), label),
            "priority": priority_value(doc.get("priority"), label), "flow_uuid": flow_uuid,
            "parents": list(dict.fromkeys(doc.get("parents") or [])), "job": _json(job, label),
            "metadata": _json(job.get("metadata") or {}, label), "lock_id": None, "retry_time": None,
            "allow_failed_parents": str(config.get("on_missing_references", "error")).lower() in ("none", "pass"),
            "created_on": _iso(doc.get("created_on")), "updated_on": _iso(doc.get("updated_on")),
            "run_dir": doc.get("run_dir"), "queue_id": remote.get("process_id"),
            "start_time": _iso(doc.get("start_time")), "end_time": _iso(doc.get("end_time")),
            "stored_data": _json(doc.get("stored_data"), label), "queue_out": remote.get("queue_out"),
            "queue_err": remote.get("queue_err"), "jfremote_db_id": str(doc.get("db_id")),
        }  # fmt: skip
        if (back if target == "REMOTE_ERROR" else target) in ("WAITING", "READY", "PAUSED"):
            # to run (again) under jfr: in a run folder of jfr's, the old one and its queue id kept aside
            out.update(jfremote_run_dir=out.pop("run_dir"), jfremote_queue_id=out.pop("queue_id"))
        if error and target in ("FAILED", "REMOTE_ERROR"):
            out.update(error=last_line(error), traceback=str(error))
        if doc["index"] > 1:  # a replacement: a rerun of the job it replaced removes it
            out["created_by"] = {"uuid": doc["uuid"], "index": doc["index"] - 1, "kind": "replace"}
        out.update(extra)
        if target in TO_RUN:
            self._check_run_config(out, label)
        if running:
            self.running.append(f"db_id {doc.get('db_id')}")
        self.rows[(state, STILL_RUNNING if running and not self.rerun_running else target)] += 1
        return {k: v for k, v in out.items() if v is not None or k in ("lock_id", "retry_time")}

    def _resolve(self, state: str, doc: dict, label: str) -> tuple:
        """jfr's state for a jobflow-remote state, the fields that go with it, and whether its run goes on."""
        started = state in STARTED or (state == "UPLOADED" and doc.get("lock_id") and doc.get("run_dir"))
        if not started:
            return SAME.get(state, "READY"), {}, False
        worker, run_dir = self._worker(doc, label), doc.get("run_dir")
        try:
            host = self._host(worker)
            output = ended_output(host, run_dir) if run_dir else None
            began = output is not None or (bool(run_dir) and host.exists(f"{run_dir}/{OUT_NAME}"))
        except HostError as exc:
            raise HostError(f"{label}: cannot read its run folder on worker {worker.name!r}: {exc}") from None
        if state == "UPLOADED" and not began:  # locked while submitting, but its run never began
            return "READY", {}, False
        if output is not None or state in ENDED:
            folder = self.project.base_dir / "downloads" / doc["uuid"][:2] / f"{doc['uuid']}_{doc['index']}"
            self.converts.append((worker, run_dir, output, folder))
            return "DOWNLOADED", {"local_dir": str(folder)}, False
        return "READY", {}, True

    def _worker(self, doc: dict, label: str):
        worker = self.project.workers.get(doc.get("worker"))
        if worker is None:
            known = ", ".join(self.project.workers)
            raise ConfigError(f"{label}: unknown worker {doc.get('worker')!r} (known: {known})")
        return worker

    def _host(self, worker):
        if worker.name not in self._hosts:
            from jfr_lib.hosts import get_host

            self._hosts[worker.name] = get_host(worker)
        return self._hosts[worker.name]

    def _check_run_config(self, doc: dict, label: str) -> None:
        from jfr_lib.errors import SubmitError
        from jfr_lib.submit_check import check_run_config

        try:
            check_run_config(self.project, doc, label)
        except SubmitError as exc:
            raise ConfigError(str(exc)) from None

    def _map_flow(self, flow: dict, jobs: list) -> dict:
        from jfr_lib.states import flow_state

        label = f"jobflow-remote flow {flow.get('uuid')} ({flow.get('name')})"
        if not isinstance(flow.get("uuid"), str):
            raise QueueDBError(f"{label}: not a jobflow-remote flow document (no uuid)")
        if flow.get("jobstore"):
            raise ConfigError(f"{label}: its outputs are in jobflow-remote's optional JobStore "
                              f"{flow['jobstore']!r}, which jfr does not have")  # fmt: skip
        doc = {"uuid": flow["uuid"], "name": str(flow.get("name", "")),
               "metadata": _json(flow.get("metadata") or {}, label), "n_jobs": len(jobs),
               "state": str(flow_state(j["state"] for j in jobs)),
               "created_on": _iso(flow.get("created_on")), "updated_on": _iso(flow.get("updated_on")),
               "imported_from": "jobflow-remote"}  # fmt: skip
        return {k: v for k, v in doc.items() if v is not None}

    def _check_outputs(self) -> None:
        """The outputs that jobs still to run will read must be in the project's JobStore."""
        latest, needed = {}, {}
        for _, jobs, _ in self.plan:
            for job in jobs:
                if job["index"] >= latest.get(job["uuid"], (0, None))[0]:
                    latest[job["uuid"]] = (job["index"], job)
        for _, jobs, _ in self.plan:
            for job in (j for j in jobs if j["state"] in TO_RUN - {"DOWNLOADED"}):
                for parent in job["parents"]:
                    if latest.get(parent, (0, {}))[1].get("state") == "COMPLETED":
                        needed.setdefault(parent, job)
        if not needed:
            return
        from jfr_lib.jobstore import get_jobstore, store_lock

        store = get_jobstore(self.project)
        with store_lock(self.project, exclusive=False):
            for parent, child in needed.items():
                if store.docs_store.query_one({"uuid": parent}, ["uuid"]) is None:
                    job = latest[parent][1]
                    self.blockers.append(ConfigError(
                        f"jobflow-remote job db_id {job['jfremote_db_id']} ({parent}) is COMPLETED but its output is "
                        f"not in this project's JobStore (job db_id {child['jfremote_db_id']} needs it): give the "
                        "project jobflow-remote's JobStore (its jobstore section)"))  # fmt: skip
                    return

    def _check_target(self) -> None:
        """Nothing may be in jfr's queue already; the db_ids are kept when jfr's queue has none of them."""
        flow = next((f for f, _, _ in self.plan if self.db.get_flow(uuid=f["uuid"]) is not None), None)
        if flow is not None:
            self.blockers.append(StateError(f"flow {flow['uuid']} ({flow['name']}) is already in jfr's queue: "
                                            "nothing imported"))  # fmt: skip
        uuids = [j["uuid"] for _, jobs, _ in self.plan for j in jobs]
        for i in range(0, len(uuids), 500) if flow is None else ():
            found = self.db.latest_states(uuids[i : i + 500])
            if found:
                self.blockers.append(StateError(f"job {next(iter(found))} is already in jfr's queue (in another "
                                                "flow): nothing imported"))  # fmt: skip
                break
        wanted = [n for _, _, numbers in self.plan for n in numbers]
        self.keep_ids = bool(wanted) and None not in wanted and len(set(wanted)) == len(wanted) \
            and (hasattr(self.db, "conn") or hasattr(self.db, "meta"))  # fmt: skip
        for i in range(0, len(wanted), 500) if self.keep_ids else ():
            taken = self.db.find_jobs({"db_id": wanted[i : i + 500]}, limit=1)
            if taken:
                self.keep_ids = False
                self.notes.append(f"jfr's queue already has job {taken[0]['db_id']}: the jobs get new db_ids "
                                  "(jobflow-remote's is kept in jfremote_db_id)")  # fmt: skip

    # --- writing -------------------------------------------------------------------
    def write(self) -> int:
        """Store what :meth:`read` mapped; returns the number of jobs stored.

        Raises
        ------
        StateError, ConfigError
            What :meth:`read` found in the way (nothing is written then).
        """
        if self.blockers:
            raise self.blockers[0]
        from jfr_lib.jfremote import write_jfr_files
        from jfr_lib.jobstore import additional_store_names

        names = sorted(additional_store_names(self.project))
        for worker, run_dir, output, folder in self.converts:
            write_jfr_files(self._host(worker), run_dir, output, folder, names)
        pairs = []
        for flow, jobs, numbers in self.plan:
            try:
                ids = self.db.insert_flow(flow, jobs)
            except KeyError as exc:
                raise StateError(f"{exc.args[0]} is already in jfr's queue; flows before it were imported") from None
            pairs += [(new, wanted) for new, wanted in zip(ids, numbers) if new != wanted]
        if self.keep_ids and pairs:
            _renumber(self.db, pairs)
        for flow, _, _ in self.plan:
            self.db.refresh_flow_state(flow["uuid"])
        return sum(len(jobs) for _, jobs, _ in self.plan)

    def summary(self) -> list:
        """Lines saying what is (or would be) imported: jobs per state, then the notes."""
        n_jobs = sum(self.rows.values())
        ids = "db_ids kept" if self.keep_ids else "new db_ids"
        lines = [f"{len(self.plan)} flows, {n_jobs} jobs ({ids})",
                 f"  {'jobflow-remote state':<22}{'jfr state':<16}jobs"]  # fmt: skip
        lines += [f"  {a:<22}{b:<16}{n}" for (a, b), n in sorted(self.rows.items())]
        return lines + self.notes

    def close(self) -> None:
        for host in self._hosts.values():
            try:
                host.close()
            except Exception:  # a connection that is already gone
                pass


def _renumber(db, pairs) -> None:
    """Give imported jobs their jobflow-remote db_ids (through negative ids, so no two collide)."""
    if hasattr(db, "conn"):  # SQLite: the parent links follow in the same transaction
        c = db.conn
        c.execute("BEGIN IMMEDIATE")
        try:
            c.execute("PRAGMA defer_foreign_keys = ON")
            for table, column in (("jobs", "db_id"), ("job_parents", "child_db_id")):
                c.executemany(f"UPDATE {table} SET {column} = ? WHERE {column} = ?", [(-w, n) for n, w in pairs])
                c.executemany(f"UPDATE {table} SET {column} = ? WHERE {column} = ?", [(w, -w) for _, w in pairs])
            c.execute("COMMIT")
        except BaseException:
            c.execute("ROLLBACK")
            raise
        return
    for new, wanted in pairs:
        db.jobs.update_one({"db_id": new}, {"$set": {"db_id": -wanted}})
    for _, wanted in pairs:
        db.jobs.update_one({"db_id": -wanted}, {"$set": {"db_id": wanted}})
    db.meta.update_one({"_id": "counter_jobs"}, {"$max": {"value": max(w for _, w in pairs)}}, upsert=True)
