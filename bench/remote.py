"""A remote worker through SSH + SLURM on loopback: throughput and SSH connections.

Needs the test infrastructure (as root: ``JFR_TEST_INFRA=1 python -m pytest
tests/test_hosts.py`` starts it, or ``bash tests/infra/start-sshd.sh DIR`` and
``start-slurm.sh DIR`` and ``worker-env.sh DIR REPO``). Prints the time from
submit_flow to all COMPLETED for a chain of 10 and for 50 independent trivial
jobs on a SLURM worker reached over SSH, and how many SSH connections the
runner opened (from its log).

    python bench/remote.py [--infra-dir /tmp/jfr-test-infra]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

from common import ROOT, tmpdir

sys.path.insert(0, str(ROOT / "tests"))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--infra-dir", default="/tmp/jfr-test-infra")
    args = parser.parse_args()
    infra_dir = Path(args.infra_dir)
    infra = {}
    for name in ("ssh.env", "slurm.env", "worker.env"):
        path = infra_dir / name
        if not path.exists():
            sys.exit(f"{path} is missing: start the test infrastructure first (see the docstring)")
        infra.update(line.split("=", 1) for line in path.read_text().splitlines() if "=" in line)
    from conftest import remote_worker_yaml

    root = tmpdir()
    (root / "projects").mkdir()
    workers = remote_worker_yaml(infra, "slurm", f"/home/{infra['TEST_SSH_USER']}/jfr-bench-{root.name}",
                                 scheduler="slurm", poll_interval=0.5, resources="{partition: debug}")  # fmt: skip
    (root / "projects" / "rb.yaml").write_text(
        f"name: rb\nbase_dir: {root / 'data'}\nlog_dir: {root / 'logs'}\nworkers:\n{workers}")
    import os

    os.environ["JFR_PROJECTS_DIR"] = str(root / "projects")
    env = dict(os.environ)
    from jobflow import Flow

    from jfr_lib import submit_flow
    from jfr_lib.config import load_project
    from jfr_lib.queue_db import open_queue_db

    from testjobs import add

    project = load_project("rb")
    runner = subprocess.Popen([sys.executable, str(ROOT / "jfr.py"), "runner", "run"], env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    time.sleep(3)

    def run(label, flow, n):
        t0 = time.perf_counter()
        submit_flow(flow, project=project)
        with open_queue_db(project) as db:
            while db.count_jobs({"flow_uuid": flow.uuid, "state": "COMPLETED"}) < n:
                if db.count_jobs({"flow_uuid": flow.uuid, "state": ["FAILED", "REMOTE_ERROR"]}):
                    raise SystemExit(f"{label}: jobs failed")
                time.sleep(0.1)
        wall = time.perf_counter() - t0
        print(f"{label:<16} {wall:7.2f} s   {wall / n:5.2f} s per job", flush=True)

    try:
        jobs = [add(0, 1)]
        for _ in range(9):
            jobs.append(add(jobs[-1].output, 1))
        run("chain of 10", Flow(jobs), 10)
        run("50 independent", Flow([add(i, 1) for i in range(50)]), 50)
    finally:
        runner.terminate()
        runner.wait(60)
    log = (root / "logs" / "rb.log").read_text()
    print(f"SSH connections opened by the runner: {log.count('connecting to')} "
          f"(action processes that talk to the host: checkout, upload, submit, monitor, download)")


if __name__ == "__main__":
    main()
