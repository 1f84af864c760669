"""Remote workers for real: SSH to a private sshd, SLURM on localhost (JFR_TEST_INFRA=1)."""

from __future__ import annotations

import json
import subprocess
from datetime import datetime
from pathlib import Path

import pytest
from jobflow import Flow

from jfr_lib import set_run_config, submit_flow

import testjobs as tj
from conftest import INFRA_DIR, INFRA_SCRIPTS, OTHER_HOST_KEY, remote_worker_yaml, wait_for

pytestmark = [pytest.mark.infra, pytest.mark.e2e]


@pytest.fixture
def rproj(penv, infra, remote_dir):
    """A project with a local worker and two remote ones (shell over SSH, SLURM)."""

    def write(runner=None, slurm_extra=None, shell_extra=None):
        workers = remote_worker_yaml(infra, "ssh_shell", f"{remote_dir}/shell", **(shell_extra or {}))
        slurm = {"poll_interval": 1, "resources": "{partition: debug}", **(slurm_extra or {})}
        workers += remote_worker_yaml(infra, "slurm", f"{remote_dir}/slurm", scheduler="slurm", **slurm)
        penv.write(None, runner=runner, workers=workers)

    write()
    penv.rewrite = write
    penv.remote_dir = remote_dir
    return penv


def chain_and_diamond(worker):
    a = tj.add(1, 5)
    b = tj.add(a.output, 5)
    top = tj.add(1, 1)
    left, right = tj.add(top.output, 10), tj.add(top.output, 20)
    bottom = tj.add(left.output, right.output)
    grand = tj.add(bottom.output, 1)
    flows = {"chain": Flow([a, b]), "diamond": Flow([top, left, right, bottom, grand])}
    for flow in flows.values():
        submit_flow(flow, worker=worker)
    return flows


def outputs(penv, flow):
    with penv.db() as db:
        jobs = db.find_jobs({"flow_uuid": flow.uuid}, sort=[("db_id", 1)])
    return [j["state"] for j in jobs], [penv.output(j) if j["state"] == "COMPLETED" else None for j in jobs]


def test_chain_and_diamond_over_ssh_and_slurm_with_environment(rproj, infra):
    shell = chain_and_diamond("ssh_shell")
    slurm = chain_and_diamond("slurm")
    probe = tj.env_vars("SLURM_JOB_NAME", "SLURM_JOB_PARTITION", "JFR_TEST_VAR")
    set_run_config(probe, exec_config="with_env", resources={"job_name": "jfr-res-test", "partition": "debug"})
    submit_flow(probe, worker="slurm")
    rproj.run_until_idle(timeout=300)
    for flows in (shell, slurm):
        assert outputs(rproj, flows["chain"]) == (["COMPLETED"] * 2, [6, 11])
        assert outputs(rproj, flows["diamond"]) == (["COMPLETED"] * 5, [2, 12, 22, 34, 35])
    with rproj.db() as db:
        job = db.get_job(uuid=probe.uuid)
    assert rproj.output(job) == {"SLURM_JOB_NAME": "jfr-res-test", "SLURM_JOB_PARTITION": "debug",
                                 "JFR_TEST_VAR": "from-exec-config"}  # fmt: skip
    script = Path(job["run_dir"], "submit.sh").read_text()
    assert "#SBATCH --job-name=jfr-res-test" in script and "#SBATCH --partition=debug" in script
    assert 'export JFR_TEST_VAR="from-exec-config"' in script
    assert job["run_dir"].startswith(rproj.remote_dir) and job["local_dir"].startswith(str(rproj.base))


def test_time_limit_and_outside_cancel_fail_with_their_reason(rproj):
    rproj.rewrite(slurm_extra={"resources": "{partition: debug, time: '00:01:00'}"})
    too_long, cancelled = tj.sleep_add(600), tj.sleep_add(600)
    submit_flow(too_long, worker="slurm")
    submit_flow(cancelled, worker="slurm")
    with rproj.start_runner():
        job = wait_for(lambda: [j for j in rproj.jobs() if j["uuid"] == cancelled.uuid and j["state"] == "RUNNING"],
                       60, message="the job to run")[0]  # fmt: skip
        subprocess.run(["scancel", job["queue_id"]], check=True, timeout=30)
        wait_for(lambda: all(j["state"] == "FAILED" for j in rproj.jobs()), 200, interval=1,
                 message="both jobs to fail")  # fmt: skip
    with rproj.db() as db:
        limit, cancel = db.get_job(uuid=too_long.uuid), db.get_job(uuid=cancelled.uuid)
    assert limit["error"].startswith("killed by the queue: time limit reached (TIMEOUT)")
    assert "TIME LIMIT" in limit["queue_err"]
    assert cancel["error"].startswith("cancelled in the queue")
    assert "CANCELLED" in cancel["queue_err"]


def test_sshd_outage_of_30_seconds_is_survived(rproj):
    rproj.rewrite(runner={"delta_retry": "[5, 10, 20, 30]", "max_step_attempts": 6})
    submit_flow(Flow([tj.sleep_add(2, i) for i in range(10)]), worker="ssh_shell")
    with rproj.start_runner():
        wait_for(lambda: "COMPLETED" in [j["state"] for j in rproj.jobs()], 120, message="a first job done")
        subprocess.run(["bash", str(INFRA_SCRIPTS / "stop-sshd.sh"), str(INFRA_DIR)], check=True, timeout=60)
        subprocess.run(["pkill", "-f", "sshd: jfrtest"], timeout=30)  # cut the open sessions too
        try:
            import time

            time.sleep(30)
        finally:
            subprocess.run(["bash", str(INFRA_SCRIPTS / "start-sshd.sh"), str(INFRA_DIR)], check=True, timeout=120)
        try:
            wait_for(lambda: [j["state"] for j in rproj.jobs()] == ["COMPLETED"] * 10, 240, interval=1,
                     message="all jobs to complete")  # fmt: skip
        except AssertionError:
            states = [(j["db_id"], j["state"], j.get("queue_id"), j.get("last_error")) for j in rproj.jobs()]
            tail = (rproj.root / "logs" / "test.log").read_text()[-4000:]
            raise AssertionError(f"not all jobs completed: {states}\n{tail}") from None
    log = (rproj.root / "logs" / "test.log").read_text()
    assert "reconnected to" in log and "cannot connect" in log
    assert not [j for j in rproj.jobs() if j["state"] == "REMOTE_ERROR"]


def test_slurm_max_jobs_one_runs_by_priority(rproj):
    rproj.rewrite(slurm_extra={"max_jobs": 1})
    order = [2, 9, 4, 7, 1]
    for p in order:
        submit_flow(tj.sleep_add(1, p), worker="slurm", priority=p)
    rproj.run_until_idle(timeout=300)
    jobs = sorted(rproj.jobs(), key=lambda j: j["start_time"])
    assert [j["priority"] for j in jobs] == sorted(order, reverse=True)
    for earlier, later in zip(jobs, jobs[1:]):
        assert datetime.fromisoformat(later["start_time"]) >= datetime.fromisoformat(earlier["end_time"])


def test_unreachable_workers_are_reported_and_end_in_remote_error(rproj, infra, tmp_path):
    line = Path(infra["TEST_SSH_KNOWN_HOSTS"]).read_text().splitlines()[0].split()
    wrong_keys = tmp_path / "known_hosts_wrong"
    wrong_keys.write_text(f"{line[0]} {OTHER_HOST_KEY}\n")
    workers = (remote_worker_yaml(infra, "badkey", f"{rproj.remote_dir}/x", known_hosts=wrong_keys)
               + remote_worker_yaml(infra, "baduser", f"{rproj.remote_dir}/x", user="nobody")
               + remote_worker_yaml(infra, "badport", f"{rproj.remote_dir}/x", port=1))  # fmt: skip
    rproj.write(None, runner={"delta_retry": "[0.2]", "max_step_attempts": 2}, workers=workers)
    code, out, _ = rproj.jfr("project", "check", check=False)
    assert code == 1
    lines = out.splitlines()
    assert any(line.startswith("✓ worker local: run a command") for line in lines)
    for name, reason in (("badkey", "does not match known_hosts"), ("baduser", "authentication failed"),
                         ("badport", "refused or unreachable")):  # fmt: skip
        i = next(i for i, line in enumerate(lines) if line.startswith(f"✗ worker {name}: run a command"))
        assert reason in lines[i + 1]
        submit_flow(tj.add(1, 1), worker=name)
    _, out, _ = rproj.jfr("project", "check", "--json", "-w", "local", check=False)
    assert all(c["ok"] for c in json.loads(out))
    rproj.run_until_idle(timeout=120)
    errors = {j["worker"]: j for j in rproj.jobs()}
    for name, reason in (("badkey", "does not match known_hosts"), ("baduser", "authentication failed"),
                         ("badport", "refused or unreachable")):  # fmt: skip
        assert errors[name]["state"] == "REMOTE_ERROR" and reason in errors[name]["error"]


def test_queue_out_files_and_stop_commands(rproj):
    long = tj.sleep_add(600)
    submit_flow(long, worker="slurm")
    with rproj.start_runner():
        job = wait_for(lambda: [j for j in rproj.jobs() if j["state"] == "RUNNING"], 60)[0]
        _, out, _ = rproj.jfr("job", "files", "ls", str(job["db_id"]))
        assert "jfr_in.json" in out and "submit.sh" in out
        _, out, _ = rproj.jfr("job", "files", "get", str(job["db_id"]), "submit.sh", "-d", str(rproj.root / "got"))
        assert "#SBATCH --partition=debug" in (rproj.root / "got" / "submit.sh").read_text()
        _, out, _ = rproj.jfr("job", "queue-out", str(job["db_id"]))
        assert "==> queue.out <==" in out and "==> queue.err <==" in out
        code, out, _ = rproj.jfr("job", "stop", str(job["db_id"]))
        assert "-> USER_STOPPED" in out
        gone = subprocess.run(["squeue", "-h", "-j", job["queue_id"], "-t", "PD,R"], capture_output=True,
                              text=True, timeout=30)  # fmt: skip
        wait_for(lambda: not subprocess.run(["squeue", "-h", "-j", job["queue_id"], "-t", "PD,R"],
                                            capture_output=True, text=True, timeout=30).stdout.strip(), 30)  # fmt: skip
        assert gone.returncode in (0, 1)
    assert [j["state"] for j in rproj.jobs()] == ["USER_STOPPED"]


def test_sge_worker_runs_a_chain_and_reports_its_time_limit(rproj, infra):
    workers = remote_worker_yaml(infra, "sge", f"{rproj.remote_dir}/sge", scheduler="sge", poll_interval=1,
                                 resources="{queue: debug}")  # fmt: skip
    rproj.write(None, workers=workers)
    flows = chain_and_diamond("sge")
    too_long = tj.sleep_add(300)
    set_run_config(too_long, resources={"queue": "debug", "walltime": "00:00:05"})
    submit_flow(too_long, worker="sge")
    rproj.run_until_idle(timeout=300)
    assert outputs(rproj, flows["chain"]) == (["COMPLETED"] * 2, [6, 11])
    assert outputs(rproj, flows["diamond"]) == (["COMPLETED"] * 5, [2, 12, 22, 34, 35])
    with rproj.db() as db:
        job = db.get_job(uuid=too_long.uuid)
    assert job["state"] == "FAILED"
    assert job["error"].startswith("killed by the queue: time limit reached (TIMEOUT)")
    script = Path(job["run_dir"], "submit.sh").read_text()
    assert "#$ -cwd" in script and "#$ -l h_rt=00:00:05" in script
