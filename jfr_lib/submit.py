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
from jfr_lib.submit_check import (
    as_flow,
    check_job,
    check_run_config,
    check_storable,
    kind,
    one_line,
    priority_value,
    project_for,
    unimportable,
)

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
        Default priority, a whole number (higher runs first; 0 when omitted).
    allow_external_references
        Accept references to jobs outside the flow (they must already have outputs).

    Returns
    -------
    list of int
        The db_ids of the stored jobs, in the flow's order.

    Raises
    ------
    SubmitError
        Anything that is not a flow or a job (a Maker, a function, None, an empty
        flow, a flow holding something else, a cycle); an argument of the wrong
        type; an unknown worker or exec_config; a priority that is not a whole
        number; a job that cannot be serialized or imported on the worker (nor
        its arguments: a lambda, a local function, something of ``__main__``); a
        reference to an additional store the JobStore lacks; a flow that was
        already submitted. One line naming the job (name and uuid) when there
        is one. Nothing is stored then.
    ConfigError
        The project does not exist or its file is invalid.
    """
    from jfr_lib.jobstore import additional_store_names
    from jfr_lib.queue_db import open_queue_db

    proj = project_for(project)
    if not isinstance(allow_external_references, bool):
        raise SubmitError(f"allow_external_references must be True or False, not {kind(allow_external_references)}")
    if worker is not None and not isinstance(worker, str):
        raise SubmitError(f"worker must be the name of a worker, not {kind(worker)}")
    flow = as_flow(flow_or_job, allow_external_references)
    defaults = {"worker": worker or next(iter(proj.workers)), "exec_config": plain_exec_config(exec_config),
                "resources": plain_resources(resources), "priority": priority}  # fmt: skip
    stores = additional_store_names(proj)
    flow_label = f"flow {flow.name} ({flow.uuid})"
    jobs = []
    try:
        with warnings.catch_warnings():  # jfr runs unconnected jobs side by side: no order to warn of
            warnings.filterwarnings("ignore", message="Some jobs are not connected")
            order = list(flow.iterflow())
    except Exception as exc:  # a cycle, or a graph jobflow cannot build
        raise SubmitError(f"{flow_label}: {one_line(exc)}") from None
    for job, parents in order:
        label = f"job {job.name} ({job.uuid})"
        check_job(job, label)
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
    metadata = getattr(flow, "metadata", None) or {}
    if not isinstance(metadata, dict):
        raise SubmitError(f"{flow_label}: its metadata must be a mapping, not {kind(metadata)}")
    flow_doc = {"uuid": flow.uuid, "name": str(flow.name), "metadata": dict(metadata), "n_jobs": len(jobs)}
    for doc, label in [(flow_doc, flow_label), *((d, f"job {d['name']} ({d['uuid']})") for d in jobs)]:
        check_storable(doc, label, proj.queue.backend)

    with open_queue_db(proj) as db:
        internal = {d["uuid"] for d in jobs}
        external = {p for d in jobs for p in d["parents"]} - internal
        done = {u for u, s in db.latest_states(external).items() if s == JobState.COMPLETED}
        stored = set(db.latest_states(external))
        for doc in jobs:
            pending = [p for p in doc["parents"] if p in internal or (p in stored and p not in done)]
            doc["state"] = str(JobState.WAITING if pending else JobState.READY)
        flow_doc["state"] = "READY" if any(d["state"] == "READY" for d in jobs) else "WAITING"
        try:
            ids = db.insert_flow(flow_doc, jobs)
        except KeyError as exc:
            raise SubmitError(
                f"{flow_label} is already submitted (uuid {exc.args[0]} is in the queue database)"
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
        raise SubmitError(f"{label}: cannot be serialized: {one_line(exc)}") from None
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
        raise SubmitError(f"{label}: its function cannot be imported: {one_line(exc)}") from None
    args = [(f"argument {i + 1}", v) for i, v in enumerate(job_dict.get("function_args") or [])]
    args += [(f"argument {k!r}", v) for k, v in (job_dict.get("function_kwargs") or {}).items()]
    for where, value in args:
        why = unimportable(value)
        if why:
            raise SubmitError(f"{label}: its {where} {why}, which the worker cannot import")
    return job_dict


def new_job_document(job_dict: dict, parents, flow_uuid: str, defaults: dict,
                     state=JobState.WAITING, created_by=None) -> dict:  # fmt: skip
    """A queue-database document for a serialized job.

    Values in the job's ``config.manager_config`` win over ``defaults`` (the
    arguments of :func:`submit_flow`, or the settings of the job that created
    this one at run time). ``created_by`` names the job (uuid, index) whose
    response created this one; a rerun of that job removes it.
    """
    label = f"job {job_dict.get('name')} ({job_dict.get('uuid')})"
    config = job_dict.get("config") or {}
    manager = (config.get("manager_config") or {}) if isinstance(config, dict) else None
    if not isinstance(manager, dict):
        raise SubmitError(f"{label}: its config must be a JobConfig with a manager_config mapping")
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
        "priority": priority_value(run["priority"], label),
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


