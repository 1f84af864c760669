"""Checks of a submission, all made before anything is written to the queue database.

Each refusal is a :class:`~jfr_lib.errors.SubmitError` of one line naming the
job (name and uuid) or the flow when there is one, and the cause.
"""

from __future__ import annotations

import json

from jfr_lib.errors import SubmitError

EXEC_CONFIG_KEYS = ("modules", "export", "pre_run", "post_run")


def kind(value) -> str:
    """What a wrong value is, briefly: ``list ['a']``, ``int 3``."""
    import reprlib

    return "None" if value is None else f"{type(value).__name__} {reprlib.repr(value)}"


def one_line(exc) -> str:
    """An exception as one line: its class and message, any password in it masked."""
    from jfr_lib.redact import mask_text

    return mask_text(" ".join(f"{type(exc).__name__}: {exc}".split()))


def project_for(project):
    """The project to submit to; ConfigError when it does not exist or is invalid."""
    from jfr_lib.config import Project, load_project
    from jfr_lib.errors import ConfigError, NotFoundError

    if isinstance(project, Project):
        return project
    if project is not None and not isinstance(project, str):
        raise SubmitError(f"project must be a project name or a Project, not {kind(project)}")
    try:
        return load_project(project)
    except NotFoundError as exc:  # for the API a missing project is a configuration problem
        raise ConfigError(str(exc)) from None


def _not_a_flow(item) -> str:
    from jobflow import Maker

    if isinstance(item, Maker):
        return f"{type(item).__name__} is a Maker, not a job: submit what its make() returns"
    if callable(item) and hasattr(item, "original"):  # a function decorated with @job
        return f"{getattr(item, '__name__', item)} is a job function, not a job: submit what calling it returns"
    return f"submit_flow takes a jobflow Flow, a Job or a list of them, not {kind(item)}"


def _check_members(flow, seen: set) -> int:
    """Refuse a flow holding something other than jobs and flows; return its number of jobs."""
    from jobflow import Flow, Job

    if id(flow) in seen:
        raise SubmitError(f"flow {flow.name} ({flow.uuid}) contains itself")
    seen.add(id(flow))
    n = 0
    for item in flow.jobs:
        if isinstance(item, Flow):
            n += _check_members(item, seen)
        elif isinstance(item, Job):
            n += 1
        else:
            raise SubmitError(f"flow {flow.name} ({flow.uuid}) contains {kind(item)}, which is neither a Job "
                              "nor a Flow")  # fmt: skip
    return n


def as_flow(flow_or_job, allow_external_references: bool):
    """The jobflow ``Flow`` to submit, refusing anything that is not made of jobs."""
    from jobflow import Flow, Job
    from jobflow.core.flow import get_flow

    many = isinstance(flow_or_job, (list, tuple))
    items = list(flow_or_job) if many else [flow_or_job]
    if many and not items:
        raise SubmitError("nothing to submit: the list of jobs is empty")
    for item in items:
        if not isinstance(item, (Flow, Job)):
            raise SubmitError(_not_a_flow(item))
    count = sum(_check_members(i, set()) if isinstance(i, Flow) else 1 for i in items)
    if count == 0:
        flow = items[0]
        raise SubmitError(f"flow {flow.name} ({flow.uuid}) has no jobs: nothing to submit")
    try:
        return get_flow(items if many else flow_or_job, allow_external_references=allow_external_references)
    except ValueError as exc:  # references to jobs outside the flow
        raise SubmitError(" ".join(str(exc).split())) from None
    except Exception as exc:  # jobflow serializes jobs while it builds the flow
        raise SubmitError(f"{_culprit(items)}cannot be serialized: {one_line(exc)}") from None


def _culprit(items) -> str:
    """``job NAME (UUID): `` for the first job that cannot be serialized, if one can be found."""
    from jobflow import Flow
    from monty.json import MontyEncoder

    for item in items:
        if isinstance(item, Flow):
            found = _culprit(item.jobs)
            if found != "the flow ":
                return found
            continue
        try:
            json.dumps(item.as_dict(), cls=MontyEncoder)
        except Exception:
            return f"job {item.name} ({item.uuid}): "
    return "the flow "


def check_job(job, label: str) -> None:
    """Refuse a job whose fields were set to something jobflow would not have made."""
    from jobflow import JobConfig

    if not isinstance(job.uuid, str) or not job.uuid:
        raise SubmitError(f"{label}: its uuid must be a string")
    if not isinstance(job.name, str):
        raise SubmitError(f"{label}: its name must be a string, not {kind(job.name)}")
    index = job.index
    if isinstance(index, bool) or not isinstance(index, int) or not 0 < index < 2**63:
        raise SubmitError(f"{label}: its index must be a whole number from 1, not {kind(index)}")
    if not isinstance(job.config, JobConfig):
        raise SubmitError(f"{label}: its config must be a jobflow JobConfig, not {kind(job.config)}")
    if not isinstance(job.config.manager_config, dict):
        raise SubmitError(f"{label}: config.manager_config must be a mapping, not {kind(job.config.manager_config)}")
    if not isinstance(job.metadata, dict):
        raise SubmitError(f"{label}: its metadata must be a mapping, not {kind(job.metadata)}")


def unimportable(value, depth: int = 0) -> str | None:
    """Why a function or class inside a serialized argument could not be imported by the worker."""
    if depth > 50:
        return None
    if isinstance(value, dict):
        module = value.get("@module")
        name = str(value.get("@callable") or value.get("@class") or "")
        if isinstance(module, str) and name:
            if module == "__main__":
                return f"holds {name}, defined in the __main__ script"
            if "<lambda>" in name:
                return "holds a lambda"
            if "<locals>" in name:
                return f"holds the local function {name}"
            if not _module_exists(module):
                return f"holds {module}.{name}, from a module not found here"
        items = value.values()
    elif isinstance(value, list):
        items = value
    else:
        return None
    for item in items:
        why = unimportable(item, depth + 1)
        if why:
            return why
    return None


def _module_exists(module: str) -> bool:
    import importlib.util
    import sys

    if module in sys.modules:
        return True
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def priority_value(value, label: str) -> int:
    """A priority as stored: a whole number that fits the databases' 64-bit integers."""
    import numbers

    if value is None:
        return 0
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise SubmitError(f"{label}: priority must be a whole number, not {kind(value)}")
    if not -(2**63) <= value < 2**63:
        raise SubmitError(f"{label}: priority {kind(value)} is out of range (a 64-bit integer)")
    return int(value)


def check_run_config(project, doc: dict, label: str) -> None:
    """Refuse a job whose worker, exec_config or resources cannot work in the project."""
    if not isinstance(doc["worker"], str):
        raise SubmitError(f"{label}: worker must be the name of a worker, not {kind(doc['worker'])}")
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
    if isinstance(ec, dict):
        _check_exec_config_values(ec, label)
    resources = doc["resources"]
    if resources is not None and not isinstance(resources, dict):
        raise SubmitError(f"{label}: resources must be a mapping or a QResources, not {kind(resources)}")
    if resources and not all(isinstance(k, str) for k in resources):
        raise SubmitError(f"{label}: resources must be a mapping of scheduler keywords (strings)")


def _check_exec_config_values(ec: dict, label: str) -> None:
    modules = ec.get("modules")
    if modules is not None and not isinstance(modules, str) and (
        not isinstance(modules, list) or not all(isinstance(m, str) for m in modules)
    ):
        raise SubmitError(f"{label}: exec_config modules must be a list of module names")
    export = ec.get("export")
    if export is not None and (not isinstance(export, dict) or not all(
        isinstance(k, str) and isinstance(v, (str, int, float)) and not isinstance(v, bool)
        for k, v in export.items()
    )):  # fmt: skip
        raise SubmitError(f"{label}: exec_config export must map variable names to strings or numbers")
    for key in ("pre_run", "post_run"):
        if ec.get(key) is not None and not isinstance(ec[key], str):
            raise SubmitError(f"{label}: exec_config {key} must be shell lines (a string)")


def check_storable(doc: dict, label: str, backend: str) -> None:
    """Refuse a document the queue database would reject, before anything is written."""
    try:  # the serialized job already went through JSON: the rest came from the caller
        json.dumps({k: v for k, v in doc.items() if k != "job"})
    except (TypeError, ValueError) as exc:  # a value of resources, exec_config or metadata
        raise SubmitError(f"{label}: cannot be stored: {one_line(exc)}") from None
    if backend == "mongodb":
        try:
            import bson

            bson.encode(doc)
        except ImportError:
            pass  # opening the database will say pymongo is missing
        except Exception as exc:  # keys that are not strings, integers beyond 8 bytes
            raise SubmitError(f"{label}: cannot be stored in MongoDB: {one_line(exc)}") from None
