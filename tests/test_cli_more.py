"""project validate/workers/exec-configs, admin, completion, colour."""

from __future__ import annotations

import json
import subprocess

from jobflow import Flow
from test_job_cmd import run_main

from jfr_lib import submit_flow
from jfr_lib.cli.completion_cmd import script

import testjobs as tj


def test_project_validate_workers_exec_configs(penv, capsys, tmp_path):
    code, out, _ = run_main(capsys, "project", "validate")
    assert code == 0 and out.strip().endswith("ok (1 workers, 1 exec_configs)")
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: bad\nworkers:\n  w:\n    work_dir: here\n")
    code, _, err = run_main(capsys, "project", "validate", str(bad))
    assert code == 2 and err.strip() == f"jfr: error: {bad}: workers.w.work_dir: must be an absolute path"
    _, out, _ = run_main(capsys, "project", "workers", "--json")
    assert json.loads(out)[0] | {"work_dir": None} == {"name": "local", "type": "local", "scheduler_type": "shell",
                                                       "host": "localhost", "user": None, "work_dir": None,
                                                       "max_jobs": None}  # fmt: skip
    _, out, _ = run_main(capsys, "project", "exec-configs", "--json")
    assert json.loads(out)[0]["export"] == {"JFR_TEST_VAR": "from-exec-config"}


def test_admin_unlock_upgrade_reset(penv, capsys):
    submit_flow(Flow([tj.add(1, 1), tj.add(2, 2)]))
    with penv.db() as db:
        db.claim_job({"state": "READY"}, "dead:1:x:0")
    code, out, _ = run_main(capsys, "admin", "unlock", "-y")
    assert code == 0 and out.strip() == "job 1: unlocked"
    with penv.db() as db:
        assert db.count_jobs({"locked": True}) == 0
    code, out, _ = run_main(capsys, "admin", "upgrade")
    assert code == 0 and "nothing to do" in out
    code, _, err = run_main(capsys, "admin", "reset", stdin="no\n")
    assert code == 1 and "remove 1 flows and 2 jobs? [y/N]" in err
    for i in range(26):
        submit_flow(tj.add(i, 0))
    code, _, err = run_main(capsys, "admin", "reset", stdin="y\n")
    assert code == 1 and "type today's date" in err
    from datetime import date

    code, out, _ = run_main(capsys, "admin", "reset", stdin=date.today().isoformat() + "\n")
    assert code == 0 and "removed 27 flows and 28 jobs" in out
    assert penv.jobs() == []


def test_admin_refuses_while_a_runner_runs(penv, capsys):
    from jfr_lib import lease

    with penv.db() as db:
        assert lease.acquire(db, lease.new_lease(60, 180))[0]  # this process holds the lease
    code, _, err = run_main(capsys, "admin", "reset", "-y")
    assert code == 4 and "a runner is running" in err


def test_bash_completion_completes_groups_verbs_and_options(tmp_path):
    path = tmp_path / "jfr.bash"
    path.write_text(script("bash"))

    def complete(*words):
        line = " ".join(f"'{w}'" for w in words)
        cmd = f'source {path}; COMP_WORDS=(jfr {line}); COMP_CWORD={len(words)}; _jfr; echo "${{COMPREPLY[@]}}"'
        result = subprocess.run(["bash", "-c", cmd], capture_output=True, text=True, timeout=30, check=True)
        return result.stdout.split()

    assert complete("ru") == ["runner"]
    assert complete("-p", "demo", "job", "re") == ["retry", "resume", "rerun"]
    assert "--exit-when-idle" in complete("runner", "run", "--e")
    assert script("zsh").startswith("#compdef jfr")


def test_colour_only_on_a_terminal_and_never_with_no_color(monkeypatch, capsys):
    import sys

    from jfr_lib.cli.output import print_table

    rows = [{"state": "FAILED"}]
    print_table(rows, [("state", "STATE")])
    assert "\033[" not in capsys.readouterr().out  # captured: not a terminal
    monkeypatch.setattr(sys.stdout, "isatty", lambda: True)
    print_table(rows, [("state", "STATE")])
    assert "\033[31mFAILED\033[0m" in capsys.readouterr().out
    monkeypatch.setenv("NO_COLOR", "1")
    print_table(rows, [("state", "STATE")])
    assert "\033[" not in capsys.readouterr().out
