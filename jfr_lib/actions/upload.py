"""CHECKED_OUT -> UPLOADED: resolve references and write ``jfr_in.json``.

References are resolved in the runner, against the project's JobStore, on the
serialized job: only the referenced outputs are decoded (and only when an
attribute must be read from them), so the runner never imports the job's code.
"""

from __future__ import annotations

import json

from jfr_lib.actions import ActionContext, guarded
from jfr_lib.errors import JobFailure
from jfr_lib.rundir import IN_FILE
from jfr_lib.states import JobState


def _is_reference(obj) -> bool:
    return obj.get("@class") == "OutputReference" and str(obj.get("@module", "")).startswith("jobflow")


def resolve_references(obj, store, on_missing, cache):
    """A copy of ``obj`` (JSON data) with every output reference replaced by its value."""
    if isinstance(obj, list):
        return [resolve_references(v, store, on_missing, cache) for v in obj]
    if not isinstance(obj, dict):
        return obj
    if _is_reference(obj):
        from jobflow.core.reference import OutputReference
        from monty.json import MontyEncoder

        ref = OutputReference.from_dict(obj)
        by_attribute = any(kind == "a" for kind, _ in ref.attributes)
        try:
            value = ref.resolve(store, cache=cache, on_missing=on_missing, deserialize=by_attribute)
        except ValueError as exc:
            raise JobFailure(f"cannot resolve a reference to job {ref.uuid}: {exc}") from None
        if value is ref:  # on_missing_references: pass
            return obj
        return json.loads(json.dumps(value, cls=MontyEncoder))
    return {k: resolve_references(v, store, on_missing, cache) for k, v in obj.items()}


def referenced_uuids(obj, found=None) -> dict:
    """uuid -> None for every output reference in ``obj`` (JSON data), in order."""
    found = {} if found is None else found
    if isinstance(obj, list):
        for v in obj:
            referenced_uuids(v, found)
    elif isinstance(obj, dict):
        if _is_reference(obj):
            found[obj["uuid"]] = None
        else:
            for v in obj.values():
                referenced_uuids(v, found)
    return found


def referenced_outputs(job_dict: dict, store) -> list:
    """The stored outputs a job that resolves its own references will look up.

    A job with ``resolve_references=False`` (and ``expose_store``) resolves its
    inputs against the store it runs with; the worker puts these documents in it.
    """
    from jobflow.core.reference import OnMissing
    from monty.json import MontyEncoder

    docs = []
    uuids = referenced_uuids([job_dict.get("function_args"), job_dict.get("function_kwargs")])
    for uuid in uuids:
        latest = store.query_one({"uuid": uuid}, ["index"], sort={"index": -1})
        if latest is None:
            continue
        value = store.get_output(uuid, which="last", load=True, on_missing=OnMissing.NONE)
        docs.append({"uuid": uuid, "index": latest["index"],
                     "output": json.loads(json.dumps(value, cls=MontyEncoder))})  # fmt: skip
    return docs


def input_document(ctx: ActionContext, job: dict) -> dict:
    """The content of ``jfr_in.json`` for ``job``."""
    from jobflow.core.reference import OnMissing

    from jfr_lib.jobstore import additional_store_names, store_lock

    job_dict = dict(job["job"])
    config = job_dict.get("config") or {}
    resolved, store_docs = False, []
    if config.get("resolve_references", True) is True:
        on_missing = OnMissing(config.get("on_missing_references", "error"))
        store = ctx.jobstore()
        with store_lock(ctx.project, exclusive=False):
            for key in ("function_args", "function_kwargs"):
                job_dict[key] = resolve_references(job_dict.get(key), store, on_missing, {})
        resolved = True
    elif config.get("expose_store"):
        store = ctx.jobstore()
        with store_lock(ctx.project, exclusive=False):
            store_docs = referenced_outputs(job_dict, store)
    return {
        "job": job_dict,
        "resolved": resolved,
        "store_docs": store_docs,
        "store_names": sorted(additional_store_names(ctx.project)),
        "db_id": job["db_id"],
        "uuid": job["uuid"],
        "index": job["index"],
        "name": job["name"],
    }


def upload(ctx: ActionContext, job: dict) -> None:
    worker = ctx.worker(job["worker"])
    host = ctx.host(worker)
    run_dir = job["run_dir"]
    target = f"{run_dir}/{IN_FILE}"
    # an earlier attempt may have written it and died before recording that
    if not host.exists(target):
        doc = input_document(ctx, job)
        host.mkdir(run_dir)
        host.write_text(target, json.dumps(doc))
    ctx.advance(job, JobState.UPLOADED)


def step(ctx: ActionContext) -> int:
    moved = 0
    while (job := ctx.claim(JobState.CHECKED_OUT)) is not None:
        moved += guarded(ctx, job, lambda j: upload(ctx, j))
    return moved
