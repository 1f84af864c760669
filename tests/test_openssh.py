"""The OpenSSH host (``ssh_client: openssh``) against the test sshd: the host contract suite of
test_hosts.py, shared master connections, the user's ssh config, timeouts, and a chain run end to end."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import pytest
from jobflow import Flow
from test_config_check import problems_of
from test_hosts import (  # noqa: F401  the contract suite, run here on OpenSSHHost (fixture host_and_dir below)
    ssh_worker,
    test_background_job_does_not_hold_the_command,
    test_files_round_trip,
    test_run_reports_exit_code_output_and_cwd,
    test_run_times_out,
)

from jfr_lib.config import Worker
from jfr_lib.errors import HostError
from jfr_lib.hosts import get_host, openssh
from jfr_lib.hosts.openssh import OpenSSHHost

import testjobs as tj
from conftest import INFRA_DIR, OTHER_HOST_KEY, gone, remote_worker_yaml, wait_for

SSHD_LOG = INFRA_DIR / "ssh" / "sshd.log"


def _stop_masters(folder: Path) -> None:
    for sock in (p for p in folder.iterdir() if p.is_socket()):
        subprocess.run(["ssh", "-o", f"ControlPath={sock}", "-O", "exit", "any"], capture_output=True, timeout=30)


@pytest.fixture
def control(monkeypatch):
    """jfr's master sockets in a short private folder of this test; the masters stopped afterwards."""
    folder = Path(tempfile.mkdtemp(prefix="jfo", dir="/tmp"))
    monkeypatch.setattr(openssh, "control_dir", lambda: folder)
    openssh.reset()
    yield folder
    _stop_masters(folder)
    openssh.reset()
    shutil.rmtree(folder, ignore_errors=True)


def oworker(infra, **extra) -> Worker:
    return ssh_worker(infra, ssh_client="openssh", **extra)


@pytest.fixture
def host_and_dir(control, infra, remote_dir):
    host = OpenSSHHost(oworker(infra))
    yield host, remote_dir
    host.close()


class SshdLog:
    """What the test sshd logged from now on."""

    def __init__(self):
        self.start = SSHD_LOG.stat().st_size

    def text(self) -> str:
        with open(SSHD_LOG, "rb") as f:
            f.seek(self.start)
            return f.read().decode(errors="replace")

    def logins(self, port: str) -> int:
        return len(re.findall(rf"Accepted publickey for \S+ from \S+ port {port} ", self.text()))

    def sessions(self, port: str) -> int:
        return len(re.findall(rf"Starting session: .* port {port} id", self.text()))


def client_port(host) -> str:
    """The client port of the TCP connection that carries a command (the master's, when shared)."""
    return host.run("echo $SSH_CONNECTION").stdout.split()[1]


# --- configuration ------------------------------------------------------------------
def test_ssh_client_is_checked(tmp_path):
    remote = "name: demo\nworkers:\n  w:\n    type: remote\n    host: h\n    work_dir: /tmp/w\n"
    wrong = problems_of(tmp_path, remote + "    ssh_client: putty\n")
    assert wrong == ["workers.w.ssh_client: must be one of fabric, openssh"]
    found = problems_of(tmp_path, remote + "    ssh_client: openssh\n    password: x\n    passphrase: y\n")
    assert [line.split(":")[0] for line in found] == ["workers.w.password", "workers.w.passphrase"]
    assert all("never prompts: use an SSH agent, a key without passphrase, or a master connection" in line
               for line in found)  # fmt: skip
    fabric = problems_of(tmp_path, remote + "    ssh_config: /x\n")
    assert fabric == ["workers.w.ssh_config: is read by ssh_client openssh only"]
    from jfr_lib.config import load_project_file

    path = tmp_path / "ok.yaml"
    path.write_text(remote + "    ssh_client: openssh\n    ssh_config: /x/config\n")
    worker = load_project_file(path).worker("w")
    assert isinstance(get_host(worker), OpenSSHHost) and worker.ssh_config == "/x/config"


def test_sftp_paths_are_taken_literally():
    assert openssh._sftp_path("/a b/c*[d]?'\"e\\f") == "/a\\ b/c\\*\\[d\\]\\?\\'\\\"e\\\\f"
    assert openssh._sftp_path("-x") == "./-x"


# --- against the test sshd ----------------------------------------------------------


@pytest.mark.infra
def test_awkward_file_names_round_trip(host_and_dir, tmp_path):
    host, folder = host_and_dir
    host.mkdir(folder)
    name = f"{folder}/a b*[c]?'\"$x\\y.txt"
    host.write_text(name, "one")
    assert host.read_text(name) == "one" and host.exists(name)
    local = tmp_path / "l o*cal.txt"
    local.write_text("two")
    host.put(str(local), name)
    host.get(name, str(tmp_path / "b ack?.txt"))
    assert (tmp_path / "b ack?.txt").read_text() == "two"
    assert host.run("ls", cwd=folder).stdout.splitlines() == [Path(name).name]  # no temporary left behind
    host.remove(name)
    assert not host.exists(name)


@pytest.mark.infra
def test_own_exit_code_255_is_returned_not_raised(host_and_dir):
    host, _ = host_and_dir
    result = host.run("echo out; echo err >&2; exit 255")
    assert (result.exit_code, result.stdout, result.stderr) == (255, "out\n", "err\n")


@pytest.mark.infra
def test_one_master_carries_every_command_and_transfer(control, infra, remote_dir, tmp_path):
    host = OpenSSHHost(oworker(infra))
    log = SshdLog()
    ports = {client_port(host) for _ in range(20)}
    assert len(ports) == 1  # 20 commands, one TCP connection
    (port,) = ports
    pid = host.master_pid()
    assert pid and not gone(pid)
    host.mkdir(remote_dir)
    host.write_text(f"{remote_dir}/f", "x")
    assert host.read_text(f"{remote_dir}/f") == "x" and host.exists(f"{remote_dir}/f")
    (tmp_path / "up").write_text("y")
    host.put(str(tmp_path / "up"), f"{remote_dir}/up")
    host.get(f"{remote_dir}/up", str(tmp_path / "down"))
    # one authentication; the opening `true`, 20 + 2 commands (mkdir, exists) and 4 sftp sessions,
    # all on that connection
    wait_for(lambda: log.sessions(port) >= 27, 10, message="sshd to log the sessions")
    assert log.logins(port) == 1 and log.sessions(port) == 27
    assert host.master_pid() == pid
    assert len([p for p in control.iterdir() if p.is_socket()]) == 1  # the socket, in jfr's folder
    assert oct(control.stat().st_mode & 0o777) == "0o700"


@pytest.mark.infra
def test_processes_starting_at_once_share_one_master(control, infra):
    from concurrent.futures import ThreadPoolExecutor

    hosts = [OpenSSHHost(oworker(infra)) for _ in range(8)]  # each ssh and sftp call is a process of its own
    with ThreadPoolExecutor(len(hosts)) as pool:
        results = list(pool.map(lambda h: h.run("echo $SSH_CONNECTION"), hosts))
    assert [r.stderr for r in results] == [""] * 8  # no "ControlSocket ... already exists"
    assert len({r.stdout for r in results}) == 1


@pytest.mark.infra
def test_the_user_ssh_config_alias_and_control_path_are_honoured(control, infra, tmp_path):
    config = tmp_path / "ssh_config"
    config.write_text(
        f"Host jfr-alias\n  HostName {infra['TEST_SSH_HOST']}\n  Port {infra['TEST_SSH_PORT']}\n"
        f"  User {infra['TEST_SSH_USER']}\n  IdentityFile {infra['TEST_SSH_KEY']}\n  IdentitiesOnly yes\n"
        f"  UserKnownHostsFile {infra['TEST_SSH_KNOWN_HOSTS']}\n"
        f"  ControlMaster auto\n  ControlPath {control}/user-ssh-%r@%h:%p\n  ControlPersist 60\n"
    )  # fmt: skip
    worker = Worker(name="alias", type="remote", host="jfr-alias", ssh_client="openssh", ssh_config=str(config),
                    work_dir="/tmp", connect_timeout=5, timeout_execute=20)  # fmt: skip
    host = OpenSSHHost(worker)
    assert host.run("whoami").stdout == f"{infra['TEST_SSH_USER']}\n"
    assert not any("Control" in o for o in host.options())  # theirs, not jfr's
    sock = control / f"user-ssh-{infra['TEST_SSH_USER']}@{infra['TEST_SSH_HOST']}:{infra['TEST_SSH_PORT']}"
    assert sock.is_socket() and [p.name for p in control.iterdir()] == [sock.name]
    assert len({client_port(host) for _ in range(5)}) == 1
    assert host.master_pid() and host.home() == f"/home/{infra['TEST_SSH_USER']}"


@pytest.mark.infra
def test_a_timeout_kills_the_command_with_a_one_line_error(host_and_dir):
    host, _ = host_and_dir
    host.run("true")
    pid = host.master_pid()
    t0 = time.monotonic()
    with pytest.raises(HostError) as err:
        host.run("echo started; sleep 60", timeout=1)
    assert time.monotonic() - t0 < 10
    assert str(err.value) == f"{host.label}: command timed out after 1 s: echo started; sleep 60"
    assert not [p for p in Path("/proc").glob("[0-9]*") if _is_child_ssh(p)]  # our ssh client is gone
    assert host.master_pid() == pid  # the master, which other processes share, lives on
    assert host.run("echo again").stdout == "again\n"


def _is_child_ssh(proc: Path) -> bool:
    try:
        stat = (proc / "stat").read_text().rsplit(")", 1)[1].split()
        return int(stat[1]) == os.getpid() and (proc / "comm").read_text().strip() == "ssh"
    except (OSError, IndexError, ValueError):
        return False


@pytest.mark.infra
def test_a_dropped_master_is_reopened_by_the_next_call(host_and_dir):
    host, folder = host_and_dir
    first = client_port(host)
    pid = host.master_pid()
    os.kill(pid, signal.SIGKILL)  # the master dies; its socket file stays behind
    wait_for(lambda: gone(pid), 10, message="the master to die")
    assert client_port(host) != first  # a new connection...
    second = host.master_pid()
    assert second and second != pid  # ...kept by a new master
    host.stop_master()
    wait_for(lambda: gone(second), 10, message="the master to exit")
    host.write_text(f"/tmp/jfr-openssh-{os.getpid()}", "x")  # a transfer opens one too
    assert host.master_pid() not in (None, second)
    host.remove(f"/tmp/jfr-openssh-{os.getpid()}")


@pytest.mark.infra
def test_host_key_and_login_failures_are_one_line(control, infra, tmp_path):
    line = Path(infra["TEST_SSH_KNOWN_HOSTS"]).read_text().splitlines()[0].split()
    bad = tmp_path / "bad_known_hosts"
    bad.write_text(f"{line[0]} {OTHER_HOST_KEY}\n")
    empty = tmp_path / "known_hosts"
    empty.write_text("")
    cases = [({"known_hosts": str(bad)}, "the host key does not match known_hosts"),
             ({"known_hosts": str(empty)}, "unknown host key"),
             ({"user": "nobody"}, "authentication failed"),
             ({"port": 1}, "connection refused or unreachable")]  # fmt: skip
    for extra, words in cases:
        openssh.reset()
        with pytest.raises(HostError) as err:
            OpenSSHHost(oworker(infra, **extra)).run("true")
        assert words in str(err.value) and "\n" not in str(err.value), err.value
        with pytest.raises(HostError, match="not retrying for"):  # the back-off spares the host
            OpenSSHHost(oworker(infra, **extra)).read_text("/etc/hostname")
    openssh.reset()
    host = OpenSSHHost(oworker(infra, known_hosts=str(empty), accept_new_host_keys=True))
    assert host.run("echo ok") == openssh.RunResult(0, "ok\n", "")  # no "Permanently added" in stderr
    assert "ssh-ed25519" in empty.read_text()


@pytest.mark.infra
@pytest.mark.e2e
def test_a_chain_runs_end_to_end_with_ssh_client_openssh(penv, infra, remote_dir):
    penv.write(workers=remote_worker_yaml(infra, "ossh", f"{remote_dir}/run", ssh_client="openssh"))
    host = OpenSSHHost(penv.project.worker("ossh"))
    host.stop_master()  # the runner opens its own (in jfr's default folder)
    a = tj.add(1, 2)
    b = tj.add(a.output, 3)
    c = tj.add(b.output, 4)
    from jfr_lib import submit_flow

    submit_flow(Flow([a, b, c]), worker="ossh")
    log = SshdLog()
    try:
        penv.run_until_idle(timeout=300)
        jobs = penv.jobs()
        assert [j["state"] for j in jobs] == ["COMPLETED"] * 3
        assert [penv.output(j) for j in jobs] == [3, 6, 10]
        assert all(j["run_dir"].startswith(remote_dir) for j in jobs)
        pid = host.master_pid()  # the runner's master outlives it (ControlPersist)...
        assert pid
        port = client_port(host)
        # ...and carried the runner's processes: one login for all their commands and transfers
        assert log.logins(port) == 1 and log.sessions(port) > 10
    finally:
        host.stop_master()
