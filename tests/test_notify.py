"""Notifications: real runners telling a local SMTP server, a local HTTP server and a command what
happened, each event once (across restarts too), bursts as digests, dead channels costing nothing,
rules honoured, and the project file's ``notify`` section checked."""

from __future__ import annotations

import json
import os
import signal
import socket
import sys
import threading
import time
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from jobflow import Flow

from jfr_lib import submit_flow

import testjobs as tj
from conftest import ROOT, RUNNER_CHILDREN, children_of, gone, wait_for

SECRET = "s3cret-Pw-42"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --- local servers ------------------------------------------------------------------
class Mailbox:
    """What the SMTP server received: each message's subject and body, and the logins."""

    def __init__(self):
        self.messages, self.logins = [], []

    async def handle_DATA(self, server, session, envelope):
        from email import message_from_bytes, policy

        mail = message_from_bytes(envelope.original_content, policy=policy.default)
        self.messages.append({"subject": str(mail["Subject"]), "body": mail.get_content(),
                              "to": envelope.rcpt_tos})  # fmt: skip
        return "250 OK"

    def subjects(self) -> list:
        return [m["subject"] for m in self.messages]


@pytest.fixture
def smtp():
    """An SMTP server on 127.0.0.1 that wants a login (user ``jfr``, password :data:`SECRET`)."""
    from aiosmtpd.controller import Controller
    from aiosmtpd.smtp import AuthResult

    box = Mailbox()

    def authenticate(server, session, envelope, mechanism, auth_data):
        ok = auth_data.login == b"jfr" and auth_data.password == SECRET.encode()
        if ok:
            box.logins.append(auth_data.login.decode())
        return AuthResult(success=ok)

    controller = Controller(box, hostname="127.0.0.1", port=free_port(), authenticator=authenticate,
                            auth_required=True, auth_require_tls=False)  # fmt: skip
    controller.start()
    box.port = controller.port
    yield box
    controller.stop()


class Hooks:
    """What the HTTP server received: path -> list of JSON bodies."""

    def __init__(self):
        self.posts = {}
        self.lock = threading.Lock()

    def at(self, path: str) -> list:
        with self.lock:
            return list(self.posts.get(path, []))


@pytest.fixture
def web():
    hooks = Hooks()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            with hooks.lock:
                hooks.posts.setdefault(self.path, []).append(body)
            self.send_response(200)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    hooks.url = f"http://127.0.0.1:{server.server_address[1]}"
    yield hooks
    server.shutdown()
    server.server_close()


class Stuck:
    """A server that accepts connections and never answers; counts those still open."""

    def __init__(self):
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.open, self.accepted = [], 0
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.accepted += 1
            self.open.append(conn)

    def still_open(self) -> int:
        alive = []
        for conn in self.open:
            conn.setblocking(False)
            try:
                if conn.recv(1, socket.MSG_PEEK) == b"":
                    continue  # the client closed it
            except BlockingIOError:
                pass
            except OSError:
                continue
            alive.append(conn)
        return len(alive)

    def close(self):
        self.sock.close()
        for conn in self.open:
            conn.close()


# --- helpers ---------------------------------------------------------------------
def with_notify(penv, section: str) -> None:
    """Append a ``notify`` section (YAML, indented under it) to the test project's file."""
    penv.path.write_text(penv.path.read_text() + "notify:\n" + section)
    penv._project = None
    assert penv.project.notify is not None


def fast(**extra) -> str:
    opts = {"interval": 0.3, "window": 1, "retry_delays": "[0.2, 0.2]", **extra}
    return "".join(f"  {k}: {v}\n" for k, v in opts.items())


def flow_states(penv) -> dict:
    with penv.db() as db:
        return {f["name"]: f["state"] for f in db.find_flows()}


def notify_mark(penv) -> str:
    with penv.db() as db:
        return (db.get_meta("notify") or {}).get("mark") or ""


def penv_meta(penv) -> dict:
    with penv.db() as db:
        return db.get_meta("notify") or {}


def log_text(penv) -> str:
    path = penv.project.log_path
    return path.read_text() if path.exists() else ""


def utc_now() -> str:
    from jfr_lib.queue_db.base import now_iso

    return now_iso()


# --- the project file ----------------------------------------------------------------
def test_notify_section_errors_are_all_reported_naming_the_key(tmp_path):
    from test_config_check import problems_of

    text = (
        "name: demo\nworkers:\n  w:\n    work_dir: /tmp/w\nnotify:\n  channels:\n"
        "    pigeon: {type: carrier}\n"
        "    hook: {type: webhook, host: example.org}\n"
        "    ftp: {type: webhook, url: 'ftp://example.org/x'}\n"
        f"    mail: {{type: email, port: 70000, security: tls, password: {SECRET}}}\n"
        "    run: {type: command}\n"
        "  rules:\n"
        "    - {events: [job_failed, flow_exploded], channels: [mail, sms]}\n"
        "    - {flows: 'relax*', events: login_needed}\n"
        "    - 12\n"
        "  digest_after: 0\n  retry_delays: [1, -2]\n  window: .nan\n  colour: red\n"
    )
    problems = problems_of(tmp_path, text)
    assert problems == [
        "notify.colour: unknown key",
        "notify.window: must be a finite number",
        "notify.channels.pigeon.type: must be one of email, webhook, command",
        "notify.channels.hook.host: is not used by a channel of type webhook",
        "notify.channels.hook.url: is required for a webhook channel",
        "notify.channels.ftp.url: must be an http:// or https:// URL",
        "notify.channels.mail.host: is required for an email channel",
        "notify.channels.mail.to: must be an e-mail address or a list of them",
        "notify.channels.mail.security: must be one of starttls, ssl, none",
        "notify.channels.mail.port: must be a port number, from 1 to 65535",
        "notify.channels.mail.password: needs a username to log in with",
        "notify.channels.run.command: must be a shell line or a non-empty list of strings",
        "notify.rules[0].events[1]: must be one of flow_completed, flow_failed, job_failed, job_remote_error, "
        "runner_stopped, login_needed",
        "notify.rules[0].channels[1]: names no channel of notify.channels",
        "notify.rules[1].events: login_needed: no flow is concerned, so flows and metadata never match: use a rule "
        "without them",
        "notify.rules[2]: must be a mapping",
        "notify.digest_after: must be at least 1",
        "notify.retry_delays: must be a list of finite, non-negative numbers",
    ]
    assert not any(SECRET in p for p in problems)


def test_notify_section_loads_from_toml_and_is_shown_without_secrets(tmp_path):
    from jfr_lib.config import load_project_file
    from jfr_lib.notify import enabled
    from jfr_lib.notify_send import shown

    path = tmp_path / "demo.toml"
    path.write_text(
        'name = "demo"\n[workers.w]\nwork_dir = "/tmp/w"\n'
        '[notify.channels.mail]\ntype = "email"\nhost = "smtp.example.org"\nto = "ops@example.org"\n'
        f'username = "me"\npassword = "{SECRET}"\n'
        f'[notify.channels.hook]\ntype = "webhook"\nurl = "https://hooks.example.org/services/T0/{SECRET}"\n'
        f'headers = {{Authorization = "Bearer {SECRET}"}}\n'
    )
    project = load_project_file(path)
    assert enabled(project)
    mail = project.notify.channels["mail"]
    assert (mail.to, mail.security, mail.timeout) == (["ops@example.org"], "starttls", 10.0)
    assert len(project.notify.rules) == 1 and not project.notify.rules[0].events  # no rules: all to all
    text = json.dumps(shown(project))
    assert SECRET not in text and SECRET not in repr(project.notify)
    assert "https://hooks.example.org/***" in text and "smtp.example.org" in text
    no_notify = tmp_path / "plain.yaml"
    no_notify.write_text("name: plain\nworkers:\n  w:\n    work_dir: /tmp/w\n")
    assert not enabled(load_project_file(no_notify))


# --- rules and messages ---------------------------------------------------------------
def test_rules_choose_by_event_flow_name_and_metadata():
    from jfr_lib.config_model import NotifyRule
    from jfr_lib.notify import matches

    failed = {"event": "job_failed", "flow_uuid": "u", "flow_name": "relax-Si",
              "metadata": {"team": "blue", "run": {"tag": 3}}}  # fmt: skip
    login = {"event": "login_needed", "worker": "cluster"}
    assert matches(NotifyRule(), failed) and matches(NotifyRule(), login)
    assert matches(NotifyRule(events=["job_failed"]), failed)
    assert not matches(NotifyRule(events=["flow_failed"]), failed)
    assert matches(NotifyRule(flows=["relax*"]), failed)
    assert not matches(NotifyRule(flows=["band*", "dos"]), failed)
    assert not matches(NotifyRule(flows=["*"]), login)  # a filter on flows never chooses a login
    assert matches(NotifyRule(metadata={"team": ["red", "blue"], "run.tag": 3}), failed)
    assert matches(NotifyRule(metadata={"run.tag": "3"}), failed)  # a value written as text in the file
    assert not matches(NotifyRule(metadata={"team": "red"}), failed)
    assert not matches(NotifyRule(metadata={"owner": "me"}), failed)


def test_many_events_make_one_digest_with_counts_and_the_first_ones():
    from jfr_lib.notify_send import command_env, compose

    events = [{"event": "job_failed", "text": f"job {i} (fail) FAILED", "job_id": i} for i in range(50)]
    events.append({"event": "flow_failed", "text": "flow 1 (burst) FAILED", "flow_id": 1})
    assert len(compose("demo", events[:3], 5, 10)) == 3
    (one,) = compose("demo", events[:1], 5, 10)
    assert one.subject == "jfr demo: job 0 (fail) FAILED"
    assert command_env(one)["JFR_JOB_ID"] == "0" and command_env(one)["JFR_EVENT"] == "job_failed"
    (digest,) = compose("demo", events, 5, 10)
    assert digest.subject == "jfr demo: 51 events: 50 job FAILED, 1 flow FAILED"
    lines = digest.text.splitlines()
    assert lines[1:11] == [f"- job {i} (fail) FAILED" for i in range(10)]
    assert "41 more" in lines[11] and len(lines) == 12
    assert digest.payload["counts"] == {"job_failed": 50, "flow_failed": 1}
    assert digest.payload["count"] == 51 and len(digest.payload["events"]) == 10


# --- finding events in the queue database -----------------------------------------------
def _flow_with_jobs(db, name: str, n: int, state: str = "READY", metadata=None) -> tuple:
    import uuid

    flow_uuid = uuid.uuid4().hex
    jobs = [{"uuid": uuid.uuid4().hex, "index": 1, "name": f"{name}-{i}", "state": state, "worker": "local",
             "flow_uuid": flow_uuid, "parents": []} for i in range(n)]  # fmt: skip
    ids = db.insert_flow({"uuid": flow_uuid, "name": name, "state": state, "metadata": metadata or {},
                          "n_jobs": n}, jobs)  # fmt: skip
    return flow_uuid, ids


def test_scan_reads_only_recent_rows_and_announces_each_event_once(penv, monkeypatch):
    from jfr_lib import notify

    monkeypatch.setattr(notify, "SETTLE", -1.0)  # rows are looked at at once (in the same millisecond too)
    with_notify(penv, "  channels:\n    hook: {type: webhook, url: 'http://127.0.0.1:9/x'}\n")
    with penv.db() as db:
        old_flow, _ = _flow_with_jobs(db, "history", 20000, state="FAILED")
        db.conn.execute("UPDATE jobs SET updated_on = '2020-01-01T00:00:00.000+00:00'")
        db.conn.execute("UPDATE flows SET updated_on = '2020-01-01T00:00:00.000+00:00'")
        first = notify.Notifier(penv.project)
        first.load(db)
        assert first.scan(db) == []

        reads = []
        for name in ("get_job", "get_flow"):
            real = getattr(db, name)
            monkeypatch.setattr(db, name, lambda *a, _real=real, _name=name, **k: reads.append(_name) or _real(*a, **k))
        steps = []
        db.conn.set_progress_handler(lambda: steps.append(1), 1000)
        assert first.scan(db) == []  # 20,000 failed jobs of the past: nothing read but the index
        db.conn.set_progress_handler(None, 0)
        assert reads == [] and len(steps) < 10, len(steps)  # a full scan of the failed jobs: ~100

        flow_uuid, (job_id,) = _flow_with_jobs(db, "fresh", 1, metadata={"team": "blue"})
        job = db.get_job(db_id=job_id)
        db.set_state(job, "FAILED", error=f"boom with password={SECRET}")
        db.refresh_flow_state(flow_uuid)
        events = first.scan(db)
        assert sorted(e["event"] for e in events) == ["flow_failed", "job_failed"]
        failed = next(e for e in events if e["event"] == "job_failed")
        assert failed["flow_name"] == "fresh" and failed["metadata"] == {"team": "blue"}
        assert SECRET not in failed["text"] and "password=***" in failed["text"]
        assert first.scan(db) == []
        first.save(db)

        again = notify.Notifier(penv.project)  # a restarted runner: the keys come from the database
        again.load(db)
        assert again.scan(db) == []
        job = db.get_job(db_id=job_id)  # a rerun that fails again is a new event
        db.update_job(job_id, {"state": "READY", "reruns": 1})
        db.refresh_flow_state(flow_uuid)
        db.set_state(db.get_job(db_id=job_id), "FAILED", error="again")
        db.refresh_flow_state(flow_uuid)
        events = again.scan(db)
        assert [e["event"] for e in events] == ["job_failed", "flow_failed"]
        assert "again" in events[0]["text"]
    assert old_flow


def test_keys_leave_with_the_window_and_old_jobs_and_flows_are_passed_over(penv, monkeypatch):
    from jfr_lib import notify

    monkeypatch.setattr(notify, "SETTLE", -1.0)
    with_notify(penv, "  channels:\n    hook: {type: webhook, url: 'http://127.0.0.1:9/x'}\n")
    with penv.db() as db:
        done_flow, (done_id,) = _flow_with_jobs(db, "done", 1)
        bad_flow, (bad_id,) = _flow_with_jobs(db, "bad", 1)
        db.set_state(db.get_job(db_id=done_id), "COMPLETED")
        db.set_state(db.get_job(db_id=bad_id), "FAILED", error="boom")
        for uuid in (done_flow, bad_flow):
            db.refresh_flow_state(uuid)
        n = notify.Notifier(penv.project)
        n.load(db)
        assert len(n.scan(db)) == 3
        n.mark = notify.iso(time.time() + 3 * notify.MARGIN)  # looks went on for a while
        n.save(db, force=True)
        assert db.get_meta("notify")["sent"] == []  # the jobs' keys leave with the window too
        db.conn.execute("UPDATE flows SET updated_on = '2020-01-01T00:00:00.000+00:00'")
        for db_id in (done_id, bad_id):  # they took their state long ago
            db.update_job(db_id, {"state_on": "2020-01-01T00:00:00.000+00:00"})
        restarted = notify.Notifier(penv.project)
        restarted.load(db)
        restarted.mark = None  # the window starts now: the jobs changed just now are in it
        db.update_job(done_id, {"priority": 5})  # jobs of flows that ended long ago come back into the window
        db.update_job(bad_id, {"priority": 5})
        assert restarted.scan(db) == []


@pytest.mark.parametrize("backend", ["sqlite", "mongo"])
def test_both_backends_keep_what_was_announced(tmp_path, monkeypatch, backend):
    from jfr_lib import notify
    from jfr_lib.config import load_project_file

    monkeypatch.setattr(notify, "SETTLE", -1.0)
    path = tmp_path / "demo.yaml"
    path.write_text("name: demo\nworkers:\n  w.x:\n    work_dir: /tmp/w\n"
                    "notify:\n  channels:\n    hook: {type: webhook, url: 'http://127.0.0.1:9/x'}\n")  # fmt: skip
    project = load_project_file(path)
    if backend == "sqlite":
        from jfr_lib.queue_db.sqlite import SQLiteQueueDB

        db = SQLiteQueueDB(tmp_path / "queue.db")
    else:
        mongomock = pytest.importorskip("mongomock")
        from jfr_lib.queue_db.mongo import MongoQueueDB

        db = MongoQueueDB(database="t", client=mongomock.MongoClient())
    from jfr_lib import login_marks

    with db:
        flow_uuid, (job_id,) = _flow_with_jobs(db, "one", 1)
        db.set_state(db.get_job(db_id=job_id), "COMPLETED")
        db.refresh_flow_state(flow_uuid)
        login_marks.mark(db, "w.x", "a worker name with a dot")
        first = notify.Notifier(project, took_over={"token": "t0", "host": "h", "pid": 1, "heartbeat": 0})
        first.load(db)
        assert sorted(e["event"] for e in first.scan(db)) == ["flow_completed", "login_needed", "runner_stopped"]
        first.save(db)
        again = notify.Notifier(project, took_over={"token": "t0", "host": "h", "pid": 1, "heartbeat": 0})
        again.load(db)
        assert again.scan(db) == []
        login_marks.clear(db, "w.x")
        assert again.scan(db) == [] and not any(k.startswith("l") for k in again.sent)
        login_marks.mark(db, "w.x", "again")
        assert [e["event"] for e in again.scan(db)] == ["login_needed"]


# --- real runners ------------------------------------------------------------------------
def mark_login(penv, reason: str, clear: bool = False) -> None:
    from jfr_lib import login_marks

    with penv.db() as db:
        if clear:
            login_marks.clear(db, "local")
        login_marks.mark(db, "local", reason)


@pytest.mark.e2e
@pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")
def test_one_message_per_event_through_restarts_and_a_dead_runner(penv, smtp, web):
    with_notify(penv, "  channels:\n"
                f"    mail: {{type: email, host: 127.0.0.1, port: {smtp.port}, security: none, username: jfr,"
                f" password: {SECRET}, to: ops@example.org, sender: jfr@example.org}}\n"
                f"    hook: {{type: webhook, url: '{web.url}/hook/T0/{SECRET}'}}\n" + fast())  # fmt: skip
    a = tj.add(1, 2)
    submit_flow(Flow([a, tj.add(a.output, 3)], name="good"), worker="local")
    bad = tj.fail()
    submit_flow(Flow([bad, tj.add(bad.output, 1)], name="bad"), worker="local")
    expected = ["flow 1 (good) COMPLETED (2 jobs)", "job 3 (fail) FAILED on worker local in flow 2 (bad): ",
                "flow 2 (bad) FAILED: 1 of 2 jobs FAILED"]  # fmt: skip

    def texts(which):
        items = smtp.subjects() if which == "mail" else [p["text"] for p in web.at(f"/hook/T0/{SECRET}")]
        return sorted(t.removeprefix("jfr test: ") for t in items)

    def have(n):
        return len(texts("mail")) >= n and len(texts("hook")) >= n

    with penv.start_runner() as runner:
        runner.wait_children(RUNNER_CHILDREN + 1)  # and the notifier
        wait_for(lambda: have(3), 120, message="a message for each of the three events")
        mark_login(penv, "the master connection is gone")  # a last event: what came before has gone out
        wait_for(lambda: have(4), 60, message="the login message")
    for which in ("mail", "hook"):
        found = texts(which)
        assert len(found) == 4, found
        assert [t for t in found if t.startswith("flow")] == [expected[0], expected[2]]
        (job,) = [t for t in found if t.startswith("job")]
        assert job.startswith(expected[1]) and "this job always fails" in job
        (login,) = [t for t in found if t.startswith("worker")]
        assert login.startswith("worker local needs a login (since ") and "master connection" in login
    assert smtp.logins and all(m["to"] == ["ops@example.org"] for m in smtp.messages)
    body = next(p for p in web.at(f"/hook/T0/{SECRET}") if p["event"] == "job_failed")
    assert (body["count"], body["events"][0]["job_name"], body["events"][0]["flow_name"]) == (1, "fail", "bad")

    # stopped and started again: the same events are in the window of its first look, and go out no more
    mark_login(penv, "the master connection is gone again", clear=True)
    with penv.start_runner() as runner:
        runner.wait_children(RUNNER_CHILDREN + 1)
        wait_for(lambda: have(5), 60, message="the second login message")
        # a message delivered but still in the outbox when the runner is killed would go again (documented)
        wait_for(lambda: not (penv_meta(penv).get("outbox") or []), 30, message="an empty outbox")
        pid = runner.pid
        kids = children_of(pid)
        os.kill(pid, signal.SIGKILL)  # a runner that dies leaves its lease behind
        wait_for(lambda: gone(pid) and all(gone(k) for k in kids), 30, message="the runner and its processes gone")
    with penv.start_runner() as runner:
        runner.wait_children(RUNNER_CHILDREN + 1)
        wait_for(lambda: have(6), 60, message="the message about the dead runner")
    for which in ("mail", "hook"):
        found = texts(which)
        assert len(found) == 6, found
        (died,) = [t for t in found if "stopped unexpectedly" in t]
        assert died.startswith(f"the runner on {socket.gethostname()} (pid {pid}) stopped unexpectedly")
        assert sum("needs a login" in t for t in found) == 2
    assert SECRET not in log_text(penv)


@pytest.mark.e2e
def test_a_burst_of_failures_goes_out_as_a_digest(penv, web):
    with_notify(penv, f"  channels:\n    hook: {{type: webhook, url: '{web.url}/burst'}}\n"
                "  rules:\n    - {events: [job_failed, flow_failed]}\n"
                + fast(window=15, digest_after=3, digest_lines=5))  # fmt: skip
    submit_flow(Flow([tj.fail(f"failure number {i}") for i in range(50)], name="burst"), worker="local")

    def counted():
        return sum(p["count"] for p in web.at("/burst"))

    with penv.start_runner() as runner:
        runner.wait_children(RUNNER_CHILDREN + 1)
        wait_for(lambda: flow_states(penv) == {"burst": "FAILED"} and all(
            j["state"] == "FAILED" for j in penv.jobs()), 300, interval=0.5, message="50 failed jobs")  # fmt: skip
        wait_for(lambda: counted() >= 51, 120, message="every failure in a message")
        mark_login(penv, "after the burst")  # not chosen by the rule: nothing more may come
    posts = web.at("/burst")
    assert counted() == 51 and len(posts) <= 6, [p["text"].splitlines()[0] for p in posts]
    digests = [p for p in posts if p["event"] == "digest"]
    assert digests and sum(p["counts"].get("job_failed", 0) for p in posts if p["event"] == "digest") >= 40
    lines = digests[0]["text"].splitlines()
    assert lines[0].startswith(f"jfr test: {digests[0]['count']} events: ")
    assert lines[1].startswith("- job ") and "failure number" in lines[1] and len(digests[0]["events"]) <= 5
    listed = [e["job_id"] for p in posts for e in p["events"] if e["event"] == "job_failed"]
    assert len(listed) == len(set(listed))  # no job twice


@pytest.mark.e2e
def test_dead_and_hanging_mail_servers_delay_nothing(penv):
    stuck, dead_port = Stuck(), free_port()
    try:
        with_notify(penv, "  channels:\n"
                    f"    dead: {{type: email, host: 127.0.0.1, port: {dead_port}, security: none, username: jfr,"
                    f" password: {SECRET}, to: ops@example.org, timeout: 5}}\n"
                    f"    stuck: {{type: email, host: 127.0.0.1, port: {stuck.port}, security: none, username: jfr,"
                    f" password: {SECRET}, to: ops@example.org, timeout: 120}}\n" + fast())  # fmt: skip
        a = tj.add(1, 1)
        submit_flow(Flow([a, tj.add(a.output, 1)], name="first"), worker="local")
        with penv.start_runner() as runner:
            runner.wait_children(RUNNER_CHILDREN + 1)
            wait_for(lambda: flow_states(penv) == {"first": "COMPLETED"}, 120, message="the first flow")
            wait_for(lambda: stuck.still_open(), 60, message="a connection to the hanging server")
            started = time.monotonic()
            b = tj.add(2, 2)
            c = tj.add(b.output, 1)
            submit_flow(Flow([b, c, tj.add(c.output, 1)], name="second"), worker="local")
            wait_for(lambda: flow_states(penv).get("second") == "COMPLETED", 100, message="the second flow")
            took = time.monotonic() - started
            assert stuck.still_open(), "the second flow ran while the first message was still stuck"
            wait_for(lambda: log_text(penv).count("notify: channel dead") >= 2, 60, message="both failures logged")
            stopping = time.monotonic()
        stopped = time.monotonic() - stopping  # the channel that hangs for 120 s holds the runner 5 s at most
    finally:
        stuck.close()
    assert took < 100 and stopped < 30, (took, stopped)
    failures = [line for line in log_text(penv).splitlines() if "notify: channel dead" in line]
    assert len(failures) == 2, failures
    assert sum("(first) COMPLETED" in line for line in failures) == 1
    assert sum("(second) COMPLETED" in line for line in failures) == 1
    assert all("(3 attempts)" in line and "Connection refused" in line and "jfr@127.0.0.1" in line
               for line in failures)  # fmt: skip
    assert SECRET not in log_text(penv)


@pytest.mark.e2e
def test_rules_choose_channels_by_flow_name_metadata_and_event(penv, web):
    out = penv.root / "command.txt"
    with_notify(penv, "  channels:\n"
                f"    keep: {{type: webhook, url: '{web.url}/keep'}}\n"
                f"    team: {{type: webhook, url: '{web.url}/team'}}\n"
                f"    all: {{type: webhook, url: '{web.url}/all'}}\n"
                f"    script: {{type: command, command: 'cat >> {out}; echo \" $JFR_EVENT $JFR_JOB_NAME"
                f" $JFR_FLOW_NAME\" >> {out}'}}\n"
                "  rules:\n"
                "    - {channels: [keep], events: [flow_completed], flows: ['keep-*']}\n"
                "    - {channels: [team], metadata: {team: blue}}\n"
                "    - {channels: [script], events: job_failed}\n"
                "    - {channels: [all]}\n" + fast())  # fmt: skip
    flows = {"keep-1": Flow([tj.add(1, 1)], name="keep-1"), "other": Flow([tj.add(1, 2)], name="other"),
             "drop": Flow([tj.add(1, 3)], name="drop"), "bad": Flow([tj.fail("bad luck")], name="bad")}  # fmt: skip
    flows["other"].metadata = {"team": "blue"}
    flows["bad"].metadata = {"team": "red"}
    for flow in flows.values():
        submit_flow(flow, worker="local")

    def texts(path):
        return sorted(p["text"].removeprefix("jfr test: ") for p in web.at(path))

    with penv.start_runner() as runner:
        runner.wait_children(RUNNER_CHILDREN + 1)
        wait_for(lambda: len(texts("/all")) >= 5, 180, message="the five events on the channel that takes all")
        mark_login(penv, "a last event")
        wait_for(lambda: len(texts("/all")) >= 6, 60, message="the last event")
        wait_for(lambda: texts("/keep") and texts("/team") and out.exists(), 30, message="the filtered channels")
    assert texts("/keep") == ["flow 1 (keep-1) COMPLETED (1 jobs)"]
    assert texts("/team") == ["flow 2 (other) COMPLETED (1 jobs)"]
    assert [t.split(" (")[1].split(")")[0] for t in texts("/all")[:3]] == ["keep-1", "other", "drop"]
    lines = out.read_text().splitlines()
    assert len(lines) == 2 and lines[0].startswith("jfr test: job 4 (fail) FAILED") and "bad luck" in lines[0]
    assert lines[1] == " job_failed fail bad"


def test_the_readme_example_is_a_valid_notify_section(tmp_path):
    import re

    from jfr_lib.config import load_project_file

    text = (ROOT / "README.md").read_text().split("## Notifications", 1)[1]
    example = re.search(r"```yaml\n(.*?)```", text, re.S).group(1)
    path = tmp_path / "demo.yaml"
    path.write_text("name: demo\nworkers:\n  w:\n    work_dir: /tmp/w\n" + example)
    notify = load_project_file(path).notify
    assert sorted(notify.channels) == ["mail", "script", "team"] and len(notify.rules) == 2
    assert notify.rules[1].metadata == {"campaign": ["2024a", "2024b"]} and notify.rules[1].flows == ["relax-*"]


@pytest.mark.e2e
def test_a_runner_that_stops_when_idle_still_announces_the_last_flow(penv, web):
    with_notify(penv, f"  channels:\n    hook: {{type: webhook, url: '{web.url}/idle'}}\n"
                + fast(interval=30, window=30))  # fmt: skip
    a = tj.add(1, 2)
    submit_flow(Flow([a, tj.add(a.output, 3)], name="last"), worker="local")
    penv.run_until_idle()
    assert flow_states(penv) == {"last": "COMPLETED"}
    assert [p["text"] for p in web.at("/idle")] == ["jfr test: flow 1 (last) COMPLETED (2 jobs)"]


# --- late flows, event keys, the outbox, clocks, names, redirects, secrets, big digests, hanging commands
class Log:
    """A logger that keeps its lines."""

    def __init__(self):
        self.lines = []

    def warning(self, fmt, *args):
        self.lines.append(fmt % args)

    info = warning


def _backend(tmp_path, backend):
    if backend == "sqlite":
        from jfr_lib.queue_db.sqlite import SQLiteQueueDB

        return SQLiteQueueDB(tmp_path / "queue.db")
    mongomock = pytest.importorskip("mongomock")
    from jfr_lib.queue_db.mongo import MongoQueueDB

    return MongoQueueDB(database="t", client=mongomock.MongoClient())


def test_a_flow_whose_state_is_written_late_is_still_announced(penv, monkeypatch):
    from jfr_lib import notify

    monkeypatch.setattr(notify, "SETTLE", -1.0)
    with_notify(penv, "  channels:\n    hook: {type: webhook, url: 'http://127.0.0.1:9/x'}\n")
    with penv.db() as db:
        flow_uuid, (job_id,) = _flow_with_jobs(db, "late", 1)
        n = notify.Notifier(penv.project)
        n.load(db)
        db.set_state(db.get_job(db_id=job_id), "FAILED", error="boom")
        assert [e["event"] for e in n.scan(db)] == ["job_failed"]  # the flow's state is not written yet
        db.refresh_flow_state(flow_uuid)  # long after the job's write, as a busy runner may
        assert [e["event"] for e in n.scan(db)] == ["flow_failed"]
        assert n.scan(db) == []
        plan = " ".join(str(tuple(r)) for r in db.conn.execute(
            "EXPLAIN QUERY PLAN SELECT * FROM flows WHERE state IN ('COMPLETED', 'FAILED') AND updated_on >= ? "
            "AND updated_on < ?", ("a", "b")))  # fmt: skip
        assert "flows_state_updated" in plan, plan
        db.conn.execute("DROP INDEX flows_state_updated")  # a database made by an older jfr
    with penv.db() as db:
        assert db.conn.execute("SELECT 1 FROM sqlite_master WHERE name = 'flows_state_updated'").fetchone()


@pytest.mark.parametrize("backend", ["sqlite", "mongo"])
def test_job_events_are_keyed_by_the_time_of_the_change_of_state(tmp_path, monkeypatch, backend):
    from jfr_lib import control, notify
    from jfr_lib.config import load_project_file

    monkeypatch.setattr(notify, "SETTLE", -1.0)
    path = tmp_path / "demo.yaml"
    path.write_text("name: demo\nworkers:\n  w:\n    work_dir: /tmp/w\n"
                    "notify:\n  channels:\n    hook: {type: webhook, url: 'http://127.0.0.1:9/x'}\n")  # fmt: skip
    project = load_project_file(path)
    with _backend(tmp_path, backend) as db:
        if backend == "mongo":
            assert "flows_state_updated" in db.flows.index_information()
        flow_uuid, (job_id, other_id) = _flow_with_jobs(db, "retried", 2)
        n = notify.Notifier(project)
        n.load(db)
        db.set_state(db.get_job(db_id=job_id), "REMOTE_ERROR", error="connection lost")
        first_on = db.get_job(db_id=job_id)["state_on"]
        assert [e["event"] for e in n.scan(db)] == ["job_remote_error"]
        wait_for(lambda: utc_now() > first_on, 5, interval=0.002)  # a later millisecond
        control.retry(db, db.get_job(db_id=job_id))  # `jfr job retry`: the same reruns count
        assert db.get_job(db_id=job_id)["state_on"] > first_on
        wait_for(lambda: utc_now() > db.get_job(db_id=job_id)["state_on"], 5, interval=0.002)
        db.set_state(db.get_job(db_id=job_id), "REMOTE_ERROR", error="connection lost again")
        events = n.scan(db)
        assert [e["event"] for e in events] == ["job_remote_error"] and "again" in events[0]["text"]

        db.set_state(db.get_job(db_id=other_id), "FAILED", error="boom")
        db.update_job(other_id, {"state_on": "2020-01-01T00:00:00.000+00:00"})  # it failed days ago
        n.save(db)
        fresh = notify.Notifier(project)  # the failure's key is long gone
        fresh.load(db)
        db.update_job(other_id, {"priority": 5}, state="FAILED")  # `jfr job set priority`
        assert db.get_job(db_id=other_id)["state_on"] == "2020-01-01T00:00:00.000+00:00"
        assert fresh.scan(db) == []
        db.update_jobs([other_id], {"state": "FAILED"})  # no change of state: no new time
        assert db.get_job(db_id=other_id)["state_on"] == "2020-01-01T00:00:00.000+00:00"


def test_undelivered_messages_stay_in_the_outbox_and_go_out_at_the_next_start(penv, monkeypatch, web):
    from dataclasses import replace

    from jfr_lib import notify
    from jfr_lib.notify_send import Sender

    monkeypatch.setattr(notify, "SETTLE", -1.0)
    with_notify(penv, f"  channels:\n    hook: {{type: webhook, url: 'http://127.0.0.1:{free_port()}/x'}}\n")
    channel, log = penv.project.notify.channels["hook"], Log()
    with penv.db() as db:
        flow_uuid, (job_id,) = _flow_with_jobs(db, "kept", 1)
        db.set_state(db.get_job(db_id=job_id), "FAILED", error="boom")
        n = notify.Notifier(penv.project)
        n.load(db)
        n.route(n.scan(db), time.monotonic())
        n.save(db)
        assert len(db.get_meta("notify")["outbox"]) == 1  # written with the keys, before any sending
        senders = {"hook": Sender(channel, [30.0], log)}  # a server that is down: waits 30 s to try again
        n.flush(senders, time.monotonic(), everything=True)
        wait_for(lambda: senders["hook"].queue.empty(), 10, message="the first attempt")
        started = time.monotonic()
        senders["hook"].close(time.monotonic() + 5)
        assert time.monotonic() - started < 5
        n.delivered(senders)
        n.save(db, force=True)
        assert len(db.get_meta("notify")["outbox"]) == 1
        assert any("kept for the next start" in line for line in log.lines), log.lines

        again = notify.Notifier(penv.project)  # the next start: the server answers now
        again.load(db)
        senders = {"hook": Sender(replace(channel, url=f"{web.url}/later"), [0.2], log)}
        again.flush(senders, time.monotonic())
        wait_for(lambda: senders["hook"].has_finished(), 10, message="the delivery")
        again.delivered(senders)
        again.save(db)
        senders["hook"].close(time.monotonic() + 1)
        assert [p["event"] for p in web.at("/later")] == ["job_failed"]
        assert db.get_meta("notify")["outbox"] == []
        third = notify.Notifier(penv.project)
        third.load(db)
        assert third.pending == {} and third.scan(db) == []


def test_the_meta_document_stays_small_and_is_written_only_when_it_changed(penv, monkeypatch):
    from jfr_lib import notify

    monkeypatch.setattr(notify, "SETTLE", -1.0)
    assert notify.MAX_KEYS <= 10_000
    with_notify(penv, "  channels:\n    hook: {type: webhook, url: 'http://127.0.0.1:9/x'}\n")
    with penv.db() as db:
        _flow, ids = _flow_with_jobs(db, "many", 30)
        for db_id in ids:
            db.set_state(db.get_job(db_id=db_id), "FAILED", error="boom")
        n = notify.Notifier(penv.project)
        n.load(db)
        assert len(n.scan(db)) == 30
        n.save(db)
        assert len(db.get_meta("notify")["sent"]) == 30
        writes = []
        real = db.set_meta
        monkeypatch.setattr(db, "set_meta", lambda *a: writes.append(a) or real(*a))
        assert n.scan(db) == []
        n.save(db)
        assert writes == []  # nothing new, the mark barely moved: nothing written
        n.mark = notify.iso(time.time() + 3 * notify.MARGIN)  # looks went on for a while
        n.save(db)
        assert len(writes) == 1 and db.get_meta("notify")["sent"] == []


def test_a_mark_ahead_of_this_clock_is_taken_as_now(penv, monkeypatch):
    from jfr_lib import notify

    monkeypatch.setattr(notify, "SETTLE", -1.0)
    with_notify(penv, "  channels:\n    hook: {type: webhook, url: 'http://127.0.0.1:9/x'}\n")
    with penv.db() as db:
        ahead = datetime.fromtimestamp(time.time() + 3600, timezone.utc).isoformat(timespec="milliseconds")
        db.set_meta("notify", {"mark": ahead, "sent": []})  # written by a host whose clock is an hour ahead
        n = notify.Notifier(penv.project)
        n.load(db)
        assert n.mark <= utc_now()
        _flow, (job_id,) = _flow_with_jobs(db, "skewed", 1)
        db.set_state(db.get_job(db_id=job_id), "FAILED", error="boom")
        assert [e["event"] for e in n.scan(db)] == ["job_failed"]
        assert n.mark <= utc_now()


@pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")
def test_names_with_line_breaks_make_one_line_subjects(penv, monkeypatch, smtp):
    from jfr_lib import notify
    from jfr_lib.notify_send import compose, send_email

    monkeypatch.setattr(notify, "SETTLE", -1.0)
    with_notify(penv, "  channels:\n"
                f"    mail: {{type: email, host: 127.0.0.1, port: {smtp.port}, security: none, username: jfr,"
                f" password: {SECRET}, to: ops@example.org}}\n")  # fmt: skip
    with penv.db() as db:
        flow_uuid, (job_id,) = _flow_with_jobs(db, "two\r\nlines", 1)
        db.update_job(job_id, {"name": "job\nname"})
        db.set_state(db.get_job(db_id=job_id), "FAILED", error="boom")
        db.refresh_flow_state(flow_uuid)
        n = notify.Notifier(penv.project)
        n.load(db)
        events = n.scan(db)
    assert len(events) == 2
    for message in compose("demo", events, 5, 10):
        send_email(penv.project.notify.channels["mail"], message)
    assert sorted(s.strip() for s in smtp.subjects()) == [
        "jfr demo: flow 1 (two lines) FAILED: 1 of 1 jobs FAILED",
        "jfr demo: job 1 (job name) FAILED on worker local in flow 1 (two lines): boom",
    ]


def test_a_webhook_redirect_is_refused_not_followed():
    from jfr_lib.config_model import NotifyChannel
    from jfr_lib.notify_send import Message, send_webhook

    seen = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            seen.append(("POST", self.path, self.headers.get("Authorization")))
            self.send_response(302)
            self.send_header("Location", f"http://127.0.0.1:{self.server.server_address[1]}/elsewhere/{SECRET}")
            self.send_header("Content-Length", "0")
            self.end_headers()

        def do_GET(self):
            seen.append(("GET", self.path, self.headers.get("Authorization")))
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/hook"
        channel = NotifyChannel(name="hook", type="webhook", url=url, headers={"Authorization": f"Bearer {SECRET}"})
        with pytest.raises(RuntimeError) as info:
            send_webhook(channel, Message("s", "t", {"event": "job_failed"}))
    finally:
        server.shutdown()
        server.server_close()
    assert [s[:2] for s in seen] == [("POST", "/hook")]  # nothing sent where it points
    reason = str(info.value)
    assert "302" in reason and "not followed" in reason and "\n" not in reason and SECRET not in reason


def test_project_show_masks_header_values_and_command_urls_and_clear_passwords_are_refused(tmp_path):
    from test_config_check import problems_of

    from jfr_lib.config import load_project_file
    from jfr_lib.notify_send import shown

    path = tmp_path / "demo.yaml"
    path.write_text(
        "name: demo\nworkers:\n  w:\n    work_dir: /tmp/w\nnotify:\n  channels:\n"
        f"    hook: {{type: webhook, url: 'https://h.example.org/x', headers: {{X-Team-Ref: {SECRET}}}}}\n"
        f"    run: {{type: command, command: 'curl -s -d @- https://hooks.example.org/services/{SECRET}'}}\n"
        f"    list: {{type: command, command: [curl, 'https://u:{SECRET}@hooks.example.org/t/{SECRET}?k=1']}}\n"
        f"    local: {{type: email, host: localhost, security: none, username: me, password: {SECRET},"
        " to: me@example.org}\n"
    )
    text = json.dumps(shown(load_project_file(path)))
    assert SECRET not in text, text
    assert "https://hooks.example.org/***" in text and "X-Team-Ref" in text and "curl -s -d @-" in text
    problems = problems_of(tmp_path, path.read_text().replace("host: localhost", "host: smtp.example.org"))
    assert problems == [
        "notify.channels.local.password: would cross the network in clear with security none: "
        "use starttls or ssl (or a server on this host: localhost, 127.0.0.1, ::1)"
    ]


def test_a_large_digest_goes_to_a_command_through_a_file(tmp_path):
    from jfr_lib.config_model import NotifyChannel
    from jfr_lib.notify_send import ENV_EVENTS_MAX, command_env, compose, send_command

    events = [{"event": "job_failed", "text": f"job {i} FAILED: " + "x" * 300, "job_id": i} for i in range(2000)]
    (digest,) = compose("demo", events, 5, 2000)
    assert len(json.dumps(digest.payload["events"])) > 2 * ENV_EVENTS_MAX  # past what one variable may hold
    assert "JFR_EVENTS" not in command_env(digest)
    out = tmp_path / "out.txt"
    script = ("import json, os, sys; n = len(json.load(open(os.environ['JFR_EVENTS_FILE']))); "
              f"open({str(out)!r}, 'w').write(f'{{n}} {{len(sys.stdin.read().splitlines())}} "
              "{os.environ[\"JFR_COUNT\"]}')")  # fmt: skip
    channel = NotifyChannel(name="run", type="command", command=[sys.executable, "-c", script], timeout=30)
    send_command(channel, digest)
    assert out.read_text() == "2000 2001 2000"
    assert not list(tmp_path.glob("jfr-events-*"))
    (small,) = compose("demo", events[:1], 5, 10)
    assert json.loads(command_env(small)["JFR_EVENTS"])[0]["job_id"] == 0


def test_a_hanging_command_is_killed_when_its_sender_closes(tmp_path):
    from jfr_lib.config_model import NotifyChannel
    from jfr_lib.notify_send import Message, Sender

    pid_file = tmp_path / "pid"
    channel = NotifyChannel(name="run", type="command", timeout=120,
                            command=f"echo $$ > {pid_file}; sleep 300 & wait")  # fmt: skip
    log = Log()
    sender = Sender(channel, [], log)
    sender.put(Message("s", "t", {"event": "job_failed", "count": 1, "events": [{"event": "job_failed"}]}))
    pgid = int(wait_for(lambda: pid_file.exists() and pid_file.read_text().strip(), 10, message="the command"))
    sleeper = wait_for(lambda: [p for p in children_of(pgid)], 10, message="the command's child")
    sender.close(time.monotonic() + 0.5)
    wait_for(lambda: gone(pgid) and all(gone(p) for p in sleeper), 10, message="the command and its child killed")
    assert not sender.thread.is_alive() and sender.finished() == []  # not delivered: kept for the next start


# --- e-mail over TLS ------------------------------------------------------------------------------
@pytest.fixture
def certificate(tmp_path, monkeypatch):
    """A self-signed certificate for 127.0.0.1, trusted through SSL_CERT_FILE (the default context reads it)."""
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    private = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.timezone.utc)
    made = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(private.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(hours=1))
            .not_valid_after(now + datetime.timedelta(days=2))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
            .sign(private, hashes.SHA256()))  # fmt: skip
    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    key.write_bytes(private.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                          serialization.NoEncryption()))  # fmt: skip
    cert.write_bytes(made.public_bytes(serialization.Encoding.PEM))
    monkeypatch.setenv("SSL_CERT_FILE", str(cert))
    return cert, key


@pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")  # aiosmtpd's, for TLS from the start
@pytest.mark.parametrize("security", ["starttls", "ssl"])
def test_mail_goes_over_tls_with_the_certificate_checked(certificate, security, tmp_path, monkeypatch):
    import ssl

    from aiosmtpd.controller import Controller
    from aiosmtpd.smtp import SMTP, AuthResult

    from jfr_lib.config_model import NotifyChannel
    from jfr_lib.notify_send import Message, send_email

    cert, key = certificate
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(str(cert), str(key))
    box, tls_seen = Mailbox(), []

    def authenticate(server, session, envelope, mechanism, auth_data):
        tls_seen.append(server.transport.get_extra_info("ssl_object") is not None)  # the login came over TLS
        return AuthResult(success=auth_data.login == b"jfr" and auth_data.password == SECRET.encode())

    if security == "starttls":  # plain first, then STARTTLS before any login (the server insists)
        controller = Controller(box, hostname="127.0.0.1", port=free_port(), authenticator=authenticate,
                                auth_required=True, auth_require_tls=True, require_starttls=True,
                                tls_context=context)  # fmt: skip
    else:  # TLS from the first byte

        class TLSController(Controller):
            def factory(self):
                return SMTP(self.handler, authenticator=authenticate, auth_required=True, auth_require_tls=False)

        controller = TLSController(box, hostname="127.0.0.1", port=free_port(), ssl_context=context)
    controller.start()
    try:
        channel = NotifyChannel(name="mail", type="email", host="127.0.0.1", port=controller.port,
                                security=security, username="jfr", password=SECRET, to=["me@example.org"],
                                timeout=20)  # fmt: skip
        send_email(channel, Message(subject="flow done", text="all good", payload={}, ids=[]))
        wait_for(lambda: box.messages, 20, message="the mail")
        assert box.subjects() == ["flow done"] and tls_seen == [True]
        # a certificate nobody trusts is refused: nothing is sent, the password never leaves
        monkeypatch.setenv("SSL_CERT_FILE", str(tmp_path / "none.pem"))
        with pytest.raises(ssl.SSLCertVerificationError):
            send_email(channel, Message(subject="second", text="x", payload={}, ids=[]))
        assert box.subjects() == ["flow done"] and tls_seen == [True]
    finally:
        controller.stop()
