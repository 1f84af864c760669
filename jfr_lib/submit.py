"""From a jobflow ``Flow`` to documents in the queue database.

:func:`submit_flow` and :func:`set_run_config` take the arguments of
jobflow-remote's functions of the same names, so a user's scripts change one import.
Everything is checked before anything is written: a refused flow leaves the
queue database as it was.
"""

from __future__ import annotations

import json
import warnings

from jfr_lib.errors import SubmitError
from jfr_lib.states import JobState

RUN_CONFIG_KEYS = ("worker", "exec_config", "resources", "priority")


def set_run_config(flow_or_job, name_filter=None, function_filter=None, exec_config=None,
                   resources=None, worker=None, priority=None, dynamic: bool = True):  # fmt: skip
    """Choose where and how some jobs of a flow run.

    The values go in each matching job's ``config.manager_config`` and win over
    those given to :func:`submit_flow`. With ``dynamic``, jobs the matching jobs
    create at run time get them too.

    Parameters
    ----------
    flow_or_job
        A jobflow ``Flow`` or ``Job``; changed in place and returned.
    name_filter
        Only jobs whose name contains this text.
    function_filter
        Only jobs made from this function.
    exec_config
        Name of an ``exec_config`` of the project, or a mapping of its keys.
    resources
        Scheduler resources: a mapping or a qtoolkit ``QResources``.
    worker
        Name of a worker of the project.
    priority
        Higher runs first.
    dynamic
        Pass the settings on to jobs created dynamically.

    Returns
    -------
    Flow or Job
        ``flow_or_job``.
    """
    values = {"worker": worker, "exec_config": plain_exec_config(exec_config),
              "resources": plain_resources(resources), "priority": priority}  # fmt: skip
    sets = {f"manager_config->{k}": v for k, v in values.items() if v is not None}
    if sets:
        flow_or_job.update_config({"_set": sets}, name_filter=name_filter,
                                  function_filter=function_filter, dynamic=dynamic,
                                  dict_mod=True)  # fmt: skip
    return flow_or_job


EXEC_CONFIG_KEYS = ("modules", "export", "pre_run", "post_run")


def _as_mapping(value):
    """An object with fields (pydantic model, dataclass, MSONable) as a plain dict."""
    import dataclasses

    if hasattr(value, "model_dump"):  # pydantic, as jobflow-remote's ExecutionConfig
        return value.model_dump()
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    if hasattr(value, "as_dict"):
        return value.as_dict()
    return value


def plain_exec_config(value):
    """An exec_config as stored in the queue database: a name or a mapping of its keys.

    Accepts a name, a mapping, :class:`jfr_lib.ExecutionConfig` or jobflow-remote's
    ``ExecutionConfig`` (also in its serialized form, ``@module``/``@class`` keys
    included); empty fields are dropped.
    """
    if value is None or isinstance(value, str):
        return value
    mapping = _as_mapping(value)
    if not isinstance(mapping, dict):
        return mapping  # refused by check_run_config
    return {k: v for k, v in mapping.items() if not k.startswith("@") and k != "name" and v not in (None, [], {})}


def plain_resources(value):
    """Resources as stored: a mapping of scheduler keywords, or a serialized ``QResources``."""
    if value is None or isinstance(value, dict):
        return value
    if type(value).__name__ == "QResources" and hasattr(value, "as_dict"):
        return value.as_dict()  # keeps @class: the queue adapter rebuilds the object
    return _as_mapping(value)


def submit_flow(flow_or_job, worker=None, project=None, exec_config=None, resources=None,
                priority=None, allow_external_references: bool = False) -> list:  # fmt: skip
    """Store a flow (or a single job) in the queue database.

    Parameters
    ----------
    flow_or_job
        A jobflow ``Flow``, ``Job`` or list of jobs.
    worker
        Worker for jobs that name none (default: the first worker of the project).
    project
        Project name or :class:`jfr_lib.config.Project` (default: the selected one).
    exec_config
        Default execution configuration: a name from the project or a mapping.
    resources
        Default scheduler resources.
    priority
        Default priority (higher runs first; 0 when omitted).
    allow_external_references
        Accept references to jobs outside the flow (they must already have outputs).

    Returns
    -------
    list of int
        The db_ids of the stored jobs, in the flow's order.

    Raises
    ------
    SubmitError
        Unknown worker or exec_config, a job that cannot be serialized or imported
        on the worker, a reference to an additional store the JobStore lacks, or a
        flow that was already submitted. Nothing is stored then.
    """
    from jobflow.core.flow import get_flow

    from jfr_lib.config import Project, load_project
    from jfr_lib.jobstore import additional_store_names
    from jfr_lib.queue_db import open_queue_db

    proj = project if isinstance(project, Project) else load_project(project)
    try:
        flow = get_flow(flow_or_job, allow_external_references=allow_external_references)
    except ValueError as exc:
        raise SubmitError(" ".join(str(exc).split())) from None
    except (AttributeError, TypeError) as exc:  # jobflow serializes while it builds the flow
        raise SubmitError(f"the flow cannot be serialized: {_one_line(exc)}") from None
    defaults = {"worker": worker or next(iter(proj.workers)), "exec_config": plain_exec_config(exec_config),
                "resources": plain_resources(resources), "priority": priority}  # fmt: skip
    stores = additional_store_names(proj)
    jobs = []
    try:
        with warnings.catch_warnings():  # jfr runs unconnected jobs side by side: no order to warn of
            warnings.filterwarnings("ignore", message="Some jobs are not connected")
            order = list(flow.iterflow())
    except ValueError as exc:  # a cycle
        raise SubmitError(f"flow {flow.name} ({flow.uuid}): {_one_line(exc)}") from None
    for job, parents in order:
        label = f"job {job.name} ({job.uuid})"
        for name in getattr(job, "_kwargs", {}):
            if name not in stores:
                known = ", ".join(sorted(stores)) or "none"
                raise SubmitError(
                    f"{label}: saves to additional store {name!r}, which the JobStore "
                    f"lacks (it has: {known})"
                )
        job_dict = serialize_job(job, label)
        jobs.append(new_job_document(job_dict, job_parents(job, parents), flow.uuid, defaults))
    for doc in jobs:
        check_run_config(proj, doc, f"job {doc['name']} ({doc['uuid']})")

    with open_queue_db(proj) as db:
        internal = {d["uuid"] for d in jobs}
        external = {p for d in jobs for p in d["parents"]} - internal
        done = {u for u, s in db.latest_states(external).items() if s == JobState.COMPLETED}
        stored = set(db.latest_states(external))
        for doc in jobs:
            pending = [p for p in doc["parents"] if p in internal or (p in stored and p not in done)]
            doc["state"] = str(JobState.WAITING if pending else JobState.READY)
        flow_doc = {"uuid": flow.uuid, "name": flow.name,
                    "state": "READY" if any(d["state"] == "READY" for d in jobs) else "WAITING",
                    "metadata": dict(getattr(flow, "metadata", None) or {}),
                    "n_jobs": len(jobs)}  # fmt: skip
        try:
            ids = db.insert_flow(flow_doc, jobs)
        except KeyError as exc:
            raise SubmitError(
                f"flow {flow.name} ({flow.uuid}) is already submitted (uuid {exc.args[0]} "
                "is in the queue database)"
            ) from None
    from jfr_lib.wakeup import notify

    notify(proj.base_dir, "checkout")
    return ids


def job_parents(job, graph_parents) -> list:
    """What a job waits for: its parents in the flow's graph and the jobs it references.

    The graph (``Flow.iterflow``) holds the references between jobs of the flow and
    the order a ``JobOrder.LINEAR`` flow imposes, nested flows included; references
    to jobs outside the flow are added from the job's inputs.
    """
    return list(dict.fromkeys([*graph_parents, *job.input_uuids]))


def serialize_job(job, label: str) -> dict:
    """The job as pure JSON data; refuses jobs the worker could not rebuild."""
    from monty.json import MontyDecoder, MontyEncoder

    try:
        job_dict = json.loads(json.dumps(job.as_dict(), cls=MontyEncoder))
    except Exception as exc:
        raise SubmitError(f"{label}: cannot be serialized: {_one_line(exc)}") from None
    func = job_dict.get("function") or {}
    module = func.get("@module")
    if module == "__main__":
        raise SubmitError(
            f"{label}: its function is defined in the __main__ script, which the worker "
            "cannot import: move it to a module"
        )
    if "<locals>" in str(func.get("@callable", "")) or "<lambda>" in str(func.get("@callable", "")):
        raise SubmitError(f"{label}: its function is local or a lambda; the worker cannot import it")
    try:
        MontyDecoder().process_decoded(func)
    except Exception as exc:
        raise SubmitError(f"{label}: its function cannot be imported: {_one_line(exc)}") from None
    return job_dict


def _one_line(exc) -> str:
    return " ".join(f"{type(exc).__name__}: {exc}".split())


def new_job_document(job_dict: dict, parents, flow_uuid: str, defaults: dict,
                     state=JobState.WAITING, created_by=None) -> dict:  # fmt: skip
    """A queue-database document for a serialized job.

    Values in the job's ``config.manager_config`` win over ``defaults`` (the
    arguments of :func:`submit_flow`, or the settings of the job that created
    this one at run time). ``created_by`` names the job (uuid, index) whose
    response created this one; a rerun of that job removes it.
    """
    config = job_dict.get("config") or {}
    manager = config.get("manager_config") or {}
    run = {k: manager.get(k) if manager.get(k) is not None else defaults.get(k)
           for k in RUN_CONFIG_KEYS}  # fmt: skip
    on_missing = config.get("on_missing_references", "error")
    doc = {
        "uuid": job_dict["uuid"],
        "index": int(job_dict.get("index", 1)),
        "name": job_dict.get("name", ""),
        "state": str(state),
        "worker": run["worker"],
        "exec_config": plain_exec_config(run["exec_config"]),
        "resources": plain_resources(run["resources"]),
        "priority": int(run["priority"] or 0),
        "flow_uuid": flow_uuid,
        "parents": list(dict.fromkeys(parents)),
        "job": job_dict,
        "metadata": job_dict.get("metadata") or {},
        "lock_id": None,
        "retry_time": None,
        "allow_failed_parents": str(on_missing).lower() not in ("error", "onmissing.error"),
    }
    if created_by is not None:
        doc["created_by"] = created_by
    return doc


def check_run_config(project, doc: dict, label: str) -> None:
    """Refuse a job whose worker or exec_config the project does not define."""
    if doc["worker"] not in project.workers:
        known = ", ".join(project.workers)
        raise SubmitError(f"{label}: unknown worker {doc['worker']!r} (known: {known})")
    ec = doc["exec_config"]
    if isinstance(ec, str) and ec not in project.exec_config:
        known = ", ".join(project.exec_config) or "none"
        raise SubmitError(f"{label}: unknown exec_config {ec!r} (known: {known})")
    if ec is not None and not isinstance(ec, (str, dict)):
        raise SubmitError(f"{label}: exec_config must be a name, a mapping or an ExecutionConfig")
    if isinstance(ec, dict) and set(ec) - set(EXEC_CONFIG_KEYS):
        unknown = ", ".join(sorted(set(ec) - set(EXEC_CONFIG_KEYS)))
        raise SubmitError(f"{label}: exec_config has unknown keys: {unknown} "
                          f"(known: {', '.join(EXEC_CONFIG_KEYS)})")  # fmt: skip
    if doc["resources"] is not None and not isinstance(doc["resources"], dict):
        raise SubmitError(f"{label}: resources must be a mapping or a QResources")
