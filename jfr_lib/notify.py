"""The notifier: a runner process that tells people when flows end, jobs fail, a runner died
or a worker waits for a login (the ``notify`` section of a project file).

Finding events costs what the recent work costs, never the history: each look
reads the jobs that entered COMPLETED, FAILED or REMOTE_ERROR since the
previous look (less :data:`MARGIN`) through the (state, updated_on) index,
grouped by the database without decoding a job document, as the release sweep
of :mod:`jfr_lib.dependencies` does. Only the jobs and flows of rows not seen
before are read. A row is looked at once it is :data:`SETTLE` seconds old, so
that the flow's state, written just after its job's, is there to read.

Every event has a key (a job's db_id, rerun count and state; a flow's db_id,
state and the time it took that state; a worker's login mark; the token of the
runner that died). The keys of what was announced are kept with the time mark
in the queue database (meta ``notify``), written before the messages are handed
to the channels: a restarted runner announces nothing twice (at most, a message
under way when the runner was killed is lost). A flow's key is kept only while
its change can be in a look's window (a flow that changed before the window is
passed over), so the document stays small however many flows end; a job's key
for :data:`KEEP` seconds (a failed job that is changed later, its priority say,
comes back into the window); a login's as long as the worker's mark stays.

Events for one channel are gathered for ``notify.window`` seconds and go out
one message each, or as one digest when there are more than
``notify.digest_after``. The sending is :mod:`jfr_lib.notify_send`'s.
"""

from __future__ import annotations

import os
import time
from datetime import datetime, timezone
from fnmatch import fnmatchcase

from jfr_lib.config_model import NOTIFY_EVENTS

#: Meta key of the notifier's time mark and the keys of the events announced.
META_KEY = "notify"
#: Seconds each look reaches back before the previous one: a write stamped before
#: it and committed after, and clocks of hosts sharing the database that disagree.
MARGIN = 60.0
#: Seconds a job's row waits before it is looked at (its flow's state is written just after it).
SETTLE = 1.0
#: Seconds the key of an announced event is kept (a login mark's as long as the mark stays).
KEEP = 86400.0
#: At most this many keys are kept (the newest).
MAX_KEYS = 100_000
#: Seconds between writes of the time mark when nothing new was announced.
SAVE_EVERY = 30.0
#: Seconds the channels get at the runner's stop to send what they hold.
GRACE = 5.0

FLOW_EVENTS = {"COMPLETED": "flow_completed", "FAILED": "flow_failed"}
JOB_EVENTS = {"FAILED": "job_failed", "REMOTE_ERROR": "job_remote_error"}


def enabled(project) -> bool:
    """Whether the project has notification rules (the runner then starts a notifier)."""
    n = getattr(project, "notify", None)
    return bool(n and n.channels and n.rules)


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, timezone.utc).isoformat(timespec="milliseconds")


def _epoch(iso: str) -> float:
    return datetime.fromisoformat(iso).timestamp()


def _one_line(text, limit: int = 300) -> str:
    from jfr_lib.redact import mask_text

    text = " ".join(str(text or "").split())
    return mask_text(text if len(text) <= limit else text[: limit - 3] + "...")


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


class Notifier:
    """Finds new events in the queue database and routes them to channels.

    Parameters
    ----------
    project
        The project, with its ``notify`` section.
    took_over
        The stale lease the runner took over when it started (a runner that
        died), or None.
    """

    def __init__(self, project, took_over=None):
        self.project = project
        self.notify = project.notify
        self.took_over = took_over
        self.wanted = {e for rule in self.notify.rules for e in (rule.events or NOTIFY_EVENTS)}
        self.mark = None  # ISO time up to which rows were looked at
        self.sent = {}  # event key -> when it was announced (epoch)
        self.checked = set()  # the rows of the last look
        self.dirty = False
        self.saved_at = float("-inf")  # the first look writes the mark
        self.pending = {}  # channel -> (monotonic time of its first event, [events])

    # --- what was announced, in the queue database ------------------------------
    def load(self, db) -> None:
        doc = db.get_meta(META_KEY) or {}
        self.mark = doc.get("mark")
        self.sent = {key: when for key, when in doc.get("sent", [])}

    def save(self, db, force: bool = False) -> None:
        """Write the mark and the keys (at once after new events, else every :data:`SAVE_EVERY` s)."""
        if not (self.dirty or force or time.monotonic() - self.saved_at > SAVE_EVERY):
            return
        now = time.time()
        mark = _epoch(self.mark) if self.mark else now
        kept = sorted(((k, t) for k, t in self.sent.items() if self._keep(k, t, now, mark)), key=lambda kt: kt[1])
        self.sent = dict(kept[-MAX_KEYS:])
        db.set_meta(META_KEY, {"mark": self.mark, "sent": [list(kt) for kt in self.sent.items()]})
        self.dirty, self.saved_at = False, time.monotonic()

    @staticmethod
    def _keep(key: str, when: float, now: float, mark: float) -> bool:
        """Whether a key is still needed: a flow's only while its change can be in a look's window
        (older changes are passed over), a login's while the mark stays, the others for :data:`KEEP`."""
        if key[0] == "l":
            return True
        if key[0] == "f":
            return when >= mark - 2 * MARGIN
        return now - when < KEEP

    # --- finding events -----------------------------------------------------------
    def scan(self, db, settle: float | None = None) -> list:
        """The events that happened since the last look, each announced once.

        Nothing is recorded unless the whole look succeeds: a fault of the
        database half-way leaves the next look to find the same events.
        ``settle`` replaces :data:`SETTLE` (the last look, when the runner stops).
        """
        now = time.time()
        until = _iso(now - (SETTLE if settle is None else settle))
        since = _iso(_epoch(self.mark or until) - MARGIN)
        states = [s for s, e in {**JOB_EVENTS, **FLOW_EVENTS}.items() if e in self.wanted]
        if "flow_failed" in self.wanted and "FAILED" not in states:
            states.append("FAILED")
        query = {"state": states, "updated_since": since, "updated_until": until}
        rows = db.count_by(["db_id", "flow_uuid", "state", "updated_on"], query) if states else {}
        new = {}  # event keys of this look
        events, flows = [], {}
        for db_id, flow_uuid, state, _updated in sorted((r for r in rows if r not in self.checked), key=lambda r: r[3]):
            flows.setdefault(flow_uuid, None)
            if JOB_EVENTS.get(state) not in self.wanted:
                continue
            job = db.get_job(db_id=db_id)
            if job is None or job["state"] != state:
                continue
            key = f"j{db_id}.{int(job.get('reruns') or 0)}.{state}"
            if key not in self.sent and key not in new:
                new[key] = now
                events.append(self._job_event(job, self._flow(db, flow_uuid, flows)))
        if self.wanted & set(FLOW_EVENTS.values()):
            for uuid in list(flows):
                flow = self._flow(db, uuid, flows)
                fresh = flow and flow["updated_on"] >= since  # else it ended long ago; a job of it was changed
                name = FLOW_EVENTS.get(flow["state"]) if fresh else None
                key = f"f{flow['db_id']}.{flow['state']}.{flow['updated_on']}" if name else None
                if name in self.wanted and key not in self.sent and key not in new:
                    new[key] = now
                    events.append(self._flow_event(db, flow, name))
        events += self._login_events(db, new, now)
        events += self._runner_events(new, now)
        self.checked, self.mark = set(rows), max(self.mark or until, until)
        if new:
            self.sent.update(new)
            self.dirty = True
        self.took_over = None
        return events

    @staticmethod
    def _flow(db, uuid, cache: dict):
        if cache.get(uuid) is None:
            cache[uuid] = db.get_flow(uuid) or {}
        return cache[uuid] or None

    def _job_event(self, job: dict, flow) -> dict:
        flow = flow or {}
        state = job["state"]
        error = _one_line(job.get("error")) or "no error recorded"
        text = (f"job {job['db_id']} ({job.get('name')}) {state} on worker {job.get('worker')}"
                f" in flow {flow.get('db_id')} ({flow.get('name')}): {error}")  # fmt: skip
        return {"event": JOB_EVENTS[state], "time": job.get("updated_on"), "state": state, "job_id": job["db_id"],
                "job_uuid": job["uuid"], "job_index": job["index"], "job_name": job.get("name"),
                "worker": job.get("worker"), "error": error, "flow_id": flow.get("db_id"),
                "flow_uuid": job.get("flow_uuid"), "flow_name": flow.get("name"),
                "metadata": {**(flow.get("metadata") or {}), **(job.get("metadata") or {})}, "text": text}  # fmt: skip

    def _flow_event(self, db, flow: dict, name: str) -> dict:
        n_jobs = flow.get("n_jobs")
        text = f"flow {flow['db_id']} ({flow.get('name')}) {flow['state']}"
        if flow["state"] == "FAILED":
            failed = db.count_jobs({"flow_uuid": flow["uuid"], "state": "FAILED"})
            text += f": {failed} of {n_jobs} jobs FAILED"
        else:
            text += f" ({n_jobs} jobs)"
        return {"event": name, "time": flow.get("updated_on"), "state": flow["state"], "flow_id": flow["db_id"],
                "flow_uuid": flow["uuid"], "flow_name": flow.get("name"), "n_jobs": n_jobs,
                "metadata": flow.get("metadata") or {}, "text": text}  # fmt: skip

    def _login_events(self, db, new: dict, now: float) -> list:
        if "login_needed" not in self.wanted:
            return []
        from jfr_lib.login_marks import needed

        events, current = [], set()
        for mark in needed(db, list(self.project.workers)):
            key = f"l{mark['worker']}.{mark.get('since')}"
            current.add(key)
            if key not in self.sent and key not in new:
                new[key] = now
                since = _iso(float(mark.get("since") or now))
                text = f"worker {mark['worker']} needs a login (since {since}): {_one_line(mark.get('reason'))}"
                events.append({"event": "login_needed", "time": since, "worker": mark["worker"],
                               "reason": _one_line(mark.get("reason")), "text": text})  # fmt: skip
        for key in [k for k in self.sent if k[0] == "l" and k not in current]:  # the login was done
            del self.sent[key]
            self.dirty = True
        return events

    def _runner_events(self, new: dict, now: float) -> list:
        lease = self.took_over
        if not lease or "runner_stopped" not in self.wanted:
            return []
        key = f"r{lease.get('token')}"
        if key in self.sent:
            return []
        new[key] = now
        beat = _iso(float(lease.get("heartbeat") or 0))
        text = (f"the runner on {lease.get('host')} (pid {lease.get('pid')}) stopped unexpectedly: its last "
                f"heartbeat was at {beat}; a new runner took over on {os.uname().nodename} (pid {os.getppid()})")
        return [{"event": "runner_stopped", "time": beat, "host": lease.get("host"), "pid": lease.get("pid"),
                 "started_on": lease.get("started_on"), "text": text}]  # fmt: skip

    # --- routing ------------------------------------------------------------------
    def route(self, events: list, now: float) -> None:
        """Gather each event for every channel of every rule that chooses it (once per channel)."""
        for event in events:
            chosen = []
            for rule in self.notify.rules:
                if matches(rule, event):
                    chosen += [c for c in (rule.channels or self.notify.channels) if c not in chosen]
            for name in chosen:
                self.pending.setdefault(name, (now, []))[1].append(event)

    def flush(self, senders: dict, now: float, everything: bool = False) -> None:
        """Hand the events gathered for ``window`` seconds (or all) to the channels' senders."""
        from jfr_lib.notify_send import compose

        n = self.notify
        for name, (first, events) in list(self.pending.items()):
            if everything or now - first >= n.window:
                del self.pending[name]
                for message in compose(self.project.name, events, n.digest_after, n.digest_lines):
                    senders[name].put(message)


def serve(project, stop_flag, log, status_file=None, took_over=None) -> None:
    """The body of the notifier process: look, route, send; until ``stop_flag()``.

    Parameters
    ----------
    project
        The project (with notification rules: see :func:`enabled`).
    stop_flag
        Called between looks; true when the process must end.
    log
        Where sending failures and database faults are reported.
    status_file
        Where ``jfr runner info`` reads what the process does.
    took_over
        The stale lease the runner took over at its start, if any.
    """
    from jfr_lib import faults
    from jfr_lib.notify_send import Sender
    from jfr_lib.queue_db import open_queue_db

    notifier = Notifier(project, took_over)
    senders = {name: Sender(ch, project.notify.retry_delays, log) for name, ch in project.notify.channels.items()}
    db, loaded, in_a_row = None, False, 0
    try:
        while not stop_flag():
            try:
                if db is None:
                    db = open_queue_db(project)
                if not loaded:
                    notifier.load(db)
                    loaded = True
                notifier.route(notifier.scan(db), time.monotonic())
                notifier.save(db)
            except Exception as exc:
                if not faults.is_fault(exc):
                    raise
                if not in_a_row:
                    log.warning("notify: the queue database cannot be used now: %s", faults.describe(exc))
                db = _close(db)
                _wait(stop_flag, faults.delay(in_a_row))
                in_a_row += 1
                continue
            if in_a_row:
                log.info("notify: the queue database answers again")
                in_a_row = 0
            notifier.flush(senders, time.monotonic())
            _write_status(status_file, senders, notifier)
            _wait(stop_flag, project.notify.interval)
    finally:
        if loaded and db is not None:
            try:  # a last look, without waiting for rows to settle: a runner stopping when idle ends with a flow
                notifier.route(notifier.scan(db, settle=0.0), time.monotonic())
                notifier.save(db, force=True)
            except Exception as exc:
                log.warning("notify: the last look before stopping failed: %s", faults.describe(exc))
        notifier.flush(senders, time.monotonic(), everything=True)
        deadline = time.monotonic() + GRACE
        for sender in senders.values():
            sender.close(deadline)
        _close(db)


def _close(db):
    try:
        if db is not None:
            db.close()
    except Exception:
        pass
    return None


def _wait(stop_flag, seconds: float) -> None:
    """Sleep, looking at the stop flag every tenth of a second."""
    deadline = time.monotonic() + seconds
    while not stop_flag() and time.monotonic() < deadline:
        time.sleep(min(0.1, max(0.0, deadline - time.monotonic())))


def _write_status(status_file, senders: dict, notifier: Notifier) -> None:
    from jfr_lib.proc import write_status

    write_status(status_file, {"pid": os.getpid(), "action": "notify", "state": "watching", "job": None,
                               "sent": sum(s.sent for s in senders.values()),
                               "dropped": sum(s.dropped for s in senders.values()),
                               "gathering": sum(len(e) for _, e in notifier.pending.values())})  # fmt: skip
