"""Sending notifications: the message, the three kinds of channel, and a sender thread per channel.

A :class:`Message` is built from one event or, for a burst, from many (a digest
with the count of each kind of event and the first few listed). Each channel
has its own :class:`Sender`: a thread with a bounded queue, so that a channel
whose server hangs delays neither the others nor the notifier that feeds it.
Every attempt has a timeout; a failed one is tried again after the configured
delays, then the message is logged once (the channel named by what is safe to
show: never a password, nor a webhook's path, which often holds its token)
and dropped. Each message carries the ids of the outbox entries it delivers
(:mod:`jfr_lib.notify`); the sender reports them once the message went out or
was dropped, never when the runner stops while it waits to try again: the
message then stays in the outbox for the next start.

A webhook never follows a redirect (urllib would repeat the POST as a GET, with
its headers, to wherever it points): a 3xx answer is a failure. A command runs
in a session of its own, killed with its process group when it outlives its
``timeout`` or the runner's stop.

Only the standard library is used: ``smtplib`` for e-mail, ``urllib`` for
webhooks, ``subprocess`` for commands.
"""

from __future__ import annotations

import json
import os
import queue
import re
import signal
import socket
import subprocess
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, field

#: How each event reads in a digest's count line.
EVENT_TITLES = {
    "flow_completed": "flow COMPLETED", "flow_failed": "flow FAILED", "job_failed": "job FAILED",
    "job_remote_error": "job REMOTE_ERROR", "runner_stopped": "runner stopped unexpectedly",
    "login_needed": "worker needs a login",
}  # fmt: skip
#: Messages a channel holds while it cannot send; more are dropped (and logged).
QUEUE_SIZE = 200
#: Largest ``JFR_EVENTS`` (bytes) put in a command's environment; a larger one (a long digest)
#: goes in a file named by ``JFR_EVENTS_FILE`` (one variable may not pass 128 KiB on Linux).
ENV_EVENTS_MAX = 64 * 1024


@dataclass
class Message:
    """One message for one channel.

    Attributes
    ----------
    subject
        One line (an e-mail's subject).
    text
        The whole message (a webhook's ``text``, a command's standard input).
    payload
        The structured fields: ``project``, ``event`` (an event's name, or
        ``digest``), ``count``, ``counts`` and ``events`` (each a mapping).
    ids
        The outbox entries the message delivers (reported by its sender).
    """

    subject: str
    text: str
    payload: dict = field(default_factory=dict)
    ids: list = field(default_factory=list)


def compose(project: str, events: list, digest_after: int, digest_lines: int) -> list:
    """The messages for the events gathered for one channel.

    Parameters
    ----------
    project
        The project's name, at the start of every message.
    events
        Event mappings (``event``, ``text`` and the event's fields).
    digest_after
        More events than this make one digest instead of one message each.
    digest_lines
        How many events a digest lists one by one.

    Returns
    -------
    list of Message
    """
    if len(events) <= digest_after:
        return [Message(_subject(f"jfr {project}: {e['text']}"), f"jfr {project}: {e['text']}",
                        {"project": project, "event": e["event"], "count": 1, "events": [e]})
                for e in events]  # fmt: skip
    counts = Counter(e["event"] for e in events)
    summary = ", ".join(f"{n} {EVENT_TITLES.get(name, name)}" for name, n in counts.most_common())
    lines = [f"- {e['text']}" for e in events[:digest_lines]]
    if len(events) > digest_lines:
        lines.append(f"- ... and {len(events) - digest_lines} more (jfr job list --error, jfr flow list)")
    subject = f"jfr {project}: {len(events)} events: {summary}"
    payload = {"project": project, "event": "digest", "count": len(events), "counts": dict(counts),
               "events": events[:digest_lines]}  # fmt: skip
    return [Message(_subject(subject), "\n".join([subject, *lines]), payload)]


def _subject(text: str, limit: int = 150) -> str:
    text = " ".join(text.split())  # a header is one line: a name with a newline would be refused
    return text if len(text) <= limit else text[: limit - 3] + "..."


def label(channel) -> str:
    """What may be shown of a channel: its name and where it sends, without any secret."""
    if channel.type == "email":
        user = f"{channel.username}@" if channel.username else ""
        return f"{channel.name} (email via {user}{channel.host}:{smtp_port(channel)})"
    if channel.type == "webhook":
        return f"{channel.name} (webhook {safe_url(channel.url)})"
    program = channel.command if isinstance(channel.command, str) else " ".join(channel.command or [])
    return f"{channel.name} (command {program.split()[0] if program.split() else ''})"


def safe_url(url) -> str:
    """Scheme, host and port of a URL: its path and query often hold a token, its user part a password."""
    from urllib.parse import urlsplit

    parts = urlsplit(url or "")
    try:
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        port = ""
    return f"{parts.scheme}://{parts.hostname or ''}{port}"


_URL = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://[^\s'\"]+")


def _mask_urls(text: str) -> str:
    """Every URL in ``text`` cut to its scheme, host and port (a command may post to a hook's URL)."""
    from jfr_lib.redact import MASK

    return _URL.sub(lambda m: f"{safe_url(m.group())}/{MASK}", text)


def shown(project) -> dict | None:
    """The ``notify`` section as ``jfr project show`` may print it: no password, no webhook path
    (it often holds the hook's token), no header value, no URL path in a command."""
    from dataclasses import asdict

    from jfr_lib.redact import MASK, mask_mapping

    n = getattr(project, "notify", None)
    if n is None:
        return None
    channels = {}
    for name, ch in n.channels.items():
        data = {k: v for k, v in asdict(ch).items() if v not in (None, {}, []) and k != "name"}
        if ch.url:
            data["url"] = f"{safe_url(ch.url)}/{MASK}"
        if ch.headers:
            data["headers"] = dict.fromkeys(ch.headers, MASK)
        if isinstance(ch.command, str):
            data["command"] = _mask_urls(ch.command)
        elif isinstance(ch.command, list):
            data["command"] = [_mask_urls(a) if isinstance(a, str) else a for a in ch.command]
        channels[name] = mask_mapping(data)
    return {**asdict(n), "channels": channels, "rules": [asdict(r) for r in n.rules]}


def smtp_port(channel) -> int:
    return channel.port or {"ssl": 465, "starttls": 587}.get(channel.security, 25)


# --- the channels -------------------------------------------------------------
def send_email(channel, message: Message) -> None:
    """Send by SMTP: STARTTLS or SMTP over TLS (certificates checked) or plain, a login if configured."""
    import smtplib
    import ssl
    from email.message import EmailMessage

    mail = EmailMessage()
    mail["Subject"] = message.subject
    mail["From"] = channel.sender or f"jfr@{socket.gethostname()}"
    mail["To"] = ", ".join(channel.to)
    mail.set_content(message.text)
    port = smtp_port(channel)
    if channel.security == "ssl":
        server = smtplib.SMTP_SSL(channel.host, port, timeout=channel.timeout, context=ssl.create_default_context())
    else:
        server = smtplib.SMTP(channel.host, port, timeout=channel.timeout)
    with server:
        if channel.security == "starttls":
            server.starttls(context=ssl.create_default_context())
        if channel.username:
            server.login(channel.username, channel.password or "")
        server.send_message(mail)


def send_webhook(channel, message: Message) -> None:
    """POST the message as JSON: ``text`` (what Slack, Mattermost or Teams show) and the structured fields.
    A redirect is not followed: it fails the attempt."""
    import urllib.error
    import urllib.request

    class NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args, **kwargs):
            return None  # the 3xx answer then raises, as any other HTTP error

    body = json.dumps({"text": message.text, **message.payload}, default=str).encode()
    headers = {"Content-Type": "application/json", "User-Agent": "jfr", **channel.headers}
    request = urllib.request.Request(channel.url, data=body, headers=headers, method="POST")
    try:
        with urllib.request.build_opener(NoRedirect).open(request, timeout=channel.timeout) as response:
            response.read(65536)
    except urllib.error.HTTPError as exc:
        exc.close()
        if 300 <= exc.code < 400:
            where = safe_url((exc.headers or {}).get("Location") or "")
            raise RuntimeError(f"the server answered {exc.code}, a redirect to {where}: not followed") from None
        raise


def send_command(channel, message: Message, running: set | None = None) -> None:
    """Run the command with the message on its standard input and the event in ``JFR_*`` variables
    (``JFR_EVENTS`` too large for the environment in a file named by ``JFR_EVENTS_FILE``, removed
    after). ``running`` holds the process while it runs (for :meth:`Sender.close` to kill)."""
    extra, path = command_env(message), None
    if "JFR_EVENTS" not in extra:
        fd, path = tempfile.mkstemp(prefix="jfr-events-", suffix=".json")  # readable by this user only
        with os.fdopen(fd, "w") as out:
            out.write(events_json(message))
        extra["JFR_EVENTS_FILE"] = path
    env = {k: v for k, v in os.environ.items() if k not in ("JFR_EVENTS", "JFR_EVENTS_FILE")} | extra
    try:
        proc = subprocess.Popen(channel.command, shell=isinstance(channel.command, str), env=env, text=True,
                                stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                start_new_session=True)  # fmt: skip
        if running is not None:
            running.add(proc)
        try:
            _, err = proc.communicate(message.text + "\n", timeout=channel.timeout)
        except subprocess.TimeoutExpired:
            _kill(proc)
            proc.communicate()
            raise TimeoutError(f"still running after {channel.timeout:g} s: killed") from None
        finally:
            if running is not None:
                running.discard(proc)
    finally:
        if path:
            os.unlink(path)
    if proc.returncode:
        last = (err or "").strip().splitlines()[-1:] or [""]
        raise RuntimeError(f"exited with status {proc.returncode}" + (f": {last[0][:300]}" if last[0] else ""))


def _kill(proc) -> None:
    """Kill a command and what it started (its process group: it runs in a session of its own)."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def events_json(message: Message) -> str:
    """The events of a message as JSON (``JFR_EVENTS``)."""
    return json.dumps(message.payload.get("events", []), default=str)


def command_env(message: Message) -> dict:
    """``JFR_EVENT``, ``JFR_PROJECT``, ``JFR_COUNT``, ``JFR_EVENTS`` (JSON, when under
    :data:`ENV_EVENTS_MAX` bytes: else :func:`send_command` writes it to a file), and the fields
    of a lone event."""
    p = message.payload
    env = {"JFR_EVENT": p.get("event", ""), "JFR_PROJECT": p.get("project", ""), "JFR_COUNT": str(p.get("count", 0))}
    events = events_json(message)
    if len(events.encode()) < ENV_EVENTS_MAX:
        env["JFR_EVENTS"] = events
    if p.get("count") == 1:
        for key, value in p["events"][0].items():
            if value is not None and not isinstance(value, (dict, list)) and key not in ("event", "text"):
                env[f"JFR_{key.upper()}"] = str(value)
    return env


SENDERS = {"email": send_email, "webhook": send_webhook, "command": send_command}


# --- one thread per channel -----------------------------------------------------
class Sender:
    """Sends the messages of one channel in a thread of its own, trying again after failures.

    Parameters
    ----------
    channel
        The channel (:class:`jfr_lib.config_model.NotifyChannel`).
    retry_delays
        Seconds before each new attempt; after the last the message is dropped.
    log
        Where each dropped message is reported, once.
    """

    def __init__(self, channel, retry_delays, log):
        self.channel = channel
        self.delays = list(retry_delays)
        self.log = log
        self.label = label(channel)
        self.queue = queue.Queue(QUEUE_SIZE)
        self.stopping = threading.Event()
        self.done = queue.SimpleQueue()  # the ids of each message delivered or dropped
        self.running = set()  # the command under way, for close() to kill
        self.sent = self.dropped = 0
        self.thread = threading.Thread(target=self._run, name=f"notify-{channel.name}", daemon=True)
        self.thread.start()

    def put(self, message: Message) -> None:
        """Queue a message; never blocks (a full queue drops it, with a log line)."""
        try:
            self.queue.put_nowait(message)
        except queue.Full:
            self.dropped += 1
            self.done.put(message.ids)
            self.log.warning("notify: channel %s has %d messages waiting: dropped %r", self.label, QUEUE_SIZE,
                             message.subject)  # fmt: skip

    def has_finished(self) -> bool:
        """Whether a message was delivered or dropped since the last :meth:`finished`."""
        return not self.done.empty()

    def finished(self) -> list:
        """The ids of each message delivered or dropped since the last call."""
        out = []
        while not self.done.empty():
            out.append(self.done.get_nowait())
        return out

    def close(self, deadline: float) -> None:
        """Stop after what is queued has had one attempt, or at ``deadline`` (monotonic) at the latest:
        a command still running then is killed, with its process group."""
        self.stopping.set()
        try:
            self.queue.put_nowait(None)
        except queue.Full:  # the thread ends with the process
            pass
        self.thread.join(max(0.0, deadline - time.monotonic()))
        if self.thread.is_alive():
            for proc in list(self.running):
                _kill(proc)
            self.thread.join(1.0)
        if self.thread.is_alive() or not self.queue.empty():
            self.log.warning("notify: channel %s: the runner stops before its last messages could go out; "
                             "they are sent at the next start", self.label)  # fmt: skip

    def _run(self) -> None:
        while True:
            message = self.queue.get()
            if message is None:
                return
            self._deliver(message)

    def _send(self, message: Message) -> None:
        if self.channel.type == "command":
            send_command(self.channel, message, self.running)
        else:
            SENDERS[self.channel.type](self.channel, message)

    def _deliver(self, message: Message) -> None:
        for attempt in range(len(self.delays) + 1):
            try:
                self._send(message)
                self.sent += 1
                self.done.put(message.ids)
                return
            except Exception as exc:  # every failure of a channel is the channel's, never the runner's
                reason = self._reason(exc)
            if attempt == len(self.delays) and not self.stopping.is_set():
                break
            if self.stopping.is_set() or self.stopping.wait(self.delays[attempt]):  # left in the outbox
                self.log.warning("notify: channel %s could not send %r before the runner stopped: %s; kept for "
                                 "the next start", self.label, message.subject, reason)  # fmt: skip
                return
        self.dropped += 1
        self.done.put(message.ids)
        self.log.warning("notify: channel %s could not send %r (%d attempts): %s; dropped", self.label,
                         message.subject, attempt + 1, reason)  # fmt: skip

    def _reason(self, exc: Exception) -> str:
        from jfr_lib.redact import mask_text

        text = " ".join(str(exc).split()) or type(exc).__name__
        for secret in (self.channel.password, self.channel.url):
            if secret:
                text = text.replace(secret, "***")
        return mask_text(f"{type(exc).__name__}: {text}")[:500]
