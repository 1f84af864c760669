"""A MongoDB server that cannot be reached: commands answer within seconds, in one line,
without the password (a closed port on 127.0.0.1 stands for the server)."""

from __future__ import annotations

import socket
import time

import pytest

from jfr_lib.errors import QueueDBError

pytest.importorskip("pymongo")

#: Before: 21 s for `jfr job list`, 54 s for `jfr project check`; the default wait is now 5 s.
DEADLINE = 15


def closed_port() -> int:
    """A port on 127.0.0.1 where nothing listens (the kernel just gave it out and it was closed)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def unreachable(penv):
    port = closed_port()
    penv.write(penv.path.read_text() + (
        f"queue:\n  backend: mongodb\n  uri: mongodb://user:hunter2@127.0.0.1:{port}/db\n  database: db\n"
        "jobstore:\n  docs_store:\n    type: MongoStore\n    host: 127.0.0.1\n"
        f"    port: {port}\n    username: bob\n    password: hunter3\n    database: db\n"
        "    collection_name: outputs\n"))  # fmt: skip
    penv.port = port
    return penv


def timed(penv, *args):
    start = time.monotonic()
    code, out, err = penv.jfr(*args, check=False, timeout=120)
    return time.monotonic() - start, code, out, err


def test_job_list_answers_in_seconds_with_one_line(unreachable):
    elapsed, code, out, err = timed(unreachable, "job", "list")
    assert elapsed < DEADLINE, f"took {elapsed:.1f} s"
    assert code == 5 and out == ""
    assert err == (f"jfr: error: mongodb://user:***@127.0.0.1:{unreachable.port}/db: cannot reach the queue "
                   "database: connection refused\n")  # fmt: skip


def test_project_check_answers_in_seconds_without_passwords(unreachable):
    elapsed, code, out, err = timed(unreachable, "project", "check")
    assert elapsed < DEADLINE, f"took {elapsed:.1f} s"
    assert code == 1
    assert "hunter" not in out + err and "Topology" not in out + err
    lines = out.splitlines()  # a failed check: its label, then its reason indented on one line
    i = next(i for i, line in enumerate(lines) if line.endswith(" queue database (mongodb)"))
    assert lines[i + 1] == (f"    mongodb://user:***@127.0.0.1:{unreachable.port}/db: cannot reach the "
                            "queue database: connection refused")  # fmt: skip
    assert lines[i + 2].endswith(" JobStore")
    assert lines[i + 3] == "    cannot reach its MongoDB server: connection refused"


def test_the_wait_is_the_queue_connect_timeout(unreachable):
    from jfr_lib.queue_db import open_queue_db

    text = unreachable.path.read_text().replace("  database: db\n", "  database: db\n  connect_timeout: 0.5\n", 1)
    unreachable.write(text)
    start = time.monotonic()
    with pytest.raises(QueueDBError, match="cannot reach the queue database: connection refused"):
        open_queue_db(unreachable.project)
    assert time.monotonic() - start < 3


def test_a_bad_uri_is_one_line_without_the_password():
    from jfr_lib.queue_db.mongo import MongoQueueDB

    with pytest.raises(QueueDBError) as err:
        MongoQueueDB("mongodb://user:hunter2@db.example:notaport/db", "db", timeout=0.5)
    text = str(err.value)
    assert text.startswith("mongodb://user:***@db.example:notaport/db: not a valid MongoDB URI: ")
    assert "hunter2" not in text and "\n" not in text
