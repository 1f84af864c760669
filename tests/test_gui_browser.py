"""The dashboard in a real headless Chromium: ``jfr gui`` and a real runner as subprocesses.

Runs with ``JFR_TEST_INFRA=1`` (as root: Debian's chromium and chromium-driver are
installed when missing), else is skipped. Screenshots of each page go to
``$JFR_TEST_ARTIFACTS/gui`` (default ``tests/artifacts/gui``).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import quote

import pytest
from jobflow import Flow

from jfr_lib import submit_flow

import testjobs as tj
from conftest import INFRA_SCRIPTS, ROOT, wait_for

pytestmark = pytest.mark.browser
WAIT = 180  # seconds: a shared 2-core machine may be slow
ARTIFACTS = Path(os.environ.get("JFR_TEST_ARTIFACTS") or ROOT / "tests" / "artifacts") / "gui"


@pytest.fixture(scope="session")
def chromium():
    """(chromium, chromedriver) paths, installed with tests/infra/lib.sh when missing."""
    if os.environ.get("JFR_TEST_INFRA") != "1":
        pytest.skip("set JFR_TEST_INFRA=1 (as root) to run the dashboard in a real headless Chromium")
    pytest.importorskip("selenium", reason="selenium is not installed (pip install -e '.[test]')")
    pytest.importorskip("starlette", reason="the gui extra is not installed (pip install 'jfr[gui]')")
    if not (shutil.which("chromium") and shutil.which("chromedriver")):
        if os.geteuid() != 0:
            pytest.skip("chromium and chromium-driver are missing, and installing them needs root")
        subprocess.run(["bash", "-c", f". {INFRA_SCRIPTS / 'lib.sh'}; install_missing chromium chromium-driver"],
                       check=True, timeout=1200)  # fmt: skip
    return shutil.which("chromium"), shutil.which("chromedriver")


@pytest.fixture(scope="module")
def driver(chromium):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = chromium[0]
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                "--window-size=1400,1000", "--no-first-run"):  # fmt: skip
        options.add_argument(arg)
    browser = webdriver.Chrome(options=options, service=Service(chromium[1]))
    browser.set_page_load_timeout(WAIT)
    yield browser
    browser.quit()


class Gui:
    """``jfr gui --port 0`` in a subprocess; its URL and token."""

    def __init__(self, env, *args):
        self.proc = subprocess.Popen([sys.executable, str(ROOT / "jfr.py"), "gui", "--port", "0", *args],
                                     env=env.env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                     start_new_session=True)  # fmt: skip
        line = self.proc.stdout.readline()
        assert "?token=" in line, self.proc.stderr.read()
        self.url = line.split()[-1]
        self.base, self.token = self.url.split("/?token=")

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.communicate()
        assert self.proc.returncode == 0


@pytest.fixture(scope="module")
def site(module_penv, chromium):
    """A project with a flow that fails once (until its marker exists), a runner, and the dashboard."""
    marker = module_penv.root / "marker"
    flaky = tj.flaky(str(marker))
    flaky.name = "flaky"
    submit_flow(Flow([flaky], name="flaky-flow"), project=module_penv.project)
    gui = Gui(module_penv)
    runner = module_penv.start_runner()
    yield module_penv, gui, marker
    runner.stop()
    gui.stop()


def shot(driver, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    driver.execute_script("window.scrollTo(0, 0)")
    driver.save_screenshot(str(ARTIFACTS / f"{name}.png"))


def until(driver, predicate, what: str):
    """Wait for ``predicate(driver)``; on a timeout, keep a screenshot and say what the page showed."""
    from selenium.common.exceptions import StaleElementReferenceException, TimeoutException
    from selenium.webdriver.support.ui import WebDriverWait

    redrawn = (StaleElementReferenceException,)  # the page redrew what was just found: look again
    try:
        return WebDriverWait(driver, WAIT, poll_frequency=0.2, ignored_exceptions=redrawn).until(predicate)
    except TimeoutException:
        shot(driver, "failed-" + "".join(c if c.isalnum() else "-" for c in what)[:60])
        text = driver.find_element("tag name", "body").text[-2000:]
        raise AssertionError(f"timed out after {WAIT} s waiting for {what}; {driver.current_url} shows:\n{text}") \
            from None  # fmt: skip


def css(driver, selector: str) -> list:
    from selenium.webdriver.common.by import By

    return driver.find_elements(By.CSS_SELECTOR, selector)


def job_id(env, name: str) -> int:
    return next(j["db_id"] for j in env.jobs() if j["name"] == name)


def test_without_the_token_every_page_and_api_is_refused(site, driver):
    import httpx

    env, gui, _ = site
    for path in ("/", "/jobs", "/jobs/1", "/flows", "/flows/1", "/report", "/static/common.js",
                 "/api/overview", "/api/jobs", "/api/jobs/1", "/api/flows/1", "/api/report"):  # fmt: skip
        assert httpx.get(gui.base + path).status_code == 401, path
    assert httpx.post(f"{gui.base}/api/jobs/1/rerun", json={}).status_code == 401
    driver.get(gui.base + "/jobs")
    assert "needs its token" in driver.find_element("tag name", "body").text
    shot(driver, "0-no-token")


def test_pages_follow_a_running_flow_without_reloading(site, driver):
    env, gui, _ = site
    driver.get(gui.url)
    until(driver, lambda d: d.current_url == gui.base + "/" and css(d, "#states table"), "the overview")
    assert "token" not in driver.current_url
    until(driver, lambda d: "running" in d.find_element("id", "runner").text, "the runner on the overview")
    shot(driver, "1-overview")
    chain = [tj.sleep_add(1.5, 1, 1)]
    for i in range(3):
        chain.append(tj.sleep_add(1.5, chain[-1].output, i))
    for i, job in enumerate(chain):
        job.name = f"step-{i}"
    driver.get(gui.base + "/jobs?name=step-*")
    until(driver, lambda d: css(d, "#jobs .empty"), "an empty list")
    driver.execute_script("window.stayed = true")  # gone if the page reloads
    submit_flow(Flow(chain, name="steps"), project=env.project)
    seen = set()

    def all_completed(d):
        states = [c.text for c in css(d, "#jobs-table td.state")]
        seen.update(states)
        return len(states) == 4 and set(states) == {"COMPLETED"}

    until(driver, all_completed, "the four jobs to complete on the page")
    assert driver.execute_script("return window.stayed") is True
    assert seen - {"COMPLETED"}, f"only saw {seen}"  # they were seen waiting, ready or running first
    shot(driver, "2-jobs")
    flow = next(j for j in env.jobs() if j["name"] == "step-0")["flow_uuid"]
    with env.db() as db:
        flow_id = db.get_flow(uuid=flow)["db_id"]
    driver.get(f"{gui.base}/flows")
    until(driver, lambda d: any(a.text == "steps" for a in css(d, "#flows-table td.name a")), "the flows list")
    shot(driver, "3-flows")
    driver.get(f"{gui.base}/flows/{flow_id}")
    until(driver, lambda d: len(css(d, ".flow-graph .node.state-COMPLETED")) == 4, "the graph, coloured")
    assert len(css(driver, ".flow-graph .link")) == 3
    shot(driver, "4-flow-graph")
    css(driver, f'.flow-graph .node[data-id="{job_id(env, "step-2")}"]')[0].click()
    until(driver, lambda d: d.current_url.endswith(f"/jobs/{job_id(env, 'step-2')}"), "the job page from the graph")
    driver.get(f"{gui.base}/report")
    until(driver, lambda d: css(d, "#plot svg.chart rect.completed"), "the report's plot")
    shot(driver, "5-report")


def test_a_name_holding_html_is_shown_as_text(site, driver):
    env, gui, _ = site
    name = "<img src=x onerror=alert(1)>"
    job = tj.add(2, 2)
    job.name = name
    submit_flow(Flow([job], name="html-name"), project=env.project)
    driver.get(gui.base + "/jobs?name=" + quote("<img*"))
    until(driver, lambda d: [a.text for a in css(d, "#jobs-table td.name a")] == [name], "the job's name as text")
    assert not css(driver, "#jobs-table img") and not css(driver, "img[src='x']")
    assert driver.execute_script("return document.querySelector('#jobs-table td.name a').textContent") == name


def test_a_failed_job_shows_its_traceback_and_reruns_from_the_page(site, driver):
    env, gui, marker = site
    flaky = job_id(env, "flaky")
    wait_for(lambda: next(j for j in env.jobs() if j["db_id"] == flaky)["state"] == "FAILED", WAIT,
             message="the flaky job to fail")  # fmt: skip
    driver.get(f"{gui.base}/jobs/{flaky}")
    until(driver, lambda d: "is missing" in d.find_element("id", "traceback").text, "the traceback")
    assert "RuntimeError" in driver.find_element("id", "traceback").text
    shot(driver, "6-failed-job")
    marker.write_text("now it works")
    css(driver, 'button[data-action="rerun"]')[0].click()
    until(driver, lambda d: f"job {flaky}: FAILED -> " in d.find_element("id", "message").text, "the rerun's answer")
    until(driver, lambda d: css(d, "#title .state-COMPLETED"), "the rerun job to complete on the page")
    driver.find_element("id", "load-output").click()
    until(driver, lambda d: d.find_element("id", "output").text == '"ok"', "the output")
    driver.find_element("id", "load-files").click()
    until(driver, lambda d: css(d, 'pre.tail[data-file="queue.out"]'), "the run folder")
    shot(driver, "7-rerun-job")


def test_a_cross_site_post_is_refused(site, driver, tmp_path):
    env, gui, _ = site
    victim = job_id(env, "flaky")
    wait_for(lambda: next(j for j in env.jobs() if j["db_id"] == victim)["state"] == "COMPLETED", WAIT,
             message="the flaky job to be COMPLETED")  # fmt: skip
    driver.get(gui.url)  # the browser holds the session cookie
    until(driver, lambda d: css(d, "#states table"), "the overview")
    (tmp_path / "evil.html").write_text(
        f'<form id="f" method="post" action="{gui.base}/api/jobs/{victim}/delete">'
        '<input name="output" value="true"></form>'
        f'<script>fetch("{gui.base}/api/jobs/{victim}/delete", {{method: "POST", credentials: "include", '
        'body: "{}", headers: {"Content-Type": "text/plain"}}).then(r => document.title = "fetch " + r.status, '
        'e => document.title = "fetch failed");</script>')  # fmt: skip
    handler = lambda *a, **k: SimpleHTTPRequestHandler(*a, directory=str(tmp_path), **k)  # noqa: E731
    evil = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=evil.serve_forever, daemon=True).start()
    try:
        driver.get(f"http://127.0.0.1:{evil.server_address[1]}/evil.html")
        until(driver, lambda d: d.title.startswith("fetch"), "the other site's fetch")
        driver.execute_script("document.getElementById('f').submit()")
        until(driver, lambda d: "cross-site request refused" in d.find_element("tag name", "body").text,
              "the refusal of the other site's form")  # fmt: skip
        shot(driver, "8-cross-site-refused")
    finally:
        evil.shutdown()
    assert any(j["db_id"] == victim and j["state"] == "COMPLETED" for j in env.jobs())


def test_read_only_offers_no_action(site, driver):
    import httpx

    env, _, _ = site
    victim = job_id(env, "flaky")
    gui = Gui(env, "--read-only")
    try:
        driver.get(gui.url)
        until(driver, lambda d: css(d, "#states table"), "the overview")
        driver.get(f"{gui.base}/jobs/{victim}")
        until(driver, lambda d: css(d, "#title .state"), "the job page")
        assert css(driver, "#read-only") and not css(driver, "button.action")
        csrf = driver.find_element("css selector", 'meta[name="jfr-csrf"]').get_attribute("content")
        shot(driver, "9-read-only")
        answer = httpx.post(f"{gui.base}/api/jobs/{victim}/delete", json={},
                            headers={"Authorization": f"token {gui.token}", "X-JFR-CSRF": csrf})  # fmt: skip
        assert answer.status_code == 403 and "read-only" in answer.json()["error"]
    finally:
        gui.stop()
    assert any(j["db_id"] == victim for j in env.jobs())
