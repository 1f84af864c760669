"""The notifier: a runner process that tells people when flows end, jobs fail, a runner died
or a worker waits for a login (the ``notify`` section of a project file).

Finding events costs what the recent work costs, never the history: each look
reads, through (state, updated_on) indexes, the flows that entered COMPLETED or
FAILED and the jobs that entered FAILED or REMOTE_ERROR since the previous look
(less :data:`MARGIN`); the jobs are grouped by the database without decoding a
job document, as the release sweep of :mod:`jfr_lib.dependencies` does, and only
those of rows not seen by the last look are read. A flow is found by its own
row, so its end is found however late its state is written after its jobs'.

Every event has a key: a job's db_id, state and the time it took that state
(``state_on``, written by the queue database at every change of state; a job of
an older database without it: its ``updated_on``); a flow's db_id, state and
the time it took that state; a worker's login mark; the token of the runner that
died. A job or flow whose change is older than the look's window is passed over
(a FAILED job whose priority is changed later is no new event), so their keys
are kept only while the change can be in a window; a login's as long as the
worker's mark stays; a dead runner's for :data:`KEEP` seconds. The keys, the
time mark and the *outbox* (each event not yet delivered to one of its
channels) are one meta document (``notify``) of the queue database, at most
:data:`MAX_KEYS` keys and :data:`OUTBOX_SIZE` events, written when the keys or
the outbox changed (or every :data:`SAVE_EVERY` seconds of looks, for the
mark) and always before the events are handed to the channels. An event leaves
the outbox when its channel delivered it (or dropped it after its last retry);
what is left when the runner stops or dies is sent when the notifier starts
again. So nothing is announced twice, nor lost, with one exception: a message
delivered just before the runner was killed, before its removal from the outbox
was written, goes out again.

A mark read from the database that is ahead of this host's clock (written by a
host whose clock is ahead) is taken as now: looks would otherwise skip what
happens until this clock catches up.

Events for one channel are gathered for ``notify.window`` seconds and go out
one message each, or as one digest when there are more than
``notify.digest_after``. The events are :mod:`jfr_lib.notify_events`'s, the
sending :mod:`jfr_lib.notify_send`'s.
"""

from __future__ import annotations

import os
import time

from jfr_lib.config_model import NOTIFY_EVENTS
from jfr_lib.notify_events import (
    FLOW_EVENTS,
    JOB_EVENTS,
    epoch,
    flow_event,
    iso,
    job_event,
    login_event,
    matches,
    runner_event,
)

#: Meta key of the notifier's time mark, the keys of the events announced and its outbox.
META_KEY = "notify"
#: Seconds each look reaches back before the previous one: a write stamped before
#: it and committed after, and clocks of hosts sharing the database that disagree.
MARGIN = 60.0
#: Seconds a job's row waits before it is looked at (a write stamped now may commit later).
SETTLE = 1.0
#: Seconds the key of a dead runner is kept.
KEEP = 86400.0
#: At most this many keys are kept (the newest): those of a few minutes' events.
MAX_KEYS = 10_000
#: At most this many undelivered events are kept for a restart (the newest).
OUTBOX_SIZE = 500
#: Seconds of looks after which the time mark is written though nothing else changed.
SAVE_EVERY = 30.0
#: Seconds the channels get at the runner's stop to send what they hold.
GRACE = 5.0


def enabled(project) -> bool:
    """Whether the project has notification rules (the runner then starts a notifier)."""
    n = getattr(project, "notify", None)
    return bool(n and n.channels and n.rules)


class Notifier:
    """Finds new events in the queue database, routes them to channels and keeps the outbox.

    Parameters
    ----------
    project
        The project, with its ``notify`` section.
    took_over
        The stale lease the runner took over when it started (a runner that
        died), or None.
    log
        Where an outbox too full to be kept whole is reported (None: nowhere).
    """

    def __init__(self, project, took_over=None, log=None):
        self.project = project
        self.notify = project.notify
        self.took_over = took_over
        self.log = log
        self.wanted = {e for rule in self.notify.rules for e in (rule.events or NOTIFY_EVENTS)}
        self.mark = None  # ISO time up to which rows were looked at
        self.sent = {}  # event key -> when it was announced (epoch)
        self.outbox = {}  # entry id -> {"channel", "event", "at"}: not delivered yet
        self.checked = set()  # the job rows of the last look
        self.changed = False  # keys or outbox differ from what was written
        self.saved_mark = None  # the mark last written (epoch)
        self.pending = {}  # channel -> (monotonic time of its first event, [entry ids])
        self._serial = 0

    # --- what was announced, in the queue database ------------------------------
    def load(self, db) -> None:
        """Read the mark, the keys and the outbox; what the outbox holds goes out at the next flush."""
        doc = db.get_meta(META_KEY) or {}
        now = time.time()
        self.mark = doc.get("mark")
        if self.mark and epoch(self.mark) > now:  # written by a host whose clock is ahead
            self.mark = iso(now)
        self.saved_mark = epoch(self.mark) if self.mark else None
        self.sent = {key: when for key, when in doc.get("sent", [])}
        for eid, entry in doc.get("outbox", []):
            if entry.get("channel") in self.notify.channels:  # a channel since removed from the file: dropped
                self.outbox[eid] = entry
                self.pending.setdefault(entry["channel"], (float("-inf"), []))[1].append(eid)

    def save(self, db, force: bool = False) -> None:
        """Write the mark, the keys and the outbox, if the keys or the outbox changed (or ``force``,
        or the mark moved on by :data:`SAVE_EVERY` seconds)."""
        mark = epoch(self.mark) if self.mark else time.time()
        moved = self.saved_mark is None or mark - self.saved_mark >= SAVE_EVERY
        if not (self.changed or force or moved):
            return
        now = time.time()
        kept = sorted(((k, t) for k, t in self.sent.items() if self._keep(k, t, now, mark)), key=lambda kt: kt[1])
        self.sent = dict(kept[-MAX_KEYS:])
        box = sorted(self.outbox.items(), key=lambda item: item[1]["at"])
        if len(box) > OUTBOX_SIZE and self.log:
            self.log.warning("notify: %d messages are not delivered yet: only the newest %d are kept for a restart",
                             len(box), OUTBOX_SIZE)  # fmt: skip
        db.set_meta(META_KEY, {"mark": self.mark, "sent": [list(kt) for kt in self.sent.items()],
                               "outbox": [list(item) for item in box[-OUTBOX_SIZE:]]})  # fmt: skip
        self.changed, self.saved_mark = False, mark

    @staticmethod
    def _keep(key: str, when: float, now: float, mark: float) -> bool:
        """Whether a key is still needed: a job's or a flow's only while its change can be in a look's
        window (older changes are passed over), a login's while the mark stays, a runner's :data:`KEEP` s."""
        if key[0] == "l":
            return True
        if key[0] in "fj":
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
        until = iso(now - (SETTLE if settle is None else settle))
        since = iso(epoch(self.mark or until) - MARGIN)
        new = {}  # event keys of this look
        events, flows = [], {}
        states = [s for s, e in JOB_EVENTS.items() if e in self.wanted]
        query = {"state": states, "updated_since": since, "updated_until": until}
        rows = db.count_by(["db_id", "flow_uuid", "state", "updated_on"], query) if states else {}
        for db_id, flow_uuid, state, _updated in sorted((r for r in rows if r not in self.checked), key=lambda r: r[3]):
            job = db.get_job(db_id=db_id)
            if job is None or job["state"] != state:
                continue
            changed = job.get("state_on") or job["updated_on"]
            if changed < since:  # its state is older than the window: the job was edited since
                continue
            key = f"j{db_id}.{state}.{changed}"
            if key not in self.sent and key not in new:
                new[key] = now
                events.append(job_event(job, self._flow(db, flow_uuid, flows)))
        states = [s for s, e in FLOW_EVENTS.items() if e in self.wanted]
        if states:
            query = {"state": states, "updated_since": since, "updated_until": until}
            for flow in db.find_flows(query, sort=[("updated_on", 1)]):
                key = f"f{flow['db_id']}.{flow['state']}.{flow['updated_on']}"
                if key not in self.sent and key not in new:
                    new[key] = now
                    events.append(flow_event(db, flow))
        events += self._login_events(db, new, now)
        events += self._runner_events(new, now)
        self.checked = set(rows)
        self.mark = min(max(self.mark or until, until), iso(now))
        if new:
            self.sent.update(new)
            self.changed = True
        self.took_over = None
        return events

    @staticmethod
    def _flow(db, uuid, cache: dict):
        if cache.get(uuid) is None:
            cache[uuid] = db.get_flow(uuid) or {}
        return cache[uuid] or None

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
                events.append(login_event(mark, now))
        for key in [k for k in self.sent if k[0] == "l" and k not in current]:  # the login was done
            del self.sent[key]
            self.changed = True
        return events

    def _runner_events(self, new: dict, now: float) -> list:
        lease = self.took_over
        if not lease or "runner_stopped" not in self.wanted:
            return []
        key = f"r{lease.get('token')}"
        if key in self.sent:
            return []
        new[key] = now
        return [runner_event(lease)]

    # --- routing ------------------------------------------------------------------
    def route(self, events: list, now: float) -> None:
        """Put each event in the outbox and gather it for every channel of every rule that chooses it
        (once per channel)."""
        for event in events:
            chosen = []
            for rule in self.notify.rules:
                if matches(rule, event):
                    chosen += [c for c in (rule.channels or self.notify.channels) if c not in chosen]
            for name in chosen:
                self._serial += 1
                eid = f"{os.getpid()}.{time.time():.3f}.{self._serial}"
                self.outbox[eid] = {"channel": name, "event": event, "at": time.time()}
                self.pending.setdefault(name, (now, []))[1].append(eid)
                self.changed = True

    def flush(self, senders: dict, now: float, everything: bool = False) -> None:
        """Hand the events gathered for ``window`` seconds (or all) to the channels' senders."""
        from jfr_lib.notify_send import compose

        n = self.notify
        for name, (first, ids) in list(self.pending.items()):
            if everything or now - first >= n.window:
                del self.pending[name]
                ids = [i for i in ids if i in self.outbox]
                messages = compose(self.project.name, [self.outbox[i]["event"] for i in ids], n.digest_after,
                                   n.digest_lines)  # fmt: skip
                for message, covered in zip(messages, [[i] for i in ids] if len(messages) == len(ids) else [ids]):
                    message.ids = covered
                    senders[name].put(message)

    def delivered(self, senders: dict) -> None:
        """Take out of the outbox what the senders delivered (or dropped after their last attempt)."""
        for sender in senders.values():
            for ids in sender.finished():
                for eid in ids:
                    if self.outbox.pop(eid, None) is not None:
                        self.changed = True


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

    notifier = Notifier(project, took_over, log)
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
                notifier.delivered(senders)
                notifier.route(notifier.scan(db), time.monotonic())
                notifier.save(db)  # the keys and the outbox, before anything is handed to a channel
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
            # a delivery ends the wait: its removal from the outbox is written at once
            _wait(stop_flag, project.notify.interval, lambda: any(s.has_finished() for s in senders.values()))
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
        if loaded and db is not None:
            try:  # what was not delivered stays in the outbox, for the next start
                notifier.delivered(senders)
                notifier.save(db, force=True)
            except Exception as exc:
                log.warning("notify: the outbox could not be written before stopping: %s", faults.describe(exc))
        _close(db)


def _close(db):
    try:
        if db is not None:
            db.close()
    except Exception:
        pass
    return None


def _wait(stop_flag, seconds: float, wake=None) -> None:
    """Sleep, looking at the stop flag (and ``wake()``) every tenth of a second."""
    deadline = time.monotonic() + seconds
    while not stop_flag() and time.monotonic() < deadline and not (wake and wake()):
        time.sleep(min(0.1, max(0.0, deadline - time.monotonic())))


def _write_status(status_file, senders: dict, notifier: Notifier) -> None:
    from jfr_lib.proc import write_status

    write_status(status_file, {"pid": os.getpid(), "action": "notify", "state": "watching", "job": None,
                               "sent": sum(s.sent for s in senders.values()),
                               "dropped": sum(s.dropped for s in senders.values()),
                               "gathering": sum(len(e) for _, e in notifier.pending.values()),
                               "undelivered": len(notifier.outbox)})  # fmt: skip
