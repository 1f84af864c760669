"""The dashboard (``jfr gui``): its token, cookie and cross-site checks, its pages and API on a real
project, its actions under the command line's rules and messages, and the command itself."""

from __future__ import annotations

import io
import json
import signal
import subprocess
import sys
import warnings

import pytest
from jobflow import Flow

from jfr_lib import submit_flow
from jfr_lib.cli import main

import testjobs as tj
from conftest import ROOT

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


def make_app(penv, read_only: bool = False, loopback_only: bool = True):
    from jfr_lib.gui.app import create_app
    from jfr_lib.gui.auth import Keys

    keys = Keys("the-token", PORT)
    return create_app(penv.project, keys, read_only=read_only, loopback_only=loopback_only), keys


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


# --- the token -------------------------------------------------------------------------------------


def test_every_page_and_api_needs_the_token(chain):
    app, keys = make_app(chain)
    with client_for(app) as client:
        for path in PAGES + APIS:
            assert client.get(path).status_code == 401, path
            assert client.get(path, headers={"Authorization": "token wrong"}).status_code == 403, path
            assert client.get(path, headers={"Cookie": f"{keys.cookie_name}=forged"}).status_code == 403, path
        refused = client.get("/api/jobs")
        assert "needs its token" in refused.json()["error"] and "the-token" not in refused.text
        assert client.get("/jobs?token=wrong").status_code == 403
        assert client.post("/api/jobs/1/pause", json={}, headers={"X-JFR-CSRF": keys.csrf}).status_code == 401
        for path in PAGES + APIS:  # a script may send the token in a header
            answer = client.get(path, headers={"Authorization": "token the-token"})
            assert answer.status_code in (200, 404), path  # 404: job 1 has no output nor run folder yet
    assert state_of(chain, 1) == "READY"


def test_first_visit_sets_a_strict_cookie_and_drops_the_token_from_the_address(chain):
    app, keys = make_app(chain)
    with client_for(app) as client:
        first = client.get("/jobs?state=READY&token=the-token", follow_redirects=False)
        assert first.status_code == 303
        assert first.headers["location"] == "/jobs?state=READY"
        cookie = first.headers["set-cookie"]
        assert cookie.startswith(f"{keys.cookie_name}={keys.cookie_value};")
        assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "the-token" not in cookie
        page = client.get("/jobs?state=READY")  # the cookie alone from now on
        assert page.status_code == 200 and keys.csrf in page.text and "the-token" not in page.text
        assert page.headers["x-frame-options"] == "DENY" and "frame-ancestors 'none'" in page.headers[
            "content-security-policy"]  # fmt: skip
        assert client.get("/api/jobs").json()["total"] == 3
    assert redirect_of(app, b"//evil.example/x") == b"/evil.example/x"  # never to another site


def redirect_of(app, raw_path: bytes) -> bytes:
    """Where the first visit to ``raw_path`` with the token is sent (a raw ASGI call: clients clean paths)."""
    import asyncio

    sent = []

    async def receive():
        return {"type": "http.request", "body": b""}

    async def send(message):
        sent.append(message)

    scope = {"type": "http", "method": "GET", "path": raw_path.decode(), "raw_path": raw_path, "root_path": "",
             "query_string": b"token=the-token", "headers": [(b"host", b"127.0.0.1:8765")]}  # fmt: skip
    asyncio.run(app(scope, receive, send))
    assert sent[0]["status"] == 303
    return dict(sent[0]["headers"])[b"location"]


def test_only_loopback_host_names_when_listening_on_loopback(chain):
    app, _ = make_app(chain)
    with client_for(app) as client:
        client.get("/?token=the-token")
        assert client.get("/api/overview").status_code == 200
        assert client.get("/api/overview", headers={"Host": "localhost:9000"}).status_code == 200  # an SSH tunnel
        rebound = client.get("/api/overview", headers={"Host": "evil.example:8765"})
        assert rebound.status_code == 403 and "localhost" in rebound.json()["error"]
    app, _ = make_app(chain, loopback_only=False)  # --host: any name, the token still needed
    with client_for(app) as client:
        assert client.get("/api/overview", headers={"Host": "node7.cluster:8765"}).status_code == 401
        elsewhere = {"Host": "node7.cluster:8765", "Authorization": "token the-token"}
        assert client.get("/api/overview", headers=elsewhere).status_code == 200


def test_cross_site_posts_are_refused(gui):
    client, keys, env = gui
    for headers in ({"X-JFR-CSRF": ""}, {"X-JFR-CSRF": "guess"},
                    {"X-JFR-CSRF": keys.csrf, "Sec-Fetch-Site": "cross-site"},
                    {"X-JFR-CSRF": keys.csrf, "Sec-Fetch-Site": "same-site"},
                    {"X-JFR-CSRF": keys.csrf, "Origin": "http://evil.example"}):  # fmt: skip
        answer = client.post("/api/jobs/1/pause", json={}, headers=headers)
        assert answer.status_code == 403, headers
        assert answer.json()["error"].startswith("cross-site request refused")
    form = client.post("/api/jobs/1/pause", data={"x": "1"})  # what a form of another site could send
    assert form.status_code == 403
    assert state_of(env, 1) == "READY"
    same = post(client, keys, "/api/jobs/1/pause", Origin=BASE, **{"Sec-Fetch-Site": "same-origin"})
    assert same.status_code == 200 and same.json() == {"message": "job 1: READY -> PAUSED"}


def test_read_only_offers_no_action_and_refuses_every_one(chain):
    app, keys = make_app(chain, read_only=True)
    with client_for(app) as client:
        client.get("/?token=the-token")
        page = client.get("/jobs/1").text
        assert '<meta name="jfr-read-only" content="yes">' in page and 'id="read-only"' in page
        for verb in ("retry", "pause", "resume", "stop", "rerun", "delete", "priority"):
            answer = post(client, keys, f"/api/jobs/1/{verb}", {"value": 3})
            assert answer.status_code == 403 and "read-only" in answer.json()["error"], verb
        for verb in ("resume", "delete"):
            assert post(client, keys, f"/api/flows/1/{verb}").status_code == 403
        assert client.get("/api/jobs/1").status_code == 200  # reading is allowed
    with chain.db() as db:
        assert db.count_jobs() == 3 and db.get_job(db_id=1)["state"] == "READY"
    app, _ = make_app(chain)
    with client_for(app) as client:
        client.get("/?token=the-token")
        assert '<meta name="jfr-read-only" content="no">' in client.get("/jobs/1").text


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
        shallow = {sort: ids(sort=sort, size=6, page=3)[1] for sort in queries.JOB_SORT_KEYS}
        monkeypatch.setattr(queries, "SHALLOW", 0)  # every page read through the keys, as deep pages are
        for sort, expected in shallow.items():
            assert ids(sort=sort, size=6, page=3)[1] == expected, sort
        assert ids(sort="name", order="asc", size=500)[1] == every
        assert ids(name="relax-1*", size=4, page=2)[1] == [16, 15, 14, 13]


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
        failed = client.get("/api/jobs/2").json()
        assert failed["state"] == "FAILED" and "no luck today" in failed["error"]
        assert "RuntimeError: no luck today" in failed["traceback"]
        assert failed["actions"]["rerun"] and not failed["actions"]["rerun_force"]
        assert client.get("/api/jobs/2/output").json() == {"error": "job 2 (FAILED) has no output yet"}
        assert client.get("/api/jobs/77").status_code == 404


# --- the command ------------------------------------------------------------------------------------------


def test_the_command_refuses_an_address_in_port_and_bad_ports(penv, capsys):
    for value, words in (("0.0.0.0:8765", "the address goes with --host"), ("70000", "from 0"), ("x", "from 0")):
        code, _, err = run_main(capsys, "gui", "--port", value)
        assert code == 2 and words in err and len(err.strip().splitlines()) == 1, value


def start_gui(env, *args):
    proc = subprocess.Popen([sys.executable, str(ROOT / "jfr.py"), "gui", "--port", "0", *args], env=env.env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)  # fmt: skip
    line = proc.stdout.readline()
    assert "?token=" in line, proc.stderr.read() if proc.poll() is not None else line
    return proc, line.split()[-1]


def test_the_command_serves_on_loopback_stops_on_sigterm_and_refuses_a_port_in_use(penv):
    import httpx

    proc, url = start_gui(penv)
    try:
        assert url.startswith("http://127.0.0.1:")
        base, token = url.split("/?token=")
        assert httpx.get(f"{base}/api/overview").status_code == 401
        allowed = httpx.get(f"{base}/api/overview", headers={"Authorization": f"token {token}"})
        assert allowed.json()["project"] == "test"
        port = base.rsplit(":", 1)[1]
        busy = penv.jfr("gui", "--port", port, check=False)
        assert busy[0] == 1 and f"--port {port}: address 127.0.0.1:{port} is already in use" in busy[2]
    finally:
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0 and "jfr dashboard stopped" in out, err


def test_another_address_only_with_host_and_a_warning(penv):
    import httpx

    proc, url = start_gui(penv, "--host", "0.0.0.0")
    try:
        base, token = url.split("/?token=")
        assert base.startswith("http://0.0.0.0:")
        local = base.replace("0.0.0.0", "127.0.0.1")
        assert httpx.get(f"{local}/api/overview").status_code == 401
        other_name = {"Host": f"node7.cluster:{base.rsplit(':', 1)[1]}", "Authorization": f"token {token}"}
        assert httpx.get(f"{local}/api/overview", headers=other_name).status_code == 200
    finally:
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0
    assert "jfr: warning: listening on 0.0.0.0, not on 127.0.0.1 only" in err and "token is still required" in err


def test_without_the_extra_one_line_says_what_to_install(penv):
    code = ("import sys; sys.modules['uvicorn'] = None; from jfr_lib.cli import main; "
            "sys.exit(main(['gui', '--port', '0']))")  # fmt: skip
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=ROOT,
                         env=penv.env())  # fmt: skip
    assert out.returncode == 2
    assert out.stderr.strip() == "jfr: error: jfr gui needs the gui extra (uvicorn is missing): pip install 'jfr[gui]'"


def test_help_and_listing_commands_do_not_import_the_dashboard(penv):
    loaded = "sorted(m for m in ('starlette', 'uvicorn', 'jinja2', 'jfr_lib.gui') if m in sys.modules)"
    code = ("import sys; from jfr_lib.cli import main\ntry:\n    main(sys.argv[1:])\nexcept SystemExit:\n    pass\n"
            f"print('LOADED', {loaded})")  # fmt: skip
    for args in (["--help"], ["gui", "--help"], ["job", "list"], ["flow", "list"], ["runner", "status"]):
        out = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=60,
                             cwd=ROOT, env=penv.env())  # fmt: skip
        assert "LOADED []" in out.stdout, (args, out.stdout, out.stderr)
