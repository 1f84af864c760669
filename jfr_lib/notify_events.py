"""The events the notifier announces: how each reads, and which rule chooses it.

An event is a mapping: ``event`` (its name, one of
:data:`jfr_lib.config_model.NOTIFY_EVENTS`), ``time``, ``text`` (one line, what
people read) and the fields of what it concerns (``job_id``, ``flow_name``,
``metadata``...). Every name put in a text is one line (a newline in a job's
name would break an e-mail's Subject header), every error is cut and masked.
"""

from __future__ import annotations

import os
from datetime import datetime, timezone
from fnmatch import fnmatchcase

FLOW_EVENTS = {"COMPLETED": "flow_completed", "FAILED": "flow_failed"}
JOB_EVENTS = {"FAILED": "job_failed", "REMOTE_ERROR": "job_remote_error"}


def iso(epoch: float) -> str:
    """An epoch time as the queue database writes times (ISO 8601, UTC, milliseconds)."""
    return datetime.fromtimestamp(epoch, timezone.utc).isoformat(timespec="milliseconds")


def epoch(text: str) -> float:
    """The epoch time of an ISO 8601 time."""
    return datetime.fromisoformat(text).timestamp()


def one_line(text, limit: int = 300) -> str:
    """``text`` on one line (every run of white space, line breaks too, made one space), cut, masked."""
    from jfr_lib.redact import mask_text

    text = " ".join(str(text or "").split())
    return mask_text(text if len(text) <= limit else text[: limit - 3] + "...")


def _name(value) -> str:
    return " ".join(str(value).split())


_MISSING = object()


def _lookup(mapping: dict, dotted: str):
    value = mapping
    for part in dotted.split("."):
        if not isinstance(value, dict) or part not in value:
            return _MISSING
        value = value[part]
    return value


def matches(rule, event: dict) -> bool:
    """Whether a rule chooses an event: its events, flow name patterns and metadata values."""
    if rule.events and event["event"] not in rule.events:
        return False
    if not (rule.flows or rule.metadata):
        return True
    if "flow_uuid" not in event:  # a runner or login event concerns no flow
        return False
    if rule.flows and not any(fnmatchcase(event.get("flow_name") or "", p) for p in rule.flows):
        return False
    for key, wanted in rule.metadata.items():
        have = _lookup(event.get("metadata") or {}, key)
        choices = wanted if isinstance(wanted, list) else [wanted]
        if have is _MISSING or (have not in choices and str(have) not in [str(c) for c in choices]):
            return False
    return True


def job_event(job: dict, flow) -> dict:
    """The event of a job that entered FAILED or REMOTE_ERROR (``flow``: its flow, or None)."""
    flow = flow or {}
    state = job["state"]
    error = one_line(job.get("error")) or "no error recorded"
    text = (f"job {job['db_id']} ({_name(job.get('name'))}) {state} on worker {_name(job.get('worker'))}"
            f" in flow {flow.get('db_id')} ({_name(flow.get('name'))}): {error}")  # fmt: skip
    return {"event": JOB_EVENTS[state], "time": job.get("state_on") or job.get("updated_on"), "state": state,
            "job_id": job["db_id"], "job_uuid": job["uuid"], "job_index": job["index"], "job_name": job.get("name"),
            "worker": job.get("worker"), "error": error, "flow_id": flow.get("db_id"),
            "flow_uuid": job.get("flow_uuid"), "flow_name": flow.get("name"),
            "metadata": {**(flow.get("metadata") or {}), **(job.get("metadata") or {})}, "text": text}  # fmt: skip


def flow_event(db, flow: dict) -> dict:
    """The event of a flow that ended COMPLETED or FAILED (the failed jobs counted from an index)."""
    n_jobs = flow.get("n_jobs")
    text = f"flow {flow['db_id']} ({_name(flow.get('name'))}) {flow['state']}"
    if flow["state"] == "FAILED":
        failed = db.count_jobs({"flow_uuid": flow["uuid"], "state": "FAILED"})
        text += f": {failed} of {n_jobs} jobs FAILED"
    else:
        text += f" ({n_jobs} jobs)"
    return {"event": FLOW_EVENTS[flow["state"]], "time": flow.get("updated_on"), "state": flow["state"],
            "flow_id": flow["db_id"], "flow_uuid": flow["uuid"], "flow_name": flow.get("name"), "n_jobs": n_jobs,
            "metadata": flow.get("metadata") or {}, "text": text}  # fmt: skip


def login_event(mark: dict, now: float) -> dict:
    """The event of a worker's login mark (:mod:`jfr_lib.login_marks`)."""
    since = iso(float(mark.get("since") or now))
    reason = one_line(mark.get("reason"))
    text = f"worker {_name(mark['worker'])} needs a login (since {since}): {reason}"
    return {"event": "login_needed", "time": since, "worker": mark["worker"], "reason": reason, "text": text}


def runner_event(lease: dict) -> dict:
    """The event of a runner that died: the stale lease the new runner took over."""
    beat = iso(float(lease.get("heartbeat") or 0))
    text = (
        f"the runner on {_name(lease.get('host'))} (pid {lease.get('pid')}) stopped unexpectedly: its last "
        f"heartbeat was at {beat}; a new runner took over on {os.uname().nodename} (pid {os.getppid()})"
    )
    return {"event": "runner_stopped", "time": beat, "host": lease.get("host"), "pid": lease.get("pid"),
            "started_on": lease.get("started_on"), "text": text}  # fmt: skip
