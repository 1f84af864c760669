"""The dashboard's actions: the functions ``jfr job ...`` and ``jfr flow ...`` call, with their rules.

Each action goes through the very function the command line uses
(:mod:`jfr_lib.control`, :func:`jfr_lib.rerun.rerun`), so a job is acted on only
in the states the command allows, and a refusal is the command's one-line
message. What an action answers is the line the command prints for the job
(``job 12: FAILED -> READY``).
"""

from __future__ import annotations

import json

from jfr_lib.errors import NotFoundError, UsageError

JOB_VERBS = ("retry", "pause", "resume", "stop", "rerun", "delete", "priority")
FLOW_VERBS = ("resume", "delete")


def offered(job: dict) -> dict:
    """verb -> whether the job's state allows it (the page shows only these buttons).

    ``rerun_force``: a rerun of this job needs ``force`` (it is COMPLETED).
    """
    from jfr_lib import control
    from jfr_lib.rerun import RERUNNABLE
    from jfr_lib.states import JobState

    def within(states) -> bool:
        return job["state"] in [str(s) for s in states]

    return {"retry": job["state"] == str(JobState.REMOTE_ERROR), "pause": within(control.PAUSABLE),
            "resume": job["state"] == str(JobState.PAUSED), "stop": within(control.STOPPABLE),
            "rerun": within((*RERUNNABLE, JobState.COMPLETED)), "rerun_force": job["state"] == str(JobState.COMPLETED),
            "delete": within(control.DELETABLE), "priority": within(control.SETTABLE)}  # fmt: skip


def _flag(body: dict, key: str) -> bool:
    value = body.get(key, False)
    if not isinstance(value, bool):
        raise UsageError(f"{key}: give true or false")
    return value


def job_action(db, project, db_id: int, verb: str, body: dict) -> str:
    """Do ``verb`` on job ``db_id``; the line ``jfr job VERB`` prints for it.

    Parameters
    ----------
    db, project
        The queue database and the project.
    db_id
        The job.
    verb
        One of :data:`JOB_VERBS`.
    body
        Options: ``force`` (rerun), ``output`` and ``files`` (delete), ``value`` (priority).

    Raises
    ------
    StateError
        The job's state (or the runner's lock) forbids it: the command's message.
    """
    from jfr_lib import control

    if verb not in JOB_VERBS:
        raise NotFoundError(f"no action {verb!r} (one of: {', '.join(JOB_VERBS)})")
    job = db.get_job(db_id=db_id)
    if job is None:
        raise NotFoundError(f"no job {db_id}")
    if verb == "delete":
        control.delete(db, project, job, output=_flag(body, "output"), files=_flag(body, "files"))
        return f"job {db_id}: deleted"
    if verb == "priority":
        from jfr_lib.cli.values import parse_int

        value = body.get("value")
        value = parse_int("" if value is None or isinstance(value, bool) else str(value), "priority")
        job = control.set_value(db, project, job, "priority", value)
        return f"job {db_id}: priority {json.dumps(job.get('priority', value))}"
    if verb == "stop":
        new = control.stop(db, project, job)
    elif verb == "rerun":
        from jfr_lib.rerun import rerun

        new = rerun(db, job, force=_flag(body, "force"), project=project)
    else:
        new = getattr(control, verb)(db, job)
    return f"job {db_id}: {job['state']} -> {new['state']}"


def flow_action(db, project, db_id: int, verb: str, body: dict) -> str:
    """``resume`` (``jfr flow resume``) or ``delete`` (``jfr flow delete``, ``output``/``files`` options)."""
    from jfr_lib import control

    if verb not in FLOW_VERBS:
        raise NotFoundError(f"no action {verb!r} (one of: {', '.join(FLOW_VERBS)})")
    flow = db.get_flow(db_id=db_id)
    if flow is None:
        raise NotFoundError(f"no flow {db_id}")
    if verb == "resume":
        lines = []
        for job in db.find_jobs({"flow_uuid": flow["uuid"], "state": "PAUSED"}, sort=[("db_id", 1)]):
            new = control.resume(db, job)
            lines.append(f"job {job['db_id']}: PAUSED -> {new['state']}")
        return "\n".join(lines) or f"flow {db_id}: no paused job"
    output, files = _flag(body, "output"), _flag(body, "files")
    jobs = db.find_jobs({"flow_uuid": flow["uuid"]})
    for job in jobs:
        control.refuse_flow_delete(flow, job)
    control.delete_flow(db, project, flow, jobs, output=output, files=files)
    return f"flow {db_id}: deleted with {len(jobs)} jobs"
