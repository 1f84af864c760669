"""What riding on a login costs: host operations through each connection type, on loopback.

Needs the test sshd (key only, 127.0.0.1:2222), run as root (its key is root's):
``bash tests/infra/start-sshd.sh /tmp/jfr-test-infra`` starts it. Without its env file the
benchmark says so and is skipped (exit code 0).

For each way of reaching the host it prints the median and 90th percentile of ``run("true")``,
of writing and reading back a 1 kB file, and of copying a 1 MB file up and down:

- ``fabric``: the paramiko connection of the process itself;
- ``fabric, login process``: ``interactive_login: true`` — every operation asked to the login
  process over its UNIX socket (it logs in with the key here, so no one has to type a code);
- ``openssh``: jfr's own master connection (``ControlMaster=auto``);
- ``openssh, login``: ``interactive_login: true`` — the master ``jfr login`` opens.

    python bench/login.py [--repeat 30] [--infra-dir /tmp/jfr-test-infra]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

from common import ROOT

sys.path.insert(0, str(ROOT))


def read_env(path: Path) -> dict:
    return dict(line.split("=", 1) for line in path.read_text().splitlines() if "=" in line)


def worker(env: dict, **extra):
    from jfr_lib.config import Worker

    return Worker(name="bench", type="remote", host=env["TEST_SSH_HOST"], port=int(env["TEST_SSH_PORT"]),
                  user=env["TEST_SSH_USER"], key_filename=env["TEST_SSH_KEY"], known_hosts=env["TEST_SSH_KNOWN_HOSTS"],
                  work_dir="/tmp", connect_timeout=5, timeout_execute=60, **extra)  # fmt: skip


def timed(func, repeat: int) -> tuple:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        func()
        times.append(time.perf_counter() - t0)
    times.sort()
    return statistics.median(times) * 1000, times[int(0.9 * (len(times) - 1))] * 1000


def measure(label: str, host, folder: str, repeat: int, scratch: Path) -> None:
    host.run("true")  # connected (and logged in) before timing
    host.mkdir(folder)
    big = scratch / "big"
    big.write_bytes(os.urandom(1 << 20))
    rows = {
        "run true": lambda: host.run("true"),
        "write+read 1 kB": lambda: (host.write_text(f"{folder}/small", "x" * 1024), host.read_text(f"{folder}/small")),
        "put+get 1 MB": lambda: (host.put(str(big), f"{folder}/big"), host.get(f"{folder}/big", str(scratch / "b"))),
    }
    for what, func in rows.items():
        median, p90 = timed(func, repeat)
        print(f"{label:<24} {what:<16} median {median:7.1f} ms   p90 {p90:7.1f} ms")
    host.remove(folder)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeat", type=int, default=30)
    parser.add_argument("--infra-dir", default=os.environ.get("JFR_TEST_INFRA_DIR", "/tmp/jfr-test-infra"))
    args = parser.parse_args()
    env_file = Path(args.infra_dir) / "ssh.env"
    if not env_file.exists():
        print(f"skipped: no {env_file} (start tests/infra/start-sshd.sh first)")
        return 0
    env = read_env(env_file)
    from jfr_lib.hosts import get_host
    from jfr_lib.hosts.broker import logout
    from jfr_lib.hosts.login_process import login

    with tempfile.TemporaryDirectory(prefix="jfb", dir="/tmp") as tmp:
        scratch = Path(tmp)
        folder = Path(tmp) / "sockets"
        folder.mkdir(mode=0o700)
        os.environ["JFR_SOCKET_DIR"] = str(folder)  # this run's sockets, closed below
        remote = f"/home/{env['TEST_SSH_USER']}/jfr-bench-login-{os.getpid()}"
        measure("fabric", get_host(worker(env)), remote, args.repeat, scratch)
        interactive = worker(env, interactive_login=True)
        login(interactive)
        try:
            measure("fabric, login process", get_host(interactive), remote, args.repeat, scratch)
        finally:
            logout(interactive)
        plain = get_host(worker(env, ssh_client="openssh"))
        try:
            measure("openssh", plain, remote, args.repeat, scratch)
        finally:
            plain.stop_master()
        host = get_host(worker(env, ssh_client="openssh", interactive_login=True))
        host.login()
        try:
            measure("openssh, login", host, remote, args.repeat, scratch)
        finally:
            host.logout()
    return 0


if __name__ == "__main__":
    sys.exit(main())
