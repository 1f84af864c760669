"""The runner's side of batch workers: tickets, pilots, and what a poll learns.

On a worker with a ``batch`` section, ``submit`` writes the job's script (as
for a local shell job: no scheduler header; the worker's and the exec_config's
lines) and posts a ticket into ``ready/`` instead of submitting the job; the job
is SUBMITTED, waiting for a pilot. The monitor then, once per poll and worker,
reads the whole exchange folder with one command and the queue state of every
live pilot with one more, and:

- moves each job by where its ticket is: ``running/<pilot>/`` is RUNNING in
  that pilot, ``done/`` is RUN_FINISHED (the run folder holds the outcome);
- sends back to READY each job that a pilot held when it left the queue (time
  limit, cancel, node failure) and that did not finish, recording why; after
  ``runner.max_step_attempts`` such losses the job is FAILED;
- posts again a ticket that is nowhere (the runner was killed between two of
  its steps), since no pilot can be running it;
- submits pilots while tickets wait, never more than ``max_jobs`` alive (the
  records in the queue database, made before each submission, count them,
  across restarts too).
"""

from __future__ import annotations

import json
import math
import secrets
import time
from datetime import datetime, timezone

from jfr_lib import batch
from jfr_lib.errors import HostError, QueueError
from jfr_lib.rundir import OUT_FILE, SCRIPT_NAME, STARTED_FILE, STORE_FILE
from jfr_lib.states import JobState


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def handle_dir(ctx, worker) -> str:
    """The worker's ``jobs_handle_dir``, with ``~`` and variables expanded on its host."""
    path = worker.batch.jobs_handle_dir
    return path if worker.is_local else ctx.host(worker).expand(path)


def ensure_folders(ctx, worker, home: str) -> None:
    """Create the exchange folders once per process (a HostError names the folder that cannot be made)."""
    made = getattr(ctx, "batch_folders", None)
    if made is None:
        made = ctx.batch_folders = set()
    if home in made:
        return
    host = ctx.host(worker)
    for name in batch.FOLDERS:
        host.mkdir(f"{home}/{name}")
    made.add(home)


def gpus_of(resources) -> int:
    if not isinstance(resources, dict):
        return 0
    for key in ("gpus", "gpus_per_job"):
        if resources.get(key) is not None:
            try:
                return max(0, int(resources[key]))
            except (TypeError, ValueError):
                return 0
    return 0


def ticket_for(job: dict) -> dict:
    resources = job.get("resources") if isinstance(job.get("resources"), dict) else {}
    return {"run_dir": job["run_dir"], "name": job.get("name"), "db_id": job.get("db_id"),
            "uuid": job.get("uuid"), "index": job.get("index"),
            "expected_time": batch.declared_time(resources), "gpus": gpus_of(resources)}  # fmt: skip


def ticket_place(host, home: str, name: str) -> bool:
    """Whether the ticket ``name`` is anywhere in the exchange folder."""
    result = host.run(f"cd {_q(home)} && ls -d ready/{name} done/{name} running/*/{name} 2>/dev/null | head -1")
    return bool(result.stdout.strip())


def _q(text: str) -> str:
    import shlex

    return shlex.quote(text)


def submit_job(ctx, worker, job: dict) -> None:
    """UPLOADED -> SUBMITTED on a batch worker: write the script, post the ticket."""
    from jfr_lib.actions.scripts import exec_config_of, worker_command

    host = ctx.host(worker)
    home = handle_dir(ctx, worker)
    ensure_folders(ctx, worker, home)
    run_dir = job["run_dir"]
    name = batch.ticket_name(run_dir, job.get("priority"))
    expected = batch.declared_time(job.get("resources") if isinstance(job.get("resources"), dict) else {})
    limit = pilot_seconds(worker)
    if expected is not None and limit is not None and expected + worker.batch.time_margin > limit:
        from jfr_lib.errors import JobFailure

        raise JobFailure(f"the job expects to run {expected:g} s; a pilot of worker {worker.name} has "
                         f"{limit:g} s, {worker.batch.time_margin:g} s of which are kept free")  # fmt: skip
    # one round trip: posted already (by an attempt that died before recording it), finished, or fresh
    # (then a started marker that a pilot lost while starting it left counts for nothing)
    look = host.run(f"cd {_q(home)} && if ls -d ready/{name} done/{name} running/*/{name} >/dev/null 2>&1; "
                    f"then echo POSTED; elif [ -e {_q(run_dir)}/{OUT_FILE} ]; then echo FINISHED; "
                    f"else rm -f {_q(run_dir)}/{STARTED_FILE}; echo FRESH; fi")  # fmt: skip
    answer = look.stdout.strip().splitlines()[-1:] or [""]
    if answer[0] in ("POSTED", "FINISHED"):
        if answer[0] == "POSTED":
            ctx.log.warning("job %s: its ticket is already posted; not posting again", job["db_id"])
        ctx.advance(job, JobState.SUBMITTED, batch_ticket=name)  # the monitor finds where it is
        return
    if answer[0] != "FRESH":
        raise HostError(f"worker {worker.name}: cannot look into {home}: {(look.stderr or look.stdout).strip()[:200]}")
    from jfr_lib.queue import QueueAdapter

    command = worker_command(worker, run_dir, warm=f"@{_socket_variable()}")
    script = QueueAdapter("shell").script(command, run_dir, exec_config=exec_config_of(ctx, job),
                                          pre_run=worker.pre_run, post_run=worker.post_run)  # fmt: skip
    host.write_text(f"{run_dir}/{SCRIPT_NAME}", script)
    host.write_text(f"{home}/{batch.READY}/{name}", json.dumps({**ticket_for(job), "ticket": name}))
    stamp = datetime.now(timezone.utc).isoformat(timespec="milliseconds")
    ctx.advance(job, JobState.SUBMITTED, batch_ticket=name, queue_id=None, submitted_on=stamp, pilot=None)
    wake_monitor(ctx)


def _socket_variable() -> str:
    from jfr_lib.pilot import SOCKET_VARIABLE

    return SOCKET_VARIABLE


def wake_monitor(ctx) -> None:
    from jfr_lib.wakeup import notify

    notify(ctx.project.base_dir, "monitor")


def pilot_seconds(worker) -> float | None:
    """How long a pilot's allocation lasts: ``batch.max_time``, else the worker's time resource."""
    if worker.batch.max_time is not None:
        return worker.batch.max_time
    return batch.declared_time(worker.resources if isinstance(worker.resources, dict) else {})


# --- the monitor ------------------------------------------------------------------------


def check_batch_worker(ctx, worker, jobs: list) -> int:
    """One poll of a batch worker: the folder, the pilots' queue states, the jobs, new pilots."""
    host = ctx.host(worker)
    home = handle_dir(ctx, worker)
    ensure_folders(ctx, worker, home)
    cleanup = ctx.__dict__.setdefault("batch_cleanup", {}).setdefault(worker.name, set())
    result = host.run(batch.snapshot_command(home, sorted(cleanup)))
    if result.exit_code != 0:
        raise HostError(f"worker {worker.name}: cannot read {home}: {(result.stderr or result.stdout).strip()[:200]}")
    cleanup.clear()
    snap = batch.parse_snapshot(result.stdout)
    # the queue is asked about pilots at the worker's poll interval, however often the folder is read
    asked = ctx.__dict__.setdefault("pilots_asked", {})
    if time.monotonic() - asked.get(worker.name, float("-inf")) >= queue_interval(ctx, worker):
        asked[worker.name] = time.monotonic()
        pilots = check_pilots(ctx, worker, snap)
    else:
        pilots = batch.read_pilots(ctx.db, worker.name)
    moved = 0
    watched = {j.get("batch_ticket") for j in jobs}
    for name in snap.done - watched:  # recorded by an earlier poll, or its job was stopped
        cleanup.update({f"{batch.DONE}/{name}", f"{batch.CANCEL}/{name}"})
    for pid in snap.pilots:  # what ended pilots left: their status file, their (empty) folder
        if pid in pilots and not batch.alive(pilots[pid]) and not snap.running.get(pid):
            cleanup.update({f"{batch.PILOTS}/{pid}.json", f"{batch.RUNNING}/{pid}/", f"{batch.STOP}/{pid}"})
    for job in jobs:
        moved += place_job(ctx, worker, host, home, job, snap, pilots, cleanup)
    try:
        if submit_pilots(ctx, worker, snap, pilots):  # the queue took one: the refusals are over
            ctx.__dict__.setdefault("pilot_refusals", {}).pop(worker.name, None)
    except QueueError as exc:
        moved += pilot_refused(ctx, worker, host, home, jobs, snap, exc)
    return moved


def pilot_refused(ctx, worker, host, home, jobs, snap, exc) -> int:
    """The queue refused a pilot: try again after ``runner.delta_retry``; after ``max_step_attempts``
    refusals in a row, the jobs waiting for a pilot become REMOTE_ERROR with the queue's answer
    (``jfr job retry`` puts them back in SUBMITTED, and the monitor posts their tickets again)."""
    refusals = ctx.__dict__.setdefault("pilot_refusals", {})
    opts = ctx.project.runner
    count = refusals.get(worker.name, 0) + (0 if getattr(exc, "limit", False) else 1)  # a user limit: just later
    refusals[worker.name] = count
    delay = opts.delta_retry[max(1, min(count, len(opts.delta_retry))) - 1]
    ctx.__dict__.setdefault("pilots_not_before", {})[worker.name] = time.monotonic() + delay
    if count < opts.max_step_attempts:
        return 0
    refusals.pop(worker.name, None)
    message = f"pilots of worker {worker.name} cannot be submitted ({count} times): " + " ".join(str(exc).split())
    moved = 0
    for job in jobs:
        name = job.get("batch_ticket")
        if name in snap.ready and job["state"] == str(JobState.SUBMITTED):
            host.run(f"rm -f {_q(home)}/{batch.READY}/{name}")
            moved += ctx.db.set_state(job, JobState.REMOTE_ERROR, error=message, failed_step="submit")
    return moved


def queue_interval(ctx, worker) -> float:
    return worker.poll_interval if worker.poll_interval is not None else ctx.project.runner.queue_poll_interval


def place_job(ctx, worker, host, home, job, snap, pilots, cleanup) -> int:
    name = job.get("batch_ticket")
    if not name:  # submitted before the worker became a batch worker: nothing to watch here
        return 0
    place, pilot = snap.where(name)
    if place == batch.DONE:
        cleanup.update({f"{batch.DONE}/{name}", f"{batch.CANCEL}/{name}"})
        return ctx.db.set_state(job, JobState.RUN_FINISHED)
    if place == batch.RUNNING:
        record = pilots.get(pilot) or {}
        if batch.alive(record):
            if job["state"] == str(JobState.SUBMITTED) or job.get("pilot") != pilot:
                return ctx.db.set_state(job, JobState.RUNNING, pilot=pilot, pilot_queue_id=record.get("queue_id"))
            return 0
        if record:  # its pilot left the queue while the ticket was in its hands
            return lost(ctx, worker, host, home, job, f"{batch.RUNNING}/{pilot}/{name}", record)
        return 0  # a pilot this runner has no record of yet (a poll racing its submission)
    if place == batch.READY:
        return 0
    # nowhere in the listing; it may have moved between two folders while they were listed
    if ticket_place(host, home, name):
        return 0  # the next poll sees where
    # nowhere: finished and cleaned, or never posted whole; no pilot holds it
    if host.exists(f"{job['run_dir']}/{OUT_FILE}") and not _terminated(host, job):
        return ctx.db.set_state(job, JobState.RUN_FINISHED)
    ctx.log.warning("job %s: its ticket %s is gone: posting it again", job["db_id"], name)
    _clean_run_dir(host, job)
    host.write_text(f"{home}/{batch.READY}/{name}", json.dumps({**ticket_for(job), "ticket": name}))
    return 0


def _terminated(host, job: dict) -> bool:
    """Whether the job's outcome says it was killed by a signal (its pilot ending), not that it ran."""
    try:
        out = json.loads(host.read_text(f"{job['run_dir']}/{OUT_FILE}"))
    except (FileNotFoundError, ValueError):
        return False
    return out.get("state") == "FAILED" and str(out.get("error", "")).startswith("Terminated:")


def _clean_run_dir(host, job: dict) -> None:
    run_dir = _q(job["run_dir"])
    host.run(f"rm -f {run_dir}/{STARTED_FILE} {run_dir}/{OUT_FILE} {run_dir}/{STORE_FILE}")


def lost(ctx, worker, host, home, job, held: str, record: dict) -> int:
    """A job whose pilot left the queue: finished after all, or back to READY (FAILED after too many)."""
    if host.exists(f"{job['run_dir']}/{OUT_FILE}") and not _terminated(host, job):
        host.run(f"cd {_q(home)} && mv -f {_q(held)} {batch.DONE}/ 2>/dev/null; true")
        return ctx.db.set_state(job, JobState.RUN_FINISHED)
    losses = int(job.get("pilot_losses") or 0) + 1
    why = (f"its pilot {record.get('id')} (queue id {record.get('queue_id')}) left the queue "
           f"({record.get('end_reason') or 'ended'}) while the job ran")  # fmt: skip
    _clean_run_dir(host, job)
    host.remove(f"{home}/{held}")
    if losses >= ctx.project.runner.max_step_attempts:
        message = f"lost with its pilot {losses} times; the last: {why}"
        ok = ctx.db.set_state(job, JobState.FAILED, error=message, failed_step="monitor", pilot_losses=losses,
                              pilot=None)  # fmt: skip
        if ok:
            from jfr_lib.dependencies import release_children

            release_children(ctx.db, job["uuid"])
            ctx.db.refresh_flow_state(job["flow_uuid"])
        return ok
    ctx.log.warning("job %s: %s: back to READY (loss %d)", job["db_id"], why, losses)
    ok = ctx.db.set_state(job, JobState.READY, last_error=why, last_error_step="monitor", pilot_losses=losses,
                          pilot=None, batch_ticket=None)  # fmt: skip
    if ok:
        from jfr_lib.wakeup import notify

        notify(ctx.project.base_dir, "checkout")
    return ok


# --- pilots -------------------------------------------------------------------------------


def check_pilots(ctx, worker, snap) -> dict:
    """Bring the pilot records up to date with the queue and their status files; the records."""
    records = batch.read_pilots(ctx.db, worker.name)
    live = {pid: r for pid, r in records.items() if batch.alive(r)}
    if not live:
        return records
    host, queue = ctx.host(worker), ctx.queue(worker)
    changes = {}
    for pid, record in live.items():
        if not record.get("queue_id"):
            from jfr_lib.actions.scripts import recorded_queue_id

            found = recorded_queue_id(host, queue, f"{pilot_dir(ctx, worker)}/{pid}")
            if found:
                changes[pid] = {"queue_id": found}
            elif time.time() - record.get("submitted_at", 0) > 2 * worker.timeout_execute + 60:
                # nothing in its folder long after: the submission never happened
                changes[pid] = {"state": "ended", "end_reason": "never reached the queue", "ended_on": _now()}
    ids = [changes.get(p, {}).get("queue_id") or r.get("queue_id") for p, r in live.items()]
    ids = [i for i in ids if i]
    statuses = {}
    if ids:
        result = host.run(queue.status_command(ids, worker.scheduler_username))
        statuses = queue.parse_status(result.exit_code, result.stdout, result.stderr, ids)
    for pid, record in live.items():
        change = changes.setdefault(pid, {})
        if change.get("state") == "ended":
            continue
        qid = change.get("queue_id") or record.get("queue_id")
        status = statuses.get(str(qid)) if qid else None
        said = snap.pilots.get(pid)
        if said:
            change.update(jobs_done=said.get("jobs_done"), running=said.get("running"), time_left=said.get("time_left"),
                          host=said.get("host"), leaving=said.get("leaving"), updated=said.get("updated"))  # fmt: skip
        if status is None:
            continue
        if status.active:
            state = "running" if status.running or (said and said.get("state") in ("starting", "running")) else "queued"
            change["state"] = state
        else:
            ended = None
            if cmd := queue.detail_command(qid):
                detail = host.run(cmd)
                ended = queue.parse_detail(detail.exit_code, detail.stdout, detail.stderr)
            reason = ended or (said or {}).get("leaving") or "left the queue"
            change.update(state="ended", end_reason=reason, ended_on=_now())
            ctx.log.info("worker %s: pilot %s (queue id %s) ended: %s", worker.name, pid, qid, reason)
    changes = {p: c for p, c in changes.items() if c}
    if not changes:
        return records

    def apply(pilots):
        for pid, change in changes.items():
            if pid in pilots:
                pilots[pid].update(change)
        _forget_old(pilots)

    return batch.update_pilots(ctx.db, worker.name, apply)


def _forget_old(pilots: dict, keep: int = 200) -> None:
    """Keep the records of ended pilots for ``jfr batch list``, the newest ``keep`` of them."""
    ended = sorted((p for p, r in pilots.items() if not batch.alive(r)), key=lambda p: pilots[p].get("ended_on") or "")
    for pid in ended[:-keep] if len(ended) > keep else []:
        del pilots[pid]


def pilot_dir(ctx, worker) -> str:
    path = worker.batch.work_dir
    return path if worker.is_local else ctx.host(worker).expand(path)


def submit_pilots(ctx, worker, snap, pilots: dict) -> int:
    """Submit pilots for the tickets that wait, within ``max_jobs``; how many were submitted."""
    waiting = len(snap.ready)
    if not waiting or time.monotonic() < getattr(ctx, "pilots_not_before", {}).get(worker.name, 0.0):
        return 0
    live = {pid: r for pid, r in pilots.items() if batch.alive(r)}
    starting = sum(1 for r in live.values() if r.get("state") in ("submitted", "queued"))
    # a running pilot with a free slot takes a waiting ticket within its sleep_time: no new pilot for it
    free = sum(max(0, worker.batch.parallel_jobs - len(snap.running.get(pid, ()))) for pid, r in live.items()
               if r.get("state") == "running" and not (snap.pilots.get(pid) or {}).get("leaving"))  # fmt: skip
    waiting = max(0, waiting - free)
    room = (worker.max_jobs if worker.max_jobs is not None else math.inf) - len(live)
    wanted = math.ceil(waiting / max(1, worker.batch.parallel_jobs)) - starting
    count = int(min(room, wanted))
    for _ in range(max(0, count)):
        submit_pilot(ctx, worker)
    return max(0, count)


def submit_pilot(ctx, worker) -> str:
    """Record a pilot, then submit it (a crash in between leaves a record that still counts)."""
    import shlex

    pid = "p" + secrets.token_hex(5)
    host, queue = ctx.host(worker), ctx.queue(worker)
    folder = f"{pilot_dir(ctx, worker)}/{pid}"
    record = {"id": pid, "worker": worker.name, "state": "submitted", "queue_id": None,
              "submitted_on": _now(), "submitted_at": time.time(), "jobs_done": 0}  # fmt: skip
    batch.update_pilots(ctx.db, worker.name, lambda pilots: pilots.__setitem__(pid, record))
    b = worker.batch
    limit = pilot_seconds(worker)
    python = worker.python or ("python3" if not worker.is_local else __import__("sys").executable)
    args = [python, "-m", "jfr_lib.pilot", handle_dir(ctx, worker), pid, "--parallel", str(b.parallel_jobs),
            "--max-wait", f"{b.max_wait:g}", "--margin", f"{b.time_margin:g}", "--sleep", f"{b.sleep_time:g}",
            "--placement", b.placement]  # fmt: skip
    if b.max_jobs_per_batch is not None:
        args += ["--max-jobs", str(b.max_jobs_per_batch)]
    if limit is not None:
        args += ["--deadline", f"{limit:g}"]
    if b.default_job_time is not None:
        args += ["--default-job-time", f"{b.default_job_time:g}"]
    resources = dict(worker.resources or {}) if isinstance(worker.resources, dict) else worker.resources
    if isinstance(resources, dict) and worker.scheduler_type != "shell":
        resources.setdefault("job_name", f"jfr-pilot-{pid}")
    host.mkdir(folder)
    script = queue.script(" ".join(shlex.quote(a) for a in args), folder, resources=resources,
                          pre_run=worker.pre_run)  # fmt: skip
    host.write_text(f"{folder}/{SCRIPT_NAME}", script)
    from jfr_lib.rundir import SUBMIT_ERR, SUBMIT_OUT

    command = (f"umask 077; {{ {queue.submit_command(SCRIPT_NAME)} ; }} > {SUBMIT_OUT} 2> {SUBMIT_ERR}; rc=$?; "
               f"cat {SUBMIT_OUT}; cat {SUBMIT_ERR} >&2; exit $rc")  # fmt: skip
    result = host.run(command, cwd=folder)
    try:
        queue_id = queue.parse_submit(result.exit_code, result.stdout, result.stderr)
    except QueueError as exc:
        why = f"submission failed: {exc}"
        batch.update_pilots(ctx.db, worker.name, lambda pilots: pilots[pid].update(
            state="ended", end_reason=why, ended_on=_now()))  # fmt: skip
        ctx.log.warning("worker %s: a pilot could not be submitted: %s", worker.name, exc)
        raise
    batch.update_pilots(ctx.db, worker.name, lambda pilots: pilots[pid].update(state="queued", queue_id=queue_id))
    ctx.log.info("worker %s: pilot %s submitted (queue id %s)", worker.name, pid, queue_id)
    return pid
