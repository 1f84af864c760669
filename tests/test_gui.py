"""The dashboard (``jfr gui``): its pages and API on a real project and its actions under the command
line's rules and messages (its token, cross-site checks and command: test_gui_security.py)."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import threading
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from jobflow import Flow

from jfr_lib import submit_flow
from jfr_lib.cli import main

import testjobs as tj

pytest.importorskip("starlette", reason="the gui extra is not installed (pip install 'jfr[gui]')")
pytest.importorskip("httpx", reason="httpx is needed by Starlette's TestClient")

PORT = 8765
BASE = f"http://127.0.0.1:{PORT}"
PAGES = ("/", "/jobs", "/jobs/1", "/flows", "/flows/1", "/report", "/static/common.js", "/static/style.css")
APIS = ("/api/overview", "/api/jobs", "/api/jobs/1", "/api/jobs/1/output", "/api/jobs/1/files", "/api/flows",
        "/api/flows/1", "/api/report")  # fmt: skip


def client_for(app):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Starlette's notice that it would rather have httpx2 than httpx
        from starlette.testclient import TestClient

    return TestClient(app, base_url=BASE)


def make_app(penv, read_only: bool = False, loopback_only: bool = True, bound: str | None = None):
    from jfr_lib.gui.app import create_app
    from jfr_lib.gui.auth import Keys

    keys = Keys("the-token", PORT)
    return create_app(penv.project, keys, read_only=read_only, loopback_only=loopback_only, bound=bound), keys


@pytest.fixture
def chain(penv):
    """A flow of two jobs (1 -> 2) and a single-job flow on another worker (3)."""
    penv.write(None, workers=f"  other:\n    type: local\n    work_dir: {penv.work}/other\n")
    first = tj.add(1, 2)
    second = tj.add(first.output, 3)
    submit_flow(Flow([first, second], name="chain"))
    submit_flow(Flow([tj.add(5, 5)], name="single"), worker="other")
    return penv


@pytest.fixture
def gui(chain):
    """(client holding the session cookie, keys, env)."""
    app, keys = make_app(chain)
    with client_for(app) as client:
        assert client.get("/?token=the-token").status_code == 200  # the cookie is set on the redirect
        yield client, keys, chain


def post(client, keys, path, body=None, **headers):
    return client.post(path, json=body or {}, headers={"X-JFR-CSRF": keys.csrf, **headers})


def run_main(capsys, *args):
    old = sys.stdin
    sys.stdin = io.StringIO("")
    try:
        code = main(list(args))
    except SystemExit as exc:
        code = exc.code
    finally:
        sys.stdin = old
    out, err = capsys.readouterr()
    return code, out, err


def state_of(env, db_id):
    with env.db() as db:
        return db.get_job(db_id=db_id)["state"]


def force_state(env, db_id, state):
    with env.db() as db:
        assert db.update_job(db_id, {"state": state})
        db.refresh_flow_state(db.get_job(db_id=db_id)["flow_uuid"])


# --- actions: the command line's rules and words --------------------------------------------------------


def cli_error(capsys, *args) -> str:
    code, _, err = run_main(capsys, *args)
    assert code != 0
    return err.strip()


def test_actions_obey_the_command_lines_rules_and_messages(gui, capsys):
    client, keys, env = gui
    assert post(client, keys, "/api/jobs/1/pause").json() == {"message": "job 1: READY -> PAUSED"}
    again = post(client, keys, "/api/jobs/1/pause")
    assert again.status_code == 409
    assert cli_error(capsys, "job", "pause", "1") == f"jfr: error: {again.json()['error']}"
    assert again.json()["error"] == "job 1 (add) is PAUSED: only WAITING, READY jobs can be paused"
    assert post(client, keys, "/api/jobs/1/resume").json() == {"message": "job 1: PAUSED -> READY"}
    retry = post(client, keys, "/api/jobs/1/retry")
    assert retry.status_code == 409 and cli_error(capsys, "job", "retry", "1") == f"jfr: error: {retry.json()['error']}"

    force_state(env, 3, "COMPLETED")
    refused = post(client, keys, "/api/jobs/3/rerun")
    assert refused.status_code == 409 and "add --force" in refused.json()["error"]
    assert cli_error(capsys, "job", "rerun", "3") == f"jfr: error: {refused.json()['error']}"
    assert state_of(env, 3) == "COMPLETED"
    forced = post(client, keys, "/api/jobs/3/rerun", {"force": True})
    assert forced.json() == {"message": "job 3: COMPLETED -> READY"}
    assert post(client, keys, "/api/jobs/3/rerun", {"force": "yes"}).status_code == 400

    assert post(client, keys, "/api/jobs/2/priority", {"value": 7}).json() == {"message": "job 2: priority 7"}
    bad = post(client, keys, "/api/jobs/2/priority", {"value": "seven"})
    assert bad.status_code == 400
    assert cli_error(capsys, "job", "set", "priority", "seven", "2") == f"jfr: error: {bad.json()['error']}"
    with env.db() as db:
        assert db.get_job(db_id=2)["priority"] == 7

    assert post(client, keys, "/api/jobs/2/stop").json() == {"message": "job 2: WAITING -> USER_STOPPED"}
    assert post(client, keys, "/api/jobs/2/rerun").json()["message"] == "job 2: USER_STOPPED -> WAITING"
    force_state(env, 1, "RUNNING")
    busy = post(client, keys, "/api/jobs/1/delete")
    assert busy.status_code == 409 and cli_error(capsys, "job", "delete", "1") == f"jfr: error: {busy.json()['error']}"
    force_state(env, 3, "FAILED")
    assert post(client, keys, "/api/jobs/3/delete").json() == {"message": "job 3: deleted"}
    missing = post(client, keys, "/api/jobs/3/retry")
    assert missing.status_code == 404 and missing.json()["error"] == "no job 3"
    assert post(client, keys, "/api/jobs/1/explode").status_code == 404
    with env.db() as db:
        assert db.count_jobs() == 2 and db.get_flow(db_id=2) is None  # the flow of its only job went with it


def test_flow_actions(gui, capsys):
    client, keys, env = gui
    post(client, keys, "/api/jobs/1/pause")
    assert post(client, keys, "/api/flows/1/resume").json() == {"message": "job 1: PAUSED -> READY"}
    assert post(client, keys, "/api/flows/1/resume").json() == {"message": "flow 1: no paused job"}
    force_state(env, 2, "RUNNING")
    busy = post(client, keys, "/api/flows/1/delete")
    assert busy.status_code == 409
    assert cli_error(capsys, "flow", "delete", "1", "-y") == f"jfr: error: {busy.json()['error']}"
    force_state(env, 2, "WAITING")
    assert post(client, keys, "/api/flows/1/delete").json() == {"message": "flow 1: deleted with 2 jobs"}
    assert client.get("/api/flows/1").status_code == 404


# --- what the pages show ----------------------------------------------------------------------------------


@pytest.fixture
def crowd(penv):
    """37 jobs: flow 1 has 25 'relax-N' jobs, flow 2 has 12 'static-N' jobs on worker 'other'."""
    penv.write(None, workers=f"  other:\n    type: local\n    work_dir: {penv.work}/other\n")
    relax = [tj.add(i, 1) for i in range(25)]
    for i, job in enumerate(relax):
        job.name = f"relax-{i:02d}"
    submit_flow(Flow(relax, name="relax"))
    static = [tj.add(i, 2) for i in range(12)]
    for i, job in enumerate(static):
        job.name = f"static-{i:02d}"
    submit_flow(Flow(static, name="static"), worker="other")
    with penv.db() as db:
        for db_id in (3, 5, 30):
            db.update_job(db_id, {"state": "FAILED", "priority": db_id})
    return penv


def test_jobs_page_paging_filters_and_sort(crowd, capsys, monkeypatch):
    from jfr_lib.gui import queries

    app, _ = make_app(crowd)
    with client_for(app) as client:
        client.get("/?token=the-token")

        def ids(**params):
            data = client.get("/api/jobs", params=params).json()
            return data, [j["db_id"] for j in data["jobs"]]

        data, page = ids(size=10)
        assert (data["total"], data["pages"], page) == (37, 4, list(range(37, 27, -1)))
        data, page = ids(size=10, page=4)
        assert page == list(range(7, 0, -1)) and data["page"] == 4
        assert ids(size=10, page=99)[0]["page"] == 4  # past the end: the last page
        assert ids(size=10, order="asc", page=2)[1] == list(range(11, 21))
        assert ids(state="FAILED")[1] == [30, 5, 3]
        assert ids(worker="other", size=5)[0]["total"] == 12
        assert ids(name="static-0*", order="asc")[1] == list(range(26, 36))
        assert ids(flow="2", state="FAILED")[1] == [30]
        assert ids(sort="priority", size=3)[1] == [30, 5, 3]
        _, every = ids(sort="name", order="asc", size=500)
        code, out, _ = run_main(capsys, "job", "list", "--sort", "name", "-n", "0", "--json")
        assert code == 0 and every == [j["db_id"] for j in json.loads(out)]
        for params, message in (({"state": "BOGUS"}, "unknown state 'BOGUS'"), ({"sort": "uuid"}, "sort: 'uuid'"),
                                ({"size": "0"}, "size: 0"), ({"flow": "99"}, "no flow 99")):  # fmt: skip
            answer = client.get("/api/jobs", params=params)
            assert answer.status_code in (400, 404) and message in answer.json()["error"], params
        for sort in queries.JOB_SORT_KEYS:  # the pages, cut by the database, put together are the whole list
            whole = ids(sort=sort, size=500)[1]
            assert sum((ids(sort=sort, size=6, page=p)[1] for p in range(1, 8)), []) == whole, sort
        assert ids(name="relax-1*", size=4, page=2)[1] == [16, 15, 14, 13]


@pytest.mark.parametrize("backend", ["sqlite", "mongo"])
def test_a_deep_page_and_an_unchanged_graph_decode_only_what_they_show(backend, tmp_path, monkeypatch):
    from jfr_lib.gui import queries

    if backend == "sqlite":
        from jfr_lib.queue_db.sqlite import SQLiteQueueDB as Backend

        db = Backend(tmp_path / "queue.db")
    else:
        from jfr_lib.queue_db.mongo import MongoQueueDB as Backend

        db = Backend(database="t", client=pytest.importorskip("mongomock").MongoClient())
    long_ago = "2020-01-01T00:00:00.000+00:00"  # last changed long before the graph is first read
    jobs = [{"uuid": f"u{i}", "index": 1, "name": f"n{i % 7}", "state": "READY", "parents": [f"u{i - 1}"] if i else [],
             "flow_uuid": "f", "priority": i % 3, "worker": "w", "job": {}, "updated_on": long_ago}
            for i in range(60)]  # fmt: skip
    db.insert_flow({"uuid": "f", "name": "flow", "state": "READY"}, jobs)
    every = [j["db_id"] for j in sorted(db.find_jobs(), key=lambda j: (j["name"], j["db_id"]))]
    decoded, find = [], db.find_jobs

    def counting(*args, **kwargs):
        found = find(*args, **kwargs)
        decoded.extend(found)
        return found

    monkeypatch.setattr(db, "find_jobs", counting)
    page = queries.jobs_page(db, {"sort": "name", "order": "asc", "size": "5", "page": "11"})
    assert [j["db_id"] for j in page["jobs"]] == every[50:55] and len(decoded) == 5
    graphs = queries.GraphCache()
    first = queries.flow_info(db, 1, graphs)["graph"]
    assert len(first["nodes"]) == 60 and [1, 2] in first["edges"]
    decoded.clear()
    assert queries.flow_info(db, 1, graphs)["graph"] == first and decoded == []  # nothing changed: nothing read
    for change in range(3):  # same state, same counts: seen all the same, however quickly they follow
        db.update_job(7, {"name": f"renamed-{change}"})
        assert queries.flow_info(db, 1, graphs)["graph"]["nodes"][6]["name"] == f"renamed-{change}"
    db.update_job(8, {"state": "RUNNING"})
    assert queries.flow_info(db, 1, graphs)["graph"]["nodes"][7]["state"] == "RUNNING"
    assert len(decoded) == 4 * 60  # each change read the flow once
    db.close()


def test_flows_overview_graph_and_report(chain):
    from jfr_lib import login_marks

    with chain.db() as db:
        login_marks.mark(db, "other", "its master connection is gone")
        db.update_job(3, {"state": "COMPLETED"})
        db.refresh_flow_state(db.get_job(db_id=3)["flow_uuid"])
    app, _ = make_app(chain)
    with client_for(app) as client:
        client.get("/?token=the-token")
        overview = client.get("/api/overview").json()
        assert overview["states"] == {"READY": 1, "WAITING": 1, "COMPLETED": 1} and overview["jobs"] == 3
        assert overview["workers"] == {"local": {"READY": 1, "WAITING": 1}, "other": {"COMPLETED": 1}}
        assert overview["runner"]["status"] == "stopped" and overview["pilots"] == []
        assert [m["worker"] for m in overview["logins"]] == ["other"]
        assert overview["flow_states"] == {"READY": 1, "COMPLETED": 1}
        flows = client.get("/api/flows").json()
        assert [(f["name"], f["n_jobs"], f["states"]) for f in flows["flows"]] == [
            ("single", 1, {"COMPLETED": 1}), ("chain", 2, {"READY": 1, "WAITING": 1})]  # fmt: skip
        graph = client.get("/api/flows/1").json()["graph"]
        assert [n["id"] for n in graph["nodes"]] == [1, 2] and graph["edges"] == [[1, 2]]
        assert client.get("/api/flows/9").json() == {"error": "no flow 9"}
        report = client.get("/api/report", params={"days": 3}).json()
        assert len(report["days"]) == 3 and report["days"][-1]["COMPLETED"] == 1
        assert client.get("/api/report", params={"days": "x"}).status_code == 400


def test_job_page_shows_inputs_output_traceback_and_run_folder(penv):
    first = tj.add(1, 2)
    broken = tj.fail("no luck today")
    submit_flow(Flow([first, broken], name="two"))
    penv.run_until_idle()
    app, _ = make_app(penv)
    with client_for(app) as client:
        client.get("/?token=the-token")
        done = client.get("/api/jobs/1").json()
        assert done["state"] == "COMPLETED" and done["function"] == "testjobs.add"
        assert json.loads(done["inputs"]) == {"args": [1, 2], "kwargs": {}}
        assert done["actions"]["rerun"] and done["actions"]["rerun_force"] and not done["actions"]["retry"]
        assert client.get("/api/jobs/1/output").json()["output"] == "3"
        files = client.get("/api/jobs/1/files").json()
        assert set(files["tails"]) == {"queue.out", "queue.err"} and "jfr_out.json" in files["files"]
        one = client.get("/api/jobs/1/files", params={"name": "jfr_out.json", "lines": 5}).json()
        assert list(one["tails"]) == ["jfr_out.json"] and one["tails"]["jfr_out.json"]
        for name in ("../x", "..", "a/b"):
            assert client.get("/api/jobs/1/files", params={"name": name}).status_code == 400
        run_dir = Path(done["settings"]["run_dir"])
        (run_dir / "link").symlink_to(run_dir / "jfr_out.json")
        os.mkfifo(run_dir / "pipe")
        with ThreadPoolExecutor(1) as pool:  # a pipe must not hold a server thread: answered within the deadline
            for name in ("link", "pipe"):
                asked = pool.submit(client.get, "/api/jobs/1/files", params={"name": name})
                try:
                    answer = asked.result(timeout=60)
                finally:
                    if not asked.done():  # let the blocked reader go, so that the test ends
                        os.close(os.open(run_dir / "pipe", os.O_WRONLY | os.O_NONBLOCK))
                assert answer.status_code == 400 and "not a regular file" in answer.json()["error"], name
        failed = client.get("/api/jobs/2").json()
        assert failed["state"] == "FAILED" and "no luck today" in failed["error"]
        assert "RuntimeError: no luck today" in failed["traceback"]
        assert failed["actions"]["rerun"] and not failed["actions"]["rerun_force"]
        assert client.get("/api/jobs/2/output").json() == {"error": "job 2 (FAILED) has no output yet"}
        assert client.get("/api/jobs/77").status_code == 404


def test_a_remote_file_is_read_through_tail_regular_files_only_with_a_byte_cap(tmp_path, monkeypatch):
    from types import SimpleNamespace

    from jfr_lib.cli import job_files
    from jfr_lib.errors import UsageError
    from jfr_lib.gui import jobview

    class Host:  # a remote host whose shell is this machine's
        def exists(self, path):
            return subprocess.run(["test", "-e", path]).returncode == 0

        def run(self, command):
            done = subprocess.run(["bash", "-c", command], capture_output=True, text=True, timeout=60)
            return SimpleNamespace(exit_code=done.returncode, stdout=done.stdout, stderr=done.stderr)

    monkeypatch.setattr(job_files, "TAIL_MAX_BYTES", 1000)
    remote, job = SimpleNamespace(is_local=False), {"db_id": 4}
    (tmp_path / "out").write_text("".join(f"line {i}\n" for i in range(50)))
    (tmp_path / "long").write_text("x" * 5000)  # no line break: only the byte cap bounds it
    (tmp_path / "link").symlink_to(tmp_path / "out")
    os.mkfifo(tmp_path / "pipe")
    assert jobview._tail(job, remote, Host(), str(tmp_path / "out"), 2) == "line 48\nline 49\n"
    assert jobview._tail(job, remote, Host(), str(tmp_path / "long"), 5) == "x" * 1000
    assert jobview._tail(job, remote, Host(), str(tmp_path / "gone"), 5) is None
    for name in ("link", "pipe"):
        with pytest.raises(UsageError, match="not a regular file"):
            jobview._tail(job, remote, Host(), str(tmp_path / name), 5)


def test_one_mongodb_client_for_every_server_thread(tmp_path):
    from types import SimpleNamespace

    from jfr_lib.gui.app import Databases

    pytest.importorskip("mongomock")
    queue = SimpleNamespace(backend="mongodb", uri="mongomock://", database="gui", prefix="jfr")
    found = {}
    for backend in ("mongodb", "sqlite"):
        project = SimpleNamespace(queue=SimpleNamespace(**{**vars(queue), "backend": backend}), base_dir=tmp_path,
                                  queue_db_path=tmp_path / "queue.db")  # fmt: skip
        databases, together = Databases(project), threading.Barrier(4, timeout=60)  # four threads at once

        def use(_, databases=databases, together=together):
            together.wait()
            db = databases.get()
            return id(db) if db.count_jobs() == 0 else None

        with ThreadPoolExecutor(4) as pool:
            found[backend] = set(pool.map(use, range(4)))
        databases.close()
    assert len(found["mongodb"]) == 1 and len(found["sqlite"]) == 4
