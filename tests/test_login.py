"""Interactive logins (``interactive_login: true``) against a real sshd that wants a key *and* a one-time
code (tests/infra/start-sshd-otp.sh: PAM's google-authenticator, codes made with oathtool), for both
connection types: the OpenSSH master and fabric's login process. The prompts are answered through a
pseudo-terminal (pexpect), as a person would."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pexpect
import pytest
from jobflow import Flow
from test_hosts import (  # noqa: F401  the host contract suite, run here on logged-in hosts
    ssh_worker,
    test_background_job_does_not_hold_the_command,
    test_files_round_trip,
    test_run_reports_exit_code_output_and_cwd,
    test_run_times_out,
)

from jfr_lib.config import Worker
from jfr_lib.errors import LoginNeeded

import testjobs as tj
from conftest import INFRA_DIR, INFRA_SCRIPTS, ROOT, _alive, _read_env, gone, remote_worker_yaml, wait_for

CLIENTS = ("openssh", "fabric")
PROMPT = "Verification code:"


@pytest.fixture(scope="session")
def otp(infra):
    """The one-time-code sshd (127.0.0.1:2223), started for the session if it was not running."""
    started = not _alive(INFRA_DIR / "otp" / "sshd.pid")
    subprocess.run(["bash", str(INFRA_SCRIPTS / "start-sshd-otp.sh"), str(INFRA_DIR)], check=True, timeout=600)
    yield {**infra, **_read_env("otp.env")}
    if started:
        subprocess.run(["bash", str(INFRA_SCRIPTS / "stop-sshd-otp.sh"), str(INFRA_DIR)], timeout=120)


def code(otp, offset: int = 0) -> str:
    """The current one-time code (``offset`` seconds later, for a code not used yet)."""
    args = ["oathtool", "--totp", "-b", otp["TEST_OTP_SECRET"]]
    if offset:
        args.insert(2, f"--now={time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime(time.time() + offset))}")
    return subprocess.run(args, capture_output=True, text=True, timeout=30, check=True).stdout.strip()


@pytest.fixture
def sockets(monkeypatch):
    """A private folder for the logins' sockets of this test (``JFR_SOCKET_DIR`` of every jfr
    process); the logins left in it are closed at the end."""
    from jfr_lib.hosts import openssh

    folder = Path(tempfile.mkdtemp(prefix="jfl", dir="/tmp"))
    monkeypatch.setenv("JFR_SOCKET_DIR", str(folder / "s"))
    openssh.reset()
    yield folder
    for sock in folder.rglob("*"):
        if sock.is_socket() and sock.name.startswith("ssh-"):
            subprocess.run(["ssh", "-o", f"ControlPath={sock}", "-O", "exit", "any"], capture_output=True,
                           timeout=30)  # fmt: skip
        elif sock.is_socket():
            _end_login_process(sock)
    openssh.reset()
    shutil.rmtree(folder, ignore_errors=True)


def _end_login_process(sock: Path) -> None:
    import socket as sockets_

    from jfr_lib.hosts import broker

    with sockets_.socket(sockets_.AF_UNIX) as s:
        s.settimeout(10)
        try:
            s.connect(str(sock))
            broker._send(s, {"op": "exit"})
            broker._receive(s)
        except OSError:
            pass


def otp_yaml(otp, name: str, folder: str, client: str, scheduler: str = "shell", **extra) -> str:
    keys = {"port": otp["TEST_OTP_PORT"], "known_hosts": otp["TEST_OTP_KNOWN_HOSTS"], "ssh_client": client,
            "interactive_login": "true", **extra}  # fmt: skip
    if scheduler == "slurm":
        keys.update(resources="{partition: debug}", poll_interval=1)
    return remote_worker_yaml(otp, name, folder, scheduler=scheduler, **keys)


def spawn(penv, *args, timeout: float = 120):
    return pexpect.spawn(sys.executable, [str(ROOT / "jfr.py"), *args], env=penv.env(), encoding="utf-8",
                         timeout=timeout, dimensions=(24, 200))  # fmt: skip


def answer(child, answers) -> tuple:
    """Answer every code prompt with the next of ``answers`` (a callable: the same each time) until
    the command ends; (prompts seen, exit code, everything it printed)."""
    seen, printed = 0, ""
    while True:
        i = child.expect([PROMPT, pexpect.EOF])
        printed += child.before
        if i == 1:
            break
        seen += 1
        child.sendline(answers() if callable(answers) else answers[seen - 1])
    child.close()
    return seen, child.exitstatus, printed


def login_pid(worker) -> int | None:
    from jfr_lib.hosts import broker
    from jfr_lib.hosts.openssh import OpenSSHHost

    if worker.ssh_client == "openssh":
        host = OpenSSHHost(worker)
        return host.master_pid() if host.logged_in() else None
    return broker.login_pid(worker)


def as_test_user(otp, *argv) -> None:
    subprocess.run(["runuser", "-u", otp["TEST_SSH_USER"], "--", *argv], check=True, timeout=30)


def marker_lines(path: Path) -> list:
    return path.read_text().split() if path.exists() else []


# --- the runner asks once ---------------------------------------------------------
@pytest.mark.infra
@pytest.mark.e2e
@pytest.mark.parametrize("client", CLIENTS)
def test_runner_start_asks_once_and_runs_shell_and_slurm(penv, otp, remote_dir, sockets, client):
    workers = (otp_yaml(otp, "otp_shell", f"{remote_dir}/shell", client)
               + otp_yaml(otp, "otp_slurm", f"{remote_dir}/slurm", client, scheduler="slurm"))  # fmt: skip
    penv.write(workers=workers)
    from jfr_lib import submit_flow

    marker = Path(remote_dir) / "ran.txt"
    for worker in ("otp_shell", "otp_slurm"):
        jobs, previous = [], None
        for i in range(10):
            previous = tj.append_line(str(marker), f"{worker}-{i}", after=previous.output if previous else None)
            jobs.append(previous)
        submit_flow(Flow(jobs, name=worker), worker=worker)
    as_test_user(otp, "mkdir", "-p", remote_dir)
    child = spawn(penv, "runner", "start")
    prompts, status, printed = answer(child, lambda: code(otp))
    try:
        assert (prompts, status) == (1, 0), printed  # two workers on one account: one login
        assert "runner started" in printed
        wait_for(lambda: all(j["state"] == "COMPLETED" for j in penv.jobs()), 300, interval=0.5,
                 message="20 jobs on the shell worker and on SLURM")  # fmt: skip
        lines = marker_lines(marker)
        assert sorted(lines) == sorted(f"{w}-{i}" for w in ("otp_shell", "otp_slurm") for i in range(10))
        assert all(j["worker"] in ("otp_shell", "otp_slurm") for j in penv.jobs())
        assert login_pid(penv.project.worker("otp_shell"))
    finally:
        penv.jfr("runner", "stop", timeout=120)
    # the login outlives the runner: a start without a terminal (cron) rides on it, asking nothing
    worker = penv.project.worker("otp_shell")
    pid = login_pid(worker)
    assert pid
    _, out, err = penv.jfr("runner", "start", timeout=120)
    assert "runner started" in out and "needs a login" not in err
    _, out, _ = penv.jfr("runner", "stop", "--logout", timeout=120)
    assert "otp_shell: logged out" in out
    wait_for(lambda: gone(pid) and login_pid(worker) is None, 30, message="the login closed")


# --- the login goes, the worker waits, `jfr login` brings it back --------------------
@pytest.mark.infra
@pytest.mark.e2e
@pytest.mark.parametrize("client", CLIENTS)
def test_a_lost_login_waits_then_jfr_login_resumes(penv, otp, remote_dir, sockets, client):
    penv.write(workers=otp_yaml(otp, "otp", f"{remote_dir}/run", client))
    from jfr_lib import submit_flow

    marker = Path(remote_dir) / "ran.txt"
    as_test_user(otp, "mkdir", "-p", remote_dir)
    jobs, previous = [], None
    for i in range(10):
        previous = tj.append_line(str(marker), f"otp-{i}", after=previous.output if previous else None, seconds=0.3)
        jobs.append(previous)
    submit_flow(Flow(jobs, name="remote"), worker="otp")
    prompts, status, printed = answer(spawn(penv, "runner", "start"), lambda: code(otp))
    assert (prompts, status) == (1, 0), printed
    worker = penv.project.worker("otp")
    try:
        wait_for(lambda: sum(j["state"] == "COMPLETED" for j in penv.jobs()) >= 3, 180, interval=0.3,
                 message="3 jobs done")  # fmt: skip
        pid = login_pid(worker)
        os.kill(pid, signal.SIGKILL)  # the login dies mid-flow
        wait_for(lambda: gone(pid), 10, message="the login process gone")

        def info() -> str:
            return penv.jfr("runner", "info", timeout=60)[1]

        wait_for(lambda: "login needed   worker otp since" in info(), 120, interval=0.5, message="login needed")
        # a job that needs the host now waits for the login, spending no attempt (the project allows
        # 3, 0.2 s apart: a step failing for any other reason would be REMOTE_ERROR within a second)
        submit_flow(Flow([tj.append_line(str(marker), "otp-late")], name="late"), worker="otp")

        def late():
            return next(j for j in penv.jobs() if j["name"] == "append_line" and j["flow_uuid"] == late_flow)

        late_flow = penv.jobs()[-1]["flow_uuid"]
        wait_for(lambda: late().get("login_wait"), 120, interval=0.3, message="the late job waiting for the login")
        # another worker keeps running meanwhile
        submit_flow(Flow([tj.add(1, 2), tj.add(3, 4)], name="local"), worker="local")
        wait_for(lambda: [j["state"] for j in penv.jobs() if j["worker"] == "local"] == ["COMPLETED"] * 2, 120,
                 message="the local worker's jobs")  # fmt: skip
        remote = [j for j in penv.jobs() if j["worker"] == "otp"]
        assert not [j for j in remote if j["state"] in ("REMOTE_ERROR", "FAILED")]
        assert any(j["state"] != "COMPLETED" for j in remote)
        assert all(not j.get("step_attempts") for j in remote)  # waiting spends no attempt
        assert late()["state"] in ("READY", "CHECKED_OUT") and "login needed" in late()["last_error"]
        assert "login needed   worker otp since" in info()
        code_, out, _ = penv.jfr("project", "check", "-w", "otp", check=False, timeout=120)
        assert code_ == 1 and re.search(r"login needed since \S+ \S+: run `jfr login otp`", out), out
        log = (penv.root / "logs" / f"{penv.name}.log").read_text()
        assert "worker otp needs a login; its jobs wait (run `jfr login otp`)" in log
        # `jfr login` with a fresh code: the runner goes on by itself
        prompts, status, printed = answer(spawn(penv, "login", "otp"), lambda: code(otp, offset=30))
        assert (prompts, status) == (1, 0), printed
        assert "otp: logged in" in printed
        wait_for(lambda: all(j["state"] == "COMPLETED" for j in penv.jobs()), 180, interval=0.5,
                 message="the flow completed after the new login")  # fmt: skip
        expected = [f"otp-{i}" for i in range(10)] + ["otp-late"]
        assert sorted(marker_lines(marker)) == sorted(expected)  # each job ran once
        assert not late().get("login_wait")
        assert "login needed" not in info()
    finally:
        penv.jfr("runner", "stop", timeout=120)


# --- refusals, one line each ------------------------------------------------------------
@pytest.mark.infra
@pytest.mark.parametrize("client", CLIENTS)
def test_a_wrong_code_is_one_line(penv, otp, remote_dir, sockets, client):
    penv.write(workers=otp_yaml(otp, "otp", f"{remote_dir}/run", client))
    prompts, status, printed = answer(spawn(penv, "login", "otp"), lambda: "000000")
    errors = [line for line in printed.splitlines() if line.startswith("jfr: error:")]
    assert prompts >= 1 and status != 0 and "Traceback" not in printed
    assert len(errors) == 1 and "login failed: authentication failed" in errors[0], printed
    assert login_pid(penv.project.worker("otp")) is None


@pytest.mark.infra
@pytest.mark.parametrize("client", CLIENTS)
def test_an_unknown_host_key_and_a_refused_port_are_one_line(penv, otp, remote_dir, sockets, client, tmp_path):
    import socket

    empty = tmp_path / "known_hosts"
    empty.write_text("")
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        free = s.getsockname()[1]
    workers = (otp_yaml(otp, "stranger", f"{remote_dir}/a", client, known_hosts=str(empty))
               + otp_yaml(otp, "closed", f"{remote_dir}/b", client, port=free))  # fmt: skip
    penv.write(workers=workers)
    for name, expected in (("stranger", "unknown host key"), ("closed", "connection refused")):
        prompts, status, printed = answer(spawn(penv, "login", name), lambda: code(otp))
        errors = [line for line in printed.splitlines() if line.startswith("jfr: error:")]
        assert prompts == 0 and status != 0 and "Traceback" not in printed
        assert len(errors) == 1 and expected in errors[0], printed


@pytest.mark.infra
def test_a_daemon_never_asks(penv, otp, remote_dir, sockets):
    """Without a terminal, `jfr runner start` and `jfr login` say what is missing and never wait for input."""
    penv.write(workers=otp_yaml(otp, "otp", f"{remote_dir}/run", "openssh"))
    status, out, err = penv.jfr("login", "otp", check=False, timeout=60)
    assert status == 2 and err.strip() == ("jfr: error: worker otp needs a login, and logging in needs a "
                                           "terminal (run `jfr login` in one)")  # fmt: skip
    status, out, err = penv.jfr("login", "--status", check=False, timeout=60)
    assert (status, out) == (1, "otp: login needed\n")
    try:
        status, out, err = penv.jfr("runner", "start", timeout=120)
        assert "worker otp needs a login" in err and "runner started" in out
    finally:
        penv.jfr("runner", "stop", timeout=120)


def test_interactive_login_is_checked(tmp_path):
    from test_config_check import problems_of

    local = "name: demo\nworkers:\n  w:\n    type: local\n    work_dir: /tmp/w\n    interactive_login: true\n"
    assert problems_of(tmp_path, local) == ["workers.w.interactive_login: is for remote workers only"]
    remote = ("name: demo\nworkers:\n  w:\n    type: remote\n    host: h\n    work_dir: /tmp/w\n"
              "    interactive_login: true\n    gateway: jump.example.org\n")  # fmt: skip
    assert problems_of(tmp_path, remote) == [
        "workers.w.interactive_login: with a gateway needs `ssh_client: openssh` (its ProxyJump)"]
    from jfr_lib.config import load_project_file

    (tmp_path / "ok.yaml").write_text(remote + "    ssh_client: openssh\n")
    assert load_project_file(tmp_path / "ok.yaml").worker("w").interactive_login


# --- the host contract on logged-in hosts ----------------------------------------------
def otp_worker(otp, client: str, name: str) -> Worker:
    return Worker(**{**vars(ssh_worker(otp)), "port": int(otp["TEST_OTP_PORT"]), "ssh_client": client, "name": name,
                     "known_hosts": otp["TEST_OTP_KNOWN_HOSTS"], "interactive_login": True})  # fmt: skip


@pytest.fixture(params=CLIENTS)
def host_and_dir(request, penv, otp, remote_dir, sockets):
    """A host of each connection type riding on a login made through `jfr login` on a terminal."""
    from jfr_lib.hosts import get_host

    penv.write(workers=otp_yaml(otp, "otp", remote_dir, request.param))
    prompts, status, printed = answer(spawn(penv, "login", "otp"), lambda: code(otp))
    assert (prompts, status) == (1, 0), printed
    host = get_host(otp_worker(otp, request.param, "otp"))
    yield host, remote_dir
    host.close()


@pytest.mark.infra
def test_without_a_login_calls_raise_login_needed(otp, sockets):
    from jfr_lib.hosts import get_host

    for client in CLIENTS:
        worker = otp_worker(otp, client, "w")
        with pytest.raises(LoginNeeded, match=r"login needed \(no logged-in connection\): run `jfr login w`"):
            get_host(worker).run("true")


@pytest.mark.infra
def test_commands_that_time_out_or_lose_the_login_mid_way(host_and_dir):
    """A timed-out command leaves the login usable (files too); a login that ends under a running
    command is a LoginNeeded, never an exit code that could pass for the command's."""
    import threading

    from jfr_lib.errors import HostError

    host, folder = host_and_dir
    with pytest.raises(HostError, match="timed out"):
        host.run("sleep 5", timeout=1)
    host.mkdir(folder)
    host.write_text(f"{folder}/f", "still here")
    assert host.read_text(f"{folder}/f") == "still here" and host.exists(f"{folder}/f")
    outcome = {}

    def long_command():
        try:
            outcome["result"] = host.run("sleep 60")
        except Exception as exc:  # what the test looks at
            outcome["error"] = exc

    thread = threading.Thread(target=long_command)
    thread.start()
    wait_for(lambda: "sleep 60" in subprocess.run(["pgrep", "-af", "sleep 60"], capture_output=True, text=True,
                                                   timeout=30).stdout, 30, message="the command running")  # fmt: skip
    pid = login_pid(host.worker)
    os.kill(pid, signal.SIGKILL)
    thread.join(90)
    assert not thread.is_alive() and "result" not in outcome, outcome
    assert isinstance(outcome["error"], LoginNeeded), outcome


@pytest.mark.infra
@pytest.mark.parametrize("client", CLIENTS)
def test_two_logins_at_once_make_one(penv, otp, remote_dir, sockets, client):
    penv.write(workers=otp_yaml(otp, "otp", f"{remote_dir}/run", client))
    first = spawn(penv, "login", "otp")
    first.expect(PROMPT)
    second = spawn(penv, "login", "otp")  # waits for the first, which holds the login's lock
    first.sendline(code(otp))
    first.expect(pexpect.EOF)
    first.close()
    assert first.exitstatus == 0, first.before
    pid = login_pid(penv.project.worker("otp"))
    prompts, status, printed = answer(second, lambda: code(otp))
    assert (prompts, status) == (0, 0) and "otp: logged in" in printed
    assert login_pid(penv.project.worker("otp")) == pid  # the first login, not a second one
    socks = [p for p in sockets.rglob("*") if p.is_socket()]
    assert len(socks) == 1
    _, out, _ = penv.jfr("login", "--logout", "otp", timeout=60)
    assert out == "otp: logged out\n"
    wait_for(lambda: gone(pid), 30, message="the login process gone")
    assert [p for p in sockets.rglob("*") if p.is_socket()] == []  # its socket removed with it


@pytest.mark.infra
@pytest.mark.parametrize("client", CLIENTS)
def test_a_login_given_up_gives_the_terminal_back(penv, otp, remote_dir, sockets, client):
    penv.write(workers=otp_yaml(otp, "otp", f"{remote_dir}/run", client))
    script = f"{sys.executable} {ROOT / 'jfr.py'} login otp --timeout 3; echo exit=$?; stty -a"
    child = pexpect.spawn("bash", ["-c", script], env=penv.env(), encoding="utf-8", timeout=60)
    child.expect(PROMPT)  # nothing typed
    child.expect(pexpect.EOF)
    printed = child.before
    assert re.search(r"jfr: error: .*login timed out after 3 s|nothing typed within 3 s", printed), printed
    assert "exit=6" in printed
    assert re.search(r"(?<![-\w])echo(?![\w])", printed.split("exit=6", 1)[1])  # echo is on again


@pytest.mark.infra
def test_a_socket_of_another_user_is_no_login(otp, tmp_path):
    """In a shared folder, a socket another user listens on does not pass for this user's master."""
    from jfr_lib.hosts.openssh_login import _listening

    shared = Path(tempfile.mkdtemp(prefix="jfs", dir="/tmp"))
    shared.chmod(0o777)
    path = shared / "master"
    listen = ("import socket, time; s = socket.socket(socket.AF_UNIX); s.bind({!r}); s.listen(1); "
              "open({!r}, 'w').close(); time.sleep(60)").format(str(path), str(shared / "ready"))  # fmt: skip
    other = subprocess.Popen(["runuser", "-u", otp["TEST_SSH_USER"], "--", "/usr/bin/python3", "-c", listen])
    try:
        wait_for(lambda: (shared / "ready").exists(), 30, message="the other user's socket")
        assert not _listening(str(path))
    finally:
        other.kill()
        other.wait()
        shutil.rmtree(shared, ignore_errors=True)
    import socket

    mine = tmp_path / "m"
    with socket.socket(socket.AF_UNIX) as s:
        s.bind(str(mine))
        s.listen(1)
        assert _listening(str(mine))
