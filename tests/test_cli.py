"""The command line, through main([...]) and through the installed ``jfr`` executable."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest

from jfr_lib import submit_flow
from jfr_lib.cli import main

import testjobs as tj

HEAVY = ("jobflow", "maggma", "montydb", "fabric", "qtoolkit", "paramiko", "pymongo", "monty")


def run_main(capsys, *args):
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def test_project_init_list_show(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("JFR_PROJECTS_DIR", str(tmp_path / "projects"))
    monkeypatch.delenv("JFR_PROJECT", raising=False)
    code, out, _ = run_main(capsys, "project", "init", "alpha", "--base-dir", str(tmp_path / "data"))
    assert code == 0 and "alpha.yaml" in out
    text = (tmp_path / "projects" / "alpha.yaml").read_text()
    assert text.startswith("#") and "type: local" in text
    code, _, err = run_main(capsys, "project", "init", "alpha")
    assert code == 2 and "already exists" in err
    code, out, _ = run_main(capsys, "project", "list", "--json")
    assert code == 0 and json.loads(out)[0]["name"] == "alpha" and json.loads(out)[0]["status"] == "ok"
    code, out, _ = run_main(capsys, "-p", "alpha", "project", "show", "--json")
    shown = json.loads(out)
    assert shown["workers"]["local"]["work_dir"] == str(tmp_path / "data" / "run")
    assert shown["queue"]["path"] == str(tmp_path / "data" / "queue.db")


def test_malformed_project_gives_one_line_and_exit_2(penv, capsys):
    penv.path.write_text("name: test\nworkers:\n  cluster:\n    type: local\n    work_dir: relative/dir\n")
    code, out, err = run_main(capsys, "job", "list")
    assert code == 2
    assert err.strip() == f"jfr: error: {penv.path}: workers.cluster.work_dir: must be an absolute path"
    code, out, err = penv.jfr("job", "list", check=False)  # the real executable
    assert code == 2 and "Traceback" not in err and len(err.strip().splitlines()) == 1
    penv.path.write_text("workers: [unclosed\n")
    code, _, err = run_main(capsys, "flow", "list")
    assert code == 2 and "not valid YAML" in err


def test_job_list_info_and_filters(penv, capsys):
    submit_flow(tj.add(1, 2))
    a = tj.add(1, 1)
    submit_flow([a, tj.add(a.output, 1)])
    code, out, _ = run_main(capsys, "job", "list", "--json")
    rows = json.loads(out)
    assert code == 0 and [r["db_id"] for r in rows] == [1, 2, 3]
    assert {"db_id", "uuid", "index", "name", "state", "worker"} <= set(rows[0])
    code, out, _ = run_main(capsys, "job", "list", "--state", "waiting", "--json")
    assert [r["db_id"] for r in json.loads(out)] == [3]
    code, out, _ = run_main(capsys, "job", "list")
    assert out.splitlines()[0].split()[:3] == ["ID", "NAME", "STATE"] and len(out.splitlines()) == 4
    code, out, _ = run_main(capsys, "job", "info", "3", "--json")
    assert json.loads(out)["parents"] == [a.uuid]
    code, out, _ = run_main(capsys, "job", "info", a.uuid)
    assert code == 0 and "READY" in out and "testjobs.add" in out
    code, _, err = run_main(capsys, "job", "info", "999")
    assert code == 3 and "no job 999" in err
    code, _, err = run_main(capsys, "job", "list", "--state", "SLEEPING")
    assert code == 2 and "unknown state" in err
    code, out, _ = run_main(capsys, "flow", "list", "--json")
    flows = json.loads(out)
    assert len(flows) == 2 and {"db_id", "uuid", "name", "state"} <= set(flows[0])


@pytest.mark.e2e
def test_job_output_after_a_run(penv, capsys):
    a = tj.add(20, 22)
    submit_flow(a)
    code, _, err = run_main(capsys, "job", "output", "1")
    assert code == 3 and "no output yet" in err
    penv.run_until_idle()
    code, out, _ = run_main(capsys, "job", "output", "1", "--json")
    assert code == 0 and json.loads(out) == 42
    _, out, _ = penv.jfr("job", "list", "--json")
    assert json.loads(out)[0]["state"] == "COMPLETED"


@pytest.mark.parametrize("args", [["--help"], ["job", "list"], ["job", "info", "1"], ["flow", "list"]])
def test_fast_commands_import_nothing_heavy(penv, args):
    submit_flow(tj.add(1, 2))
    code = (
        "import sys\nfrom jfr_lib.cli import main\n"
        f"try:\n    main({args!r})\nexcept SystemExit:\n    pass\n"
        f"print('HEAVY=' + ','.join(m for m in {HEAVY!r} if m in sys.modules))"
    )
    proc = subprocess.run([sys.executable, "-c", code], env=penv.env(), capture_output=True,
                          text=True, timeout=60)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().splitlines()[-1] == "HEAVY="


def test_installed_executable_answers(penv):
    exe = shutil.which("jfr")
    if exe is None:
        pytest.skip("jfr is not installed (pip install -e .)")
    proc = subprocess.run([exe, "--version"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and proc.stdout.startswith("jfr ")
    proc = subprocess.run([exe, "job", "list", "--json"], capture_output=True, text=True,
                          timeout=60, env=penv.env())  # fmt: skip
    assert proc.returncode == 0 and json.loads(proc.stdout) == []
