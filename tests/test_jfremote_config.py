"""A jobflow-remote 1.0.1 project file loads unchanged: every key honoured, accepted and listed, or
refused with what to use instead.

``tests/data/jfremote/`` holds the files jobflow-remote 1.0.1 writes with ``jf project
generate`` (simple and ``--full``, YAML, JSON and TOML; its home folder renamed).
"""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import pytest

from jfr_lib.config import load_project_file
from jfr_lib.errors import ConfigError

DATA = Path(__file__).parent / "data" / "jfremote"
FILES = sorted(DATA.iterdir())
REPLACED_FULL = {
    "tmp_dir", "daemon_dir", "queue.flows_collection", "queue.auxiliary_collection", "queue.batches_collection",
    "runner.delay_checkout", "runner.delay_advance_status", "runner.delay_refresh_limited",
    "runner.delay_update_batch", "runner.delay_ping_db", "runner.delete_tmp_folder",
}  # fmt: skip


@pytest.mark.parametrize("path", FILES, ids=[p.name for p in FILES])
def test_generated_files_load_unchanged(path):
    project = load_project_file(path)
    assert project.name == path.stem
    worker = project.workers["example_worker"]
    assert (worker.type, worker.scheduler_type, worker.host) == ("remote", "slurm", "remote.host.net")
    assert project.queue.backend == "mongodb" and project.queue.database == "db_name"
    assert project.queue.uri == "mongodb://bob:secret_password@localhost:27017/" and project.queue.prefix == "jobs"
    assert project.jobstore["additional_stores"]["data"]["type"] == "GridFSStore"
    if path.stem.startswith("full"):
        assert set(project.replaced) == REPLACED_FULL
        assert project.runner.queue_poll_interval == 30  # delay_check_run_status is honoured
        assert project.log_level == "info" and project.runner.lock_timeout == 86400
        assert project.exec_config["example_config"].modules == ["GCC/10.2.0", "OpenMPI/4.0.5-GCC-10.2.0"]
        assert project.workers["example_local"].scheduler_type == "shell"
    else:
        assert project.replaced == {}


def test_project_show_lists_what_is_accepted_but_not_used(tmp_path, monkeypatch, capsys):
    from jfr_lib.cli import main

    (tmp_path / "fullproj.yaml").write_text((DATA / "fullproj.yaml").read_text())
    monkeypatch.setenv("JFR_PROJECTS_DIR", str(tmp_path))
    assert main(["-p", "fullproj", "project", "show", "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert set(shown["accepted_not_used"]) == REPLACED_FULL
    assert "wake" in shown["accepted_not_used"]["runner.delay_checkout"]
    assert "secret_password" not in json.dumps(shown)


BASE = {"name": "p", "workers": {"w": {"type": "remote", "host": "h", "work_dir": "/w", "scheduler_type": "slurm"}}}


def load(tmp_path, change) -> object:
    data = json.loads(json.dumps(BASE))
    change(data)
    path = tmp_path / "p.json"
    path.write_text(json.dumps(data))
    return load_project_file(path)


def refused(tmp_path, change) -> str:
    with pytest.raises(ConfigError) as info:
        load(tmp_path, change)
    return str(info.value)


def test_worker_keys_honoured(tmp_path):
    def change(d):
        d["workers"]["w"].update(sanitize_command=True, delay_download=12, execution_cmd="apptainer exec x.sif "
                                 "jf -fe execution run {}", scheduler_type={"@module": "qtoolkit.io.pbs",
                                 "@class": "PBSIO", "@version": "0.1.5"})  # fmt: skip

    w = load(tmp_path, change).workers["w"]
    assert w.sanitize and w.delay_download == 12 and w.scheduler_type == "pbs"
    from jfr_lib.actions.scripts import worker_command

    w.python = "/opt/py/bin/python"
    command = worker_command(w, "/w/ab/cd/job 1")
    assert command == "apptainer exec x.sif /opt/py/bin/python -m jfr_lib.worker '/w/ab/cd/job 1'"


def test_batch_section_of_jobflow_remote_is_honoured(tmp_path):
    def change(d):
        d["workers"]["w"]["batch"] = {"jobs_handle_dir": "/h", "work_dir": "/b", "max_jobs_per_batch": 5,
                                      "max_wait": 30, "max_time": 3600, "parallel_jobs": 2, "sleep_time": 5}

    b = load(tmp_path, change).workers["w"].batch
    assert (b.jobs_handle_dir, b.work_dir, b.max_jobs_per_batch, b.max_wait, b.max_time, b.parallel_jobs,
            b.sleep_time) == ("/h", "/b", 5, 30, 3600, 2, 5)  # fmt: skip


@pytest.mark.parametrize("change, key, why", [
    (lambda d: d["workers"]["w"].update(type="separated_transfer", transfer={"host": "dtn"}),
     "workers.w.type", "use type: remote"),
    (lambda d: d["workers"]["w"].update(scheduler_type={"@module": "my.io", "@class": "LSFIO"}),
     "workers.w.scheduler_type", "use shell, slurm, pbs or sge"),
    (lambda d: d["workers"]["w"].update(scheduler_type={"@module": "qtoolkit.io.slurm", "@class": "SlurmIO",
                                                        "header_template": "x"}),
     "workers.w.scheduler_type", "write scheduler_type: slurm"),
    (lambda d: d["workers"]["w"].update(execution_cmd="jf -fe execution run"), "workers.w.execution_cmd", "`{}`"),
    (lambda d: d["workers"]["w"].update(interactive_login=True, gateway="j.example.org"),
     "workers.w.interactive_login", "ProxyJump"),
    (lambda d: d.update(optional_jobstores={"x": {"type": "MemoryStore"}}), "optional_jobstores",
     "jobstore.additional_stores"),
    (lambda d: d.update(queue={"store": {"type": "MongoStore", "database": "d", "ssh_tunnel": {"remote_server": "g"}}}),
     "queue.store.ssh_tunnel", "ssh -fNL"),
    (lambda d: d.update(log_level="chatty"), "log_level", "must be one of"),
])  # fmt: skip
def test_keys_refused_with_what_to_do(tmp_path, change, key, why):
    text = refused(tmp_path, change)
    assert any(line.startswith(f"{tmp_path / 'p.json'}: {key}: ") and why in line for line in text.splitlines()), text


def test_queue_store_client_options_are_honoured(tmp_path):
    def change(d):
        d["queue"] = {"store": {"type": "MongoURIStore", "uri": "mongodb://u:pw@db.example.org/", "database": "d",
                                "collection_name": "jobs_p1", "auth_source": "admin",
                                "mongoclient_kwargs": {"tls": True}},
                      "flows_collection": "flows_p1", "db_id_prefix": "p1-"}  # fmt: skip

    project = load(tmp_path, change)
    assert project.queue.client_options == {"authSource": "admin", "tls": True}
    assert project.queue.prefix == "jobs_p1"
    assert set(project.replaced) == {"queue.flows_collection", "queue.db_id_prefix"}


def test_log_level_sets_the_runner_log(penv):
    from jfr_lib import submit_flow

    import testjobs as tj

    penv.path.write_text(penv.path.read_text() + "log_level: warn\n")
    submit_flow(tj.add(1, 1))
    code, _, err = penv.run_until_idle(timeout=120)
    assert code == 0, err
    log = (penv.root / "logs" / "test.log").read_text()
    assert "runner started" not in log and " INFO " not in log  # warnings and errors only
    penv.path.write_text(penv.path.read_text().replace("log_level: warn\n", ""))
    submit_flow(tj.add(2, 2))
    assert penv.run_until_idle(timeout=120)[0] == 0
    assert "runner started" in (penv.root / "logs" / "test.log").read_text()


def test_sanitize_cuts_what_the_login_shell_prints():
    from jfr_lib.hosts.ssh import _between_marks, marked

    noisy = "echo 'Welcome to the cluster'; echo 'module: loaded' >&2; "
    done = subprocess.run(["bash", "-c", noisy + marked("echo out; echo err >&2; exit 3")], capture_output=True,
                          text=True, timeout=30)  # fmt: skip
    assert done.returncode == 3
    assert _between_marks(done.stdout) == "out\n" and _between_marks(done.stderr) == "err\n"


def test_delay_download_waits_before_fetching(penv):
    from jfr_lib import submit_flow

    import testjobs as tj

    penv.write(None, delay_download=3)
    job = tj.add(1, 2)
    submit_flow(job)
    start = time.time()
    code, _, err = penv.run_until_idle(timeout=120)
    assert code == 0, err
    [doc] = penv.jobs()
    assert doc["state"] == "COMPLETED" and penv.output(doc) == 3
    from datetime import datetime

    ended = datetime.fromisoformat(doc["end_time"]).timestamp()
    completed = datetime.fromisoformat(doc["updated_on"]).timestamp()
    assert completed - ended >= 3 - 0.5 and time.time() - start >= 3
