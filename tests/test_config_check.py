"""Checking project files: non-finite and nonsense numbers are refused with a reason, and every
problem of a file is reported in one run, one line each."""

from __future__ import annotations

import json

import pytest
from test_job_cmd import run_main

from jfr_lib.config import load_project_file
from jfr_lib.errors import ConfigError

BASE = "name: demo\nworkers:\n  w:\n    work_dir: /tmp/w\n"


def problems_of(tmp_path, text, name="demo.yaml") -> list:
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(ConfigError) as err:
        load_project_file(path)
    lines = str(err.value).splitlines()
    assert all(line.startswith(f"{path}: ") for line in lines)
    assert [f"{path}: {k}: {r}" for k, r in err.value.problems] == lines
    return [line[len(f"{path}: "):] for line in lines]


@pytest.mark.parametrize("key, section", [
    ("poll_interval", "w"), ("timeout_execute", "w"), ("connect_timeout", "w"),
    ("heartbeat", "runner"), ("idle_sleep", "runner"), ("queue_poll_interval", "runner"),
    ("lock_timeout", "runner"), ("connect_timeout", "queue"),
])  # fmt: skip
@pytest.mark.parametrize("value", [".nan", ".inf", "-.inf"])
def test_intervals_and_timeouts_must_be_finite(tmp_path, key, section, value):
    text = BASE + (f"    {key}: {value}\n" if section == "w" else f"{section}:\n  {key}: {value}\n")
    where = f"workers.w.{key}" if section == "w" else f"{section}.{key}"
    assert problems_of(tmp_path, text) == [f"{where}: must be a finite number"]


def test_nan_and_infinity_in_toml_and_json(tmp_path):
    toml = 'name = "demo"\n[workers.w]\nwork_dir = "/tmp/w"\npoll_interval = nan\n[runner]\nheartbeat = inf\n'
    assert problems_of(tmp_path, toml, "demo.toml") == ["workers.w.poll_interval: must be a finite number",
                                                        "runner.heartbeat: must be a finite number"]  # fmt: skip
    text = '{"name": "demo", "workers": {"w": {"work_dir": "/tmp/w", "timeout_execute": NaN}},' \
           ' "runner": {"delta_retry": [1, Infinity]}}'  # fmt: skip
    assert problems_of(tmp_path, text, "demo.json") == [
        "workers.w.timeout_execute: must be a finite number",
        "runner.delta_retry: must be a list of finite, non-negative numbers",
    ]


def test_timeout_execute_must_be_positive_and_says_why(tmp_path):
    (zero,) = problems_of(tmp_path, BASE + "    timeout_execute: 0\n")
    assert zero.startswith("workers.w.timeout_execute: must be more than 0: ")
    assert "seconds a command on the host may run" in zero
    assert problems_of(tmp_path, BASE + "    timeout_execute: -5\n") == [
        "workers.w.timeout_execute: must not be negative"]


@pytest.mark.parametrize("line, problem", [
    ("    poll_interval: 0\n", "workers.w.poll_interval: must be more than 0 seconds"),
    ("    connect_timeout: 0\n", "workers.w.connect_timeout: must be more than 0 seconds"),
    ("    port: 70000\n", "workers.w.port: must be a port number, from 1 to 65535"),
    ("runner:\n  idle_sleep: 0\n", "runner.idle_sleep: must be more than 0 seconds"),
    ("runner:\n  local_poll_interval: 0\n", "runner.local_poll_interval: must be more than 0 seconds"),
    ("queue:\n  backend: mongodb\n  uri: mongodb://h\n  database: d\n  connect_timeout: 0\n",
     "queue.connect_timeout: must be more than 0 seconds"),
])  # fmt: skip
def test_zero_where_zero_is_nonsense(tmp_path, line, problem):
    assert problems_of(tmp_path, BASE + line) == [problem]


def test_zero_where_it_makes_sense_is_kept(tmp_path):
    path = tmp_path / "demo.yaml"
    path.write_text(BASE + "    keepalive: 0\nrunner:\n  delta_retry: [0, 1]\n  recycle_memory_mb: 0\n")
    project = load_project_file(path)
    assert project.workers["w"].keepalive == 0 and project.runner.delta_retry == [0, 1]


EVERYTHING_WRONG = """\
name: demo
colour: blue
workers:
  a:
    type: cloud
    work_dir: relative
    max_jobs: many
  b:
    work_dir: /tmp/b
    timeout_execute: 0
    poll_interval: .nan
  b:
    work_dir: /tmp/c
exec_config:
  e:
    export: {X: [1]}
runner:
  heartbeat: -1
  processes: {checkout: 2}
"""


def test_every_problem_of_a_file_in_one_run(tmp_path, capsys, monkeypatch):
    found = problems_of(tmp_path, EVERYTHING_WRONG)
    assert [p.split(": ")[0] for p in found] == [
        "workers.b", "colour", "workers.a.max_jobs", "workers.a.type", "workers.a.work_dir",
        "exec_config.e.export.X", "runner.heartbeat", "runner.processes.checkout",
    ]  # fmt: skip
    monkeypatch.setenv("JFR_PROJECTS_DIR", str(tmp_path))
    monkeypatch.delenv("JFR_PROJECT", raising=False)
    code, _, err = run_main(capsys, "job", "list")
    assert code == 2
    lines = err.splitlines()
    assert all(line.startswith("jfr: error: ") for line in lines), lines
    # every problem reaches the user in the one run, one line each
    assert all(any(line.endswith(p) for line in lines) for p in found), lines


def test_the_last_worker_of_a_repeated_name_is_still_checked(tmp_path):
    found = problems_of(tmp_path, BASE + "  w:\n    work_dir: relative\n")
    assert found == ["workers.w: repeated key (line 5; first on line 3): only one may stay",
                     "workers.w.work_dir: must be an absolute path"]  # fmt: skip


def test_queue_connect_timeout_default_and_value(tmp_path):
    path = tmp_path / "demo.json"
    data = {"name": "demo", "workers": {"w": {"work_dir": "/tmp/w"}}}
    path.write_text(json.dumps(data))
    assert load_project_file(path).queue.connect_timeout == 5.0
    data["queue"] = {"backend": "mongodb", "uri": "mongodb://h", "database": "d", "connect_timeout": 2}
    path.write_text(json.dumps(data))
    assert load_project_file(path).queue.connect_timeout == 2.0
