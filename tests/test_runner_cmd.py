"""``jfr runner`` without a runner process: reading an invalid project file leniently, the cron line."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys

import pytest
from test_cli_input import call

VALID = {
    ".yaml": "name: {name}\nbase_dir: {base}\nlog_dir: {logs}\nqueue:\n  path: {queue}\n"
             "workers:\n  local:\n    type: local\n    work_dir: /tmp\n",
    ".toml": 'name = "{name}"\nbase_dir = "{base}"\nlog_dir = "{logs}"\n[queue]\npath = "{queue}"\n'
             '[workers.local]\ntype = "local"\nwork_dir = "/tmp"\n',
    ".json": '{{"name": "{name}", "base_dir": "{base}", "log_dir": "{logs}", "queue": {{"path": "{queue}"}}, '
             '"workers": {{"local": {{"type": "local", "work_dir": "/tmp"}}}}}}\n',
}  # fmt: skip
BROKEN = {".yaml": "workers: [unclosed\n", ".toml": "oops = = 1\n[runner\n", ".json": ', "oops": }\n'}


@pytest.mark.parametrize("suffix", [".yaml", ".toml", ".json"])
def test_status_and_logs_read_an_invalid_file_leniently(tmp_path, monkeypatch, capsys, suffix):
    from jfr_lib import lease
    from jfr_lib.config_lenient import lenient_project

    projects = tmp_path / "projects"
    projects.mkdir()
    monkeypatch.setenv("JFR_PROJECTS_DIR", str(projects))
    monkeypatch.delenv("JFR_PROJECT", raising=False)
    path = projects / f"p{suffix}"
    keys = {"name": "p", "base": tmp_path / "data", "logs": tmp_path / "logs", "queue": tmp_path / "q" / "jobs.db"}
    path.write_text(VALID[suffix].format(**keys))
    project, problem = lenient_project()
    assert problem is None
    (tmp_path / "logs").mkdir()
    (tmp_path / "logs" / "p.log").write_text("first\nsecond\n")
    from jfr_lib.queue_db import open_queue_db

    with open_queue_db(project) as db:  # this process holds the lease: a runner that runs
        assert lease.acquire(db, lease.new_lease(60, 180))[0]
    text = VALID[suffix].format(**keys)
    path.write_text(text.rstrip("}\n") + BROKEN[suffix] if suffix == ".json" else text + BROKEN[suffix])
    partial, problem = lenient_project()
    assert problem is not None and str(problem).startswith(f"{path}: not valid {suffix[1:].upper()}")
    assert (partial.queue_db_path, partial.log_path) == (keys["queue"], keys["logs"] / "p.log")
    assert partial.base_dir == keys["base"]
    code, out, err = call(capsys, "runner", "status")
    assert (code, out) == (0, "running\n")
    assert len(err.splitlines()) == 1 and err.startswith("jfr: warning: the project file is invalid")
    code, out, err = call(capsys, "runner", "logs", "-n", "1")
    assert (code, out) == (0, "second\n") and len(err.splitlines()) == 1
    assert call(capsys, "job", "list")[0] == 2  # the rest of jfr still refuses the file


def test_a_file_that_says_nothing_usable_is_still_an_error(penv, capsys):
    penv.path.write_text("base_dir: relative/path\nworkers: [\n")
    code, out, err = call(capsys, "runner", "status")
    assert code == 2 and out == "" and err.startswith(f"jfr: error: {penv.path}: not valid YAML")


def test_cron_line_names_everything_by_absolute_path(penv, capsys, monkeypatch):
    monkeypatch.setenv("XDG_DATA_HOME", "/srv/data 100%")
    code, out, _ = call(capsys, "runner", "cron-line")
    assert code == 0 and out.startswith("*/5 * * * * ")
    words = shlex.split(out.split(None, 5)[5].replace("\\%", "%"))
    python = words.index(sys.executable)
    assert words[:python] == [f"JFR_PROJECTS_DIR={penv.projects}", "XDG_DATA_HOME=/srv/data 100%",
                              f"PYTHONPATH={os.environ['PYTHONPATH']}"]  # what jobs import, as in this shell
    assert words[python + 1] == "-c" and words[-6:-1] == ["-p", "test", "runner", "start", ">/dev/null"]
    assert words[-1] == f"2>>{penv.root / 'logs' / 'test.log'}" and (penv.root / "logs").is_dir()
    assert "100\\%" in out  # cron reads a bare % as a line break
    assert call(capsys, "runner", "cron-line", "--every", "60")[0] == 2
    code, out, _ = call(capsys, "runner", "info", "--json")
    assert code == 0 and json.loads(out)["status"] == "stopped"


@pytest.mark.e2e
def test_the_cron_line_starts_the_runner_from_cron_s_bare_environment(penv, capsys):
    code, out, _ = call(capsys, "runner", "cron-line")
    assert code == 0
    command = out.split(None, 5)[5].rstrip("\n").replace("\\%", "%")  # what cron hands to sh
    bare = {"PATH": "/usr/bin:/bin", "HOME": str(penv.root), "SHELL": "/bin/sh"}  # cron's environment
    try:
        done = subprocess.run(["/bin/sh", "-c", command], env=bare, timeout=120)
        assert done.returncode == 0
        assert penv.jfr("runner", "status", check=False)[1].strip() == "running"
        done = subprocess.run(["/bin/sh", "-c", command], env=bare, timeout=120)  # the next tick: a no-op
        assert done.returncode == 0
        assert "nothing to do, a runner already runs" in (penv.root / "logs" / "test.log").read_text()
    finally:
        penv.jfr("runner", "stop", check=False)
    assert penv.jfr("runner", "status", check=False)[1].strip() == "stopped"


def test_logs_show_escape_codes_escaped(penv, capsys):
    (penv.root / "logs").mkdir()
    (penv.root / "logs" / "test.log").write_bytes(b"job 3 (\x1b[2Jx) FAILED\nbad byte \xff\n")
    code, out, _ = call(capsys, "runner", "logs")
    assert (code, out) == (0, "job 3 (\\x1b[2Jx) FAILED\nbad byte \ufffd\n")
