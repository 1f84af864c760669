"""Project files: formats, selection, validation errors, jobflow-remote compatibility."""

from __future__ import annotations

import json

import pytest

from jfr_lib.config import find_project_file, load_project_file
from jfr_lib.errors import ConfigError, NotFoundError

YAML = """\
name: demo
base_dir: /tmp/jfr-demo
workers:
  local:
    type: local
    work_dir: /tmp/jfr-demo/run
    max_jobs: 2
    resources: {job_name: x}
exec_config:
  env:
    modules: [gcc]
    export: {A: 1, B: two}
runner:
  delta_retry: [1, 2]
metadata: {team: abc}
"""


def write(folder, name, text):
    p = folder / name
    p.write_text(text)
    return p


def test_yaml_project_loads_into_typed_objects(tmp_path):
    p = load_project_file(write(tmp_path, "demo.yaml", YAML))
    w = p.workers["local"]
    assert (w.name, w.type, w.scheduler_type, w.max_jobs) == ("local", "local", "shell", 2)
    assert w.resources == {"job_name": "x"}
    assert p.exec_config["env"].export == {"A": "1", "B": "two"}
    assert p.runner.delta_retry == [1, 2] and p.runner.max_step_attempts == 3
    assert p.queue.backend == "sqlite" and str(p.queue_db_path) == "/tmp/jfr-demo/queue.db"
    assert p.metadata == {"team": "abc"}


def test_toml_and_json_give_the_same_project(tmp_path):
    data = {"name": "demo", "workers": {"w": {"type": "local", "work_dir": "/tmp/x", "max_jobs": 3}}}
    j = load_project_file(write(tmp_path, "demo.json", json.dumps(data)))
    toml = 'name = "demo"\n[workers.w]\ntype = "local"\nwork_dir = "/tmp/x"\nmax_jobs = 3\n'
    t = load_project_file(write(tmp_path, "demo.toml", toml))
    assert j.workers["w"] == t.workers["w"]


@pytest.mark.parametrize(
    "body, message",
    [
        ("workers:\n  c:\n    type: local\n    work_dir: rel/path\n",
         "demo.yaml: workers.c.work_dir: must be an absolute path"),
        ("workers:\n  c:\n    type: cloud\n    work_dir: /x\n", "workers.c.type: must be one of local, remote"),
        ("workers:\n  c:\n    work_dir: /x\n    scheduler_type: lsf\n", "workers.c.scheduler_type: must be one of"),
        ("workers:\n  c:\n    work_dir: /x\n    max_jobs: many\n", "workers.c.max_jobs: must be a whole number"),
        ("workers:\n  c:\n    work_dir: /x\n    colour: red\n", "workers.c.colour: unknown key"),
        ("workers:\n  c:\n    type: remote\n    work_dir: /x\n", "workers.c.host: is required for a remote worker"),
        ("workers: {}\n", "workers: must be a mapping with at least one worker"),
        ("workers:\n  c:\n    work_dir: /x\nrunner:\n  delta_retry: [a]\n", "runner.delta_retry:"),
        ("workers:\n  c:\n    work_dir: /x\nqueue:\n  backend: mongodb\n", "queue.uri: is required"),
        ("workers:\n  c:\n    work_dir: /x\njobstore:\n  docs_store: 3\n", "jobstore.docs_store:"),
        ("workers: [1, 2\n", "not valid YAML"),
        ("name: ''\nworkers:\n  c:\n    work_dir: /x\n", "name: must be a non-empty string"),
    ],
)
def test_validation_errors_name_file_and_key(tmp_path, body, message):
    path = write(tmp_path, "demo.yaml", body)
    with pytest.raises(ConfigError) as err:
        load_project_file(path)
    text = str(err.value)
    assert message in text
    assert all(line.startswith(f"{path}: ") for line in text.splitlines())  # one line per problem


def test_remote_worker_validates(tmp_path):
    p = load_project_file(write(tmp_path, "demo.yaml", (
        "workers:\n  hpc:\n    type: remote\n    host: cluster.example\n    user: me\n"
        "    scheduler_type: slurm\n    work_dir: /scratch/me/jfr\n    port: 2222\n"
        "    resources: {partition: debug}\n    pre_run: module load python\n")))  # fmt: skip
    w = p.workers["hpc"]
    assert (w.host, w.user, w.port, w.scheduler_type) == ("cluster.example", "me", 2222, "slurm")


def test_jobflow_remote_project_file_loads_unchanged(tmp_path):
    text = """\
name: demo
workers:
  example_worker:
    type: remote
    scheduler_type: slurm
    work_dir: /home/user/jfr
    pre_run: source /home/user/.venv/bin/activate
    host: remote.host.net
    user: bob
    timeout_execute: 60
    resources:
      nodes: 1
queue:
  store:
    type: MongoStore
    host: localhost
    database: db_name
    username: bob
    password: secret pw
    collection_name: jobs
exec_config: {}
jobstore:
  docs_store:
    type: MongoStore
    database: db_name
    host: localhost
    port: 27017
    collection_name: outputs
  additional_stores:
    data:
      type: GridFSStore
      database: db_name
      host: localhost
      collection_name: outputs_blobs
runner:
  delay_checkout: 30
  delay_check_run_status: 45
  max_step_attempts: 3
  delta_retry: [30, 300, 1200]
"""
    p = load_project_file(write(tmp_path, "demo.yaml", text))
    assert p.queue.backend == "mongodb"
    assert p.queue.uri == "mongodb://bob:secret+pw@localhost:27017/"
    assert (p.queue.database, p.queue.prefix) == ("db_name", "jobs")
    assert p.runner.queue_poll_interval == 45
    assert set(p.jobstore["additional_stores"]) == {"data"}


def test_project_selection(tmp_path, monkeypatch):
    monkeypatch.setenv("JFR_PROJECTS_DIR", str(tmp_path))
    monkeypatch.delenv("JFR_PROJECT", raising=False)
    with pytest.raises(NotFoundError):
        find_project_file()
    one = write(tmp_path, "one.yaml", "workers:\n  w:\n    work_dir: /x\n")
    assert find_project_file() == one  # the only one
    two = write(tmp_path, "two.yaml", "workers:\n  w:\n    work_dir: /x\n")
    with pytest.raises(ConfigError, match="several projects"):
        find_project_file()
    assert find_project_file("two") == two
    monkeypatch.setenv("JFR_PROJECT", "one")
    assert find_project_file() == one
    assert find_project_file("two") == two  # -p wins over the environment
    with pytest.raises(NotFoundError, match="no project named 'three'"):
        find_project_file("three")
