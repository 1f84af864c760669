"""The dashboard (``jfr gui``): its token, cookie, host and cross-site checks, read-only mode, and the
command itself (a real server process)."""

from __future__ import annotations

import signal
import subprocess
import sys

import pytest
from test_gui import (  # noqa: F401  the fixtures chain and gui, and helpers
    APIS,
    BASE,
    PAGES,
    PORT,
    chain,
    client_for,
    gui,
    make_app,
    post,
    run_main,
    state_of,
)

from conftest import ROOT

pytest.importorskip("starlette", reason="the gui extra is not installed (pip install 'jfr[gui]')")


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
    for raw in (b"//evil.example/x", b"/\\evil.example/x", b"/%5Cevil.example/x", b"/\\/evil.example/x"):
        assert redirect_of(app, raw) == b"/evil.example/x", raw  # never to another site
    assert redirect_of(app, "/jobs/é x".encode()) == b"/jobs/%C3%A9%20x"


def redirect_of(app, raw_path: bytes) -> bytes:
    """Where the first visit to ``raw_path`` with the token is sent (a raw ASGI call: clients clean paths)."""
    import asyncio

    sent = []

    async def receive():
        return {"type": "http.request", "body": b""}

    async def send(message):
        sent.append(message)

    from urllib.parse import unquote

    scope = {"type": "http", "method": "GET", "path": unquote(raw_path.decode()), "raw_path": raw_path, "root_path": "",
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
    app, _ = make_app(chain, bound="127.0.0.2")  # --host 127.0.0.2: its own address, any 127.x.y.z
    with client_for(app) as client:
        for host, status in (("127.0.0.2:8765", 401), ("127.9.8.7", 401), ("[::1]:8765", 401), ("evil.example", 403),
                             ("127.0.0.2.evil.example", 403)):  # fmt: skip
            assert client.get("/api/overview", headers={"Host": host}).status_code == status, host
    app, _ = make_app(chain, bound="::1")
    with client_for(app) as client:
        assert client.get("/api/overview", headers={"Host": "127.0.0.2"}).status_code == 403
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
    client.cookies.clear()  # a script: the token in a header, no CSRF value, still no other site
    script = {"Authorization": "token the-token"}
    for other in ({"Sec-Fetch-Site": "cross-site"}, {"Origin": "http://evil.example"}):
        assert client.post("/api/jobs/1/resume", json={}, headers={**script, **other}).status_code == 403, other
    assert client.post("/api/jobs/1/resume", json={}, headers={"Authorization": "token wrong"}).status_code == 403
    assert client.post("/api/jobs/1/resume", json={}, headers=script).json() == {"message": "job 1: PAUSED -> READY"}


def test_only_http_and_lifespan_get_through(chain):
    import asyncio

    from jfr_lib.gui.auth import Keys, TokenMiddleware

    reached, sent = [], []

    async def inner(scope, receive, send):
        reached.append(scope["type"])

    async def send(message):
        sent.append(message)

    middleware = TokenMiddleware(inner, Keys("the-token", PORT))
    headers = [(b"host", b"127.0.0.1:8765"), (b"authorization", b"token the-token")]
    for kind in ("lifespan", "websocket", "webtransport"):
        scope = {"type": kind, "path": "/ws", "headers": headers, "query_string": b"token=the-token"}
        asyncio.run(middleware(scope, None, send))
    assert reached == ["lifespan"] and sent == [{"type": "websocket.close", "code": 1008}]


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


def test_another_loopback_address_answers_to_its_own_name(penv):
    import httpx

    proc, url = start_gui(penv, "--host", "127.0.0.2")
    try:
        base, token = url.split("/?token=")
        assert base.startswith("http://127.0.0.2:")
        assert httpx.get(f"{base}/api/overview", headers={"Authorization": f"token {token}"}).status_code == 200
        rebound = {"Host": "evil.example", "Authorization": f"token {token}"}
        assert httpx.get(f"{base}/api/overview", headers=rebound).status_code == 403
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0 and "warning" not in err


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
