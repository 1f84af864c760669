"""One contract suite for every host kind (local, SSH to the test sshd), and SSH's own failures."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from jfr_lib.config import Worker
from jfr_lib.errors import HostError

from conftest import OTHER_HOST_KEY


def ssh_worker(infra, **extra) -> Worker:
    keys = dict(name="t", type="remote", host=infra["TEST_SSH_HOST"], port=int(infra["TEST_SSH_PORT"]),
                user=infra["TEST_SSH_USER"], key_filename=infra["TEST_SSH_KEY"],
                known_hosts=infra["TEST_SSH_KNOWN_HOSTS"], work_dir="/tmp", connect_timeout=5,
                timeout_execute=20)  # fmt: skip
    keys.update(extra)
    return Worker(**keys)


@pytest.fixture(params=["local", pytest.param("ssh", marks=pytest.mark.infra)])
def host_and_dir(request, tmp_path):
    if request.param == "local":
        from jfr_lib.hosts.local import LocalHost

        yield LocalHost(timeout=20), str(tmp_path / "area")
        return
    from jfr_lib.hosts.ssh import SSHHost

    infra = request.getfixturevalue("infra")
    folder = request.getfixturevalue("remote_dir")
    host = SSHHost(ssh_worker(infra))
    yield host, folder
    host.close()


def test_run_reports_exit_code_output_and_cwd(host_and_dir):
    host, folder = host_and_dir
    host.mkdir(folder)
    result = host.run("echo out; echo err >&2; exit 3")
    assert (result.exit_code, result.stdout, result.stderr) == (3, "out\n", "err\n")
    assert host.run("pwd", cwd=folder).stdout.strip() == folder


def test_run_times_out(host_and_dir):
    host, _ = host_and_dir
    t0 = time.monotonic()
    with pytest.raises(HostError, match="timed out"):
        host.run("sleep 30", timeout=1)
    assert time.monotonic() - t0 < 10
    assert host.run("echo again").stdout == "again\n"  # usable afterwards


def test_files_round_trip(host_and_dir, tmp_path):
    host, folder = host_and_dir
    nested = f"{folder}/a/b"
    host.mkdir(nested)
    host.mkdir(nested)  # no error when it exists
    host.write_text(f"{nested}/f.json", '{"x": 1}')
    host.write_text(f"{nested}/f.json", '{"x": 2}')  # replaced whole
    assert host.read_text(f"{nested}/f.json") == '{"x": 2}'
    assert host.exists(f"{nested}/f.json") and not host.exists(f"{nested}/nope")
    with pytest.raises(FileNotFoundError):
        host.read_text(f"{nested}/nope")
    local = tmp_path / "up.txt"
    local.write_text("payload\n")
    host.put(str(local), f"{nested}/up.txt")
    host.get(f"{nested}/up.txt", str(tmp_path / "down.txt"))
    assert (tmp_path / "down.txt").read_text() == "payload\n"
    with pytest.raises(FileNotFoundError):
        host.get(f"{nested}/nope", str(tmp_path / "x"))
    host.remove(f"{folder}/a")
    host.remove(f"{folder}/a")  # no error when missing
    assert not host.exists(nested)


def test_background_job_does_not_hold_the_command(host_and_dir):
    host, folder = host_and_dir
    host.mkdir(folder)
    t0 = time.monotonic()
    result = host.run("nohup bash -c 'sleep 5' > o 2> e & echo $!", cwd=folder)
    assert result.exit_code == 0 and result.stdout.strip().isdigit()
    assert time.monotonic() - t0 < 4


@pytest.mark.infra
def test_ssh_wrong_host_key_is_refused(infra, tmp_path):
    from jfr_lib.hosts.ssh import SSHHost, reset

    reset()
    line = Path(infra["TEST_SSH_KNOWN_HOSTS"]).read_text().splitlines()[0].split()
    bad = tmp_path / "known_hosts"
    # a valid key of the same type that is not the server's
    bad.write_text(f"{line[0]} {OTHER_HOST_KEY}\n")
    host = SSHHost(ssh_worker(infra, known_hosts=str(bad)))
    with pytest.raises(HostError, match="does not match known_hosts"):
        host.run("true")


@pytest.mark.infra
def test_ssh_unknown_host_refused_unless_accepting_new_keys(infra, tmp_path):
    from jfr_lib.hosts.ssh import SSHHost, reset

    reset()
    empty = tmp_path / "known_hosts"
    empty.write_text("")
    with pytest.raises(HostError, match="unknown host key"):
        SSHHost(ssh_worker(infra, known_hosts=str(empty))).run("true")
    reset()
    host = SSHHost(ssh_worker(infra, known_hosts=str(empty), accept_new_host_keys=True))
    assert host.run("echo ok").stdout == "ok\n"
    assert "ssh-ed25519" in empty.read_text()  # recorded for next time
    host.close()


@pytest.mark.infra
def test_ssh_wrong_user_and_closed_port(infra):
    from jfr_lib.hosts.ssh import SSHHost, reset

    reset()
    with pytest.raises(HostError, match="authentication failed"):
        SSHHost(ssh_worker(infra, user="nobody")).run("true")
    reset()
    with pytest.raises(HostError, match="refused or unreachable"):
        SSHHost(ssh_worker(infra, port=1)).run("true")


@pytest.mark.infra
def test_ssh_reconnects_after_a_drop_with_back_off(infra):
    from jfr_lib.hosts.ssh import SSHHost, reset

    reset()
    host = SSHHost(ssh_worker(infra))
    assert host.run("echo 1").stdout == "1\n"
    host._conn.transport.close()  # the network drops the connection
    assert host.run("echo 2").stdout == "2\n"  # reopened on the next call
    assert host.connections_opened == 2
    host.write_text("/tmp/jfr-drop-test.txt", "x")
    host._conn.transport.close()  # drop under an open SFTP session
    assert host.read_text("/tmp/jfr-drop-test.txt") == "x"
    assert host.connections_opened == 3
    host.remove("/tmp/jfr-drop-test.txt")
    reset()
    down = SSHHost(ssh_worker(infra, port=1))
    for _ in range(2):
        with pytest.raises(HostError):
            down.run("true")
    third = pytest.raises(HostError, down.run, "true").value
    assert "not retrying for" in str(third) and "refused or unreachable" in str(third)
