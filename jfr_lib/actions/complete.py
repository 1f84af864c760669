"""DOWNLOADED -> COMPLETED or FAILED: store outputs, apply the response, release children.

The order makes every step safe to repeat after a crash: outputs are upserted
by (uuid, index); new jobs are inserted unless their (uuid, index) exists;
parents are added as a set; the job is marked COMPLETED (still locked) before
its children are looked at; the lock goes last.
"""

from __future__ import annotations

import json
from pathlib import Path

from jfr_lib.actions import ActionContext
from jfr_lib.dependencies import release_children, stop_descendants, stop_flow, sweep_waiting
from jfr_lib.errors import JobFailure
from jfr_lib.rundir import OUT_FILE, STORE_FILE, store_object_hook
from jfr_lib.states import JobState
from jfr_lib.submit import RUN_CONFIG_KEYS, new_job_document

#: Seconds between two sweeps for children left waiting (see :func:`sweep_waiting`).
SWEEP_EVERY = 300


def prepare(ctx: ActionContext) -> None:
    """At start: release children that a killed runner or process left waiting."""
    _sweep(ctx)


def _sweep(ctx: ActionContext) -> None:
    import time

    ctx.last_sweep = time.monotonic()
    released = sweep_waiting(ctx.db)
    if released:
        ctx.log.info("released %d waiting jobs whose parents were done", len(released))


def read_output(folder: str) -> dict:
    path = Path(folder) / OUT_FILE
    try:
        out = json.loads(path.read_text(), object_hook=store_object_hook)
    except FileNotFoundError:
        tail = _tail(Path(folder) / "queue.err")
        more = f"; queue.err ends with: {tail}" if tail else ""
        raise JobFailure(f"the job ended without writing {OUT_FILE}{more}") from None
    except ValueError as exc:  # JSON, or text that is not UTF-8
        raise JobFailure(f"{path}: corrupt, not the JSON a job writes ({' '.join(str(exc).split())[:200]})") from None
    except OSError as exc:
        raise JobFailure(f"{path}: cannot be read ({exc.strerror})") from None
    if not isinstance(out, dict) or out.get("state") not in ("COMPLETED", "FAILED"):
        raise JobFailure(f"{path}: corrupt, it has no valid state")
    return out


def _tail(path: Path, limit: int = 500) -> str:
    try:
        text = path.read_text(errors="replace").strip()
    except OSError:
        return ""
    return " ".join(text[-limit:].split())


def store_outputs(ctx: ActionContext, folder: str) -> None:
    from jfr_lib.jobstore import store_lock

    path = Path(folder) / STORE_FILE
    try:
        data = json.loads(path.read_text(), object_hook=store_object_hook)
    except (OSError, ValueError) as exc:
        raise JobFailure(f"{STORE_FILE} is missing or corrupt: {exc}") from None
    store = ctx.jobstore()
    with store_lock(ctx.project, exclusive=True):
        for name, docs in (data.get("additional") or {}).items():
            if docs:
                if name not in store.additional_stores:
                    raise JobFailure(f"the job wrote to additional store {name!r}, which the JobStore lacks")
                store.additional_stores[name].update(docs, key="blob_uuid")
        if data.get("docs"):
            store.docs_store.update(data["docs"], key=["uuid", "index"])


def add_new_jobs(ctx: ActionContext, job: dict, response: dict) -> set:
    """Insert the jobs of replace / addition / detour, wired to the current job.

    The current job's children also wait for the last jobs (the leaves) of a
    replacement or a detour, so nothing after the job starts before what it
    handed its work to has completed (as jobflow's FireWorks manager does).
    Additions run beside the children. Returns the uuids of the new jobs.
    """
    defaults = {k: job.get(k) for k in RUN_CONFIG_KEYS}
    creator = {"uuid": job["uuid"], "index": job["index"]}
    created = set()
    for kind in ("replace", "detour", "addition"):
        graph = response.get(kind)
        if not graph:
            continue
        new_uuids = {item["job"]["uuid"] for item in graph["jobs"]}
        created |= new_uuids
        docs = []
        for item in graph["jobs"]:
            parents = list(item["parents"])
            if kind != "replace" and not parents:
                parents = [job["uuid"]]  # roots start once the current job is done
            doc = new_job_document(item["job"], parents, job["flow_uuid"], defaults,
                                   created_by={**creator, "kind": kind})  # fmt: skip
            if job.get("reruns"):  # a job made again after a rerun gets a fresh run folder too
                doc["reruns"] = job["reruns"]
            docs.append(doc)
        for doc in docs:
            states = ctx.db.latest_states([p for p in doc["parents"] if p not in new_uuids])
            waiting = any(p in new_uuids or p == job["uuid"] or states.get(p, "COMPLETED") != "COMPLETED"
                          for p in doc["parents"])  # fmt: skip
            doc["state"] = str(JobState.WAITING if waiting else JobState.READY)
        children_before = []
        if kind in ("detour", "replace"):
            children_before = [c["db_id"] for c in ctx.db.children(job["uuid"])
                               if c["uuid"] not in new_uuids]  # fmt: skip
        ctx.db.insert_jobs(docs)
        leaves = [u for u in graph["leaves"] if u != job["uuid"]]
        if children_before and leaves:
            ctx.db.add_parents(children_before, leaves)
    if created:
        ctx.db.update_flow(job["flow_uuid"], {"n_jobs": ctx.db.count_jobs({"flow_uuid": job["flow_uuid"]})})
    return created


def queue_end_state(ctx: ActionContext, job: dict, wait: float = 30.0) -> str | None:
    """Ask the queue how a job that left no output ended (SGE writes its accounting late)."""
    import time

    worker = ctx.project.workers.get(job["worker"])
    if worker is None or not job.get("queue_id"):
        return None
    queue = ctx.queue(worker)
    command = queue.detail_command(job["queue_id"])
    if command is None:
        return None
    deadline = time.monotonic() + (wait if worker.scheduler_type == "sge" else 0)
    while True:
        try:
            result = ctx.host(worker).run(command)
        except Exception:  # the reason is a nicety; the failure is recorded anyway
            return None
        state = queue.parse_detail(result.exit_code, result.stdout, result.stderr)
        if state is not None or time.monotonic() >= deadline:
            return state
        time.sleep(2)


def complete(ctx: ActionContext, job: dict) -> None:
    from jfr_lib.queue import ENDED_BADLY

    folder = job.get("local_dir") or job["run_dir"]
    try:
        out = read_output(folder)
    except JobFailure as exc:
        ended = job.get("queue_state") or queue_end_state(ctx, job)
        ctx.db.update_job(job["db_id"], {"queue_err": _tail(Path(folder) / "queue.err", 2000),
                                         "queue_state": ended}, lock_id=ctx.lock_id)  # fmt: skip
        if ended in ENDED_BADLY:  # say first what the queue did to it
            raise JobFailure(f"{ENDED_BADLY[ended]} ({ended}); {exc}") from None
        raise
    if out["state"] == "FAILED" and job.get("queue_state") in ENDED_BADLY:
        out["error"] = f"{ENDED_BADLY[job['queue_state']]} ({job['queue_state']}): {out.get('error')}"
    times = {k: out.get(k) for k in ("start_time", "end_time", "host", "run_seconds", "started")}
    if out.get("pilot"):  # a batch job that ran between two looks of the monitor was never seen RUNNING
        times["pilot"] = out["pilot"]
    if out["state"] == "FAILED":
        times["queue_err"] = _tail(Path(folder) / "queue.err", 2000)
        ctx.db.update_job(job["db_id"], times, lock_id=ctx.lock_id)
        raise JobFailure(out.get("error") or "the job failed", out.get("traceback"))
    try:
        store_outputs(ctx, folder)
        response = out.get("response") or {}
        created = add_new_jobs(ctx, job, response)
        if response.get("stop_children"):
            stop_descendants(ctx.db, job["uuid"], spare=created)
        if response.get("stop_jobflow"):
            stop_flow(ctx.db, job["flow_uuid"])
        changes = dict(times, stored_data=response.get("stored_data"), error=None, created=sorted(created))
        completed = ctx.db.set_state(job, JobState.COMPLETED, expect_lock=ctx.lock_id, **changes)
    except Exception as exc:
        from jfr_lib.faults import is_fault

        if not is_fault(exc):  # the job will be FAILED: its outputs must not stay in the JobStore
            _withdraw_outputs(ctx, job)
        raise
    if not completed:
        ctx.log.warning("job %s: changed by someone else while completing", job["db_id"])
        ctx.db.release_job(job["db_id"], ctx.lock_id)
        return
    ctx.fault = None
    release_children(ctx.db, job["uuid"])
    ctx.db.release_job(job["db_id"], ctx.lock_id)
    ctx.db.refresh_flow_state(job["flow_uuid"])


def _withdraw_outputs(ctx: ActionContext, job: dict) -> None:
    from jfr_lib.rerun import remove_outputs

    try:
        remove_outputs(ctx.project, [job])
    except Exception as exc:  # the job's failure is what gets recorded; say this too
        ctx.log.warning("job %s: its outputs could not be removed from the JobStore: %s", job["db_id"], exc)


def step(ctx: ActionContext) -> int:
    import time

    if time.monotonic() - getattr(ctx, "last_sweep", 0.0) > SWEEP_EVERY:
        _sweep(ctx)  # mends a release that another process, killed meanwhile, left half done
    moved = 0
    while (job := ctx.claim(JobState.DOWNLOADED)) is not None:
        try:
            complete(ctx, job)
            moved += 1
        except Exception as exc:  # every failure must land in the job document
            ctx.step_failed(job, exc)
    return moved
