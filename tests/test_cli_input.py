"""Hostile values on the command line: each is a one-line error with its exit code, never a traceback;
what tables print is safe for a terminal and in local time that --since/--until read back."""

from __future__ import annotations

import json
import os
import re
import resource
import subprocess
import sys
from datetime import datetime

import pytest
from jobflow import Flow
from test_job_cmd import run_main

from jfr_lib import submit_flow

import testjobs as tj
from conftest import ROOT, wait_for

HUGE = "99999999999999999999999"
NOT_UTF8 = os.fsdecode(b"caf\xe9")  # bytes of an argument that are not UTF-8


def call(capsys, *args, stdin: str = ""):
    """main([...]) as the executable runs it: argparse's exit is an exit code too."""
    return run_main(capsys, *args, stdin=stdin)


@pytest.fixture
def jobs3(penv):
    submit_flow(Flow([tj.add(1, 1), tj.add(2, 2), tj.add(3, 3)], name="three"))
    return penv


HOSTILE = [
    # huge ids, as an ID and as a query value
    (["job", "info", HUGE], 3),
    (["job", "output", HUGE], 3),
    (["job", "pause", HUGE], 3),
    (["job", "delete", HUGE, "-y"], 3),
    (["job", "list", "--flow", HUGE], 3),
    (["job", "pause", "--flow", HUGE], 3),
    (["flow", "info", HUGE], 3),
    (["flow", "delete", HUGE, "-y"], 3),
    (["job", "info", "9" * 5000], 3),  # more digits than int() converts
    # times out of range
    (["job", "list", "--since", "99999999999d"], 2),
    (["job", "list", "--until", "99999999999d"], 2),
    (["job", "list", "--since", "0001-01-01"], 2),
    (["job", "list", "--since", "nan"], 2),
    (["job", "list", "--since", "١h"], 2),  # Arabic-Indic digit
    # counts
    (["job", "list", "-n", "1e20"], 2),
    (["job", "list", "-n", "-5"], 2),
    (["job", "list", "-n", "99999999999999999999"], 2),
    (["job", "list", "-n", "nan"], 2),
    (["flow", "list", "-n", "-5"], 2),
    (["flow", "list", "-n", "99999999999999999999"], 2),
    (["flow", "report", "--days", "99999999999"], 2),
    (["flow", "report", "--days", "0"], 2),
    (["flow", "report", "--days", "-1"], 2),
    (["runner", "logs", "-n", "-5"], 2),
    (["job", "queue-out", "1", "-n", "-1"], 2),
    # seconds
    (["runner", "stop", "--wait", "nan"], 2),
    (["runner", "stop", "--wait", "-1"], 2),
    (["runner", "stop", "--wait", "inf"], 2),
    # a bad regular expression
    (["job", "rerun", "--error", "--error-match", "(", "-y"], 2),
    (["job", "rerun", "1", "--error-match", "a{99999999999}"], 2),
    # numbers and JSON given to set
    (["job", "set", "priority", HUGE, "1"], 2),
    (["job", "set", "priority", "٣", "1"], 2),
    (["job", "set", "priority", "nan", "1"], 2),
    (["job", "set", "resources", '{"time": NaN}', "1"], 2),
    (["job", "set", "resources", '{"n": Infinity}', "1"], 2),
    (["job", "set", "resources", "[" * 100_000, "1"], 2),
    # empty values: refused, never a filter left out
    (["job", "info", ""], 2),
    (["job", "pause", "-s", "READY", "--flow", "", "-y"], 2),  # not: pause every READY job
    (["job", "delete", "-s", "READY", "--since", "", "-y"], 2),
    (["job", "delete", "-s", "READY", "--until", "", "-y"], 2),
    (["job", "delete", "-s", "READY", "--name", "", "-y"], 2),
    (["job", "pause", "-w", "", "-y"], 2),
    (["job", "set", "worker", "", "1"], 2),
    (["-p", "", "job", "list"], 2),
    (["flow", "graph", "1", "--png", ""], 2),
    (["backup", "create", ""], 2),
    # bytes that are not UTF-8
    (["job", "info", NOT_UTF8], 2),
    (["job", "list", "--name", NOT_UTF8], 2),
    (["job", "list", "-w", NOT_UTF8], 2),
    (["job", "list", "--metadata", f"k={NOT_UTF8}"], 2),
    (["job", "files", "get", "1", NOT_UTF8], 2),
]


@pytest.mark.parametrize("args, code", HOSTILE, ids=[" ".join(a)[:60] for a, _ in HOSTILE])
def test_hostile_values_are_one_line_errors(jobs3, capsys, args, code):
    got, out, err = call(capsys, *args)
    assert (got, out) == (code, ""), err
    assert len(err.splitlines()) == 1 and "internal error" not in err and "Traceback" not in err, err
    assert ": error: " in err and err.rstrip("\n").isprintable()


def test_restart_refuses_a_wait_that_is_no_number_of_seconds(capsys):
    from jfr_lib.cli import build_parser

    for wait in ("nan", "-1", "inf", "1e999"):  # parsed only: a restart that got through would start a runner
        with pytest.raises(SystemExit) as exc:
            build_parser().parse_args(["runner", "restart", "--wait", wait])
        assert exc.value.code == 2
        assert capsys.readouterr().err.startswith("jfr runner restart: error: argument --wait:")


def test_backup_into_an_unwritable_place(jobs3, capsys, tmp_path):
    a_file = tmp_path / "a-file"
    a_file.write_text("not a folder\n")
    for folder in (a_file / "backup", a_file, "/proc/jfr-backup"):  # root's permission bits stop nothing
        code, out, err = call(capsys, "backup", "create", str(folder))
        assert (code, out) == (2, ""), err
        assert err.startswith(f"jfr: error: {folder}: cannot create the backup folder") and len(err.splitlines()) == 1
    code, _, err = call(capsys, "backup", "restore", str(a_file / "backup"))
    assert code == 2 and len(err.splitlines()) == 1 and "Traceback" not in err


def test_non_ascii_digits_name_no_job(jobs3, capsys):
    for digit in ("٣", "３", "³"):  # Arabic-Indic, fullwidth, superscript: int() reads the first two as 3
        code, _, err = call(capsys, "job", "info", digit)
        assert code == 3 and err.strip() == f"jfr: error: no job {digit}"
        code, _, err = call(capsys, "job", "delete", digit, "-y")
        assert code == 3
        code, _, err = call(capsys, "job", "list", "--flow", digit)
        assert code == 3 and f"no flow {digit}" in err
        code, _, err = call(capsys, "flow", "delete", digit, "-y")
        assert code == 3
    assert [j["db_id"] for j in jobs3.jobs()] == [1, 2, 3]  # nothing deleted
    assert call(capsys, "job", "info", "003", "--json")[0] == 0  # ASCII digits still name job 3


def test_the_real_executable_with_bytes_that_are_not_utf8(jobs3):
    proc = subprocess.run([sys.executable, str(ROOT / "jfr.py"), "job", "info", b"\xff\x1b[2J"],
                          env=jobs3.env(), capture_output=True, timeout=60)  # fmt: skip
    assert proc.returncode == 2 and proc.stdout == b""
    assert proc.stderr == b"jfr: error: ID '\\udcff\\x1b[2J': not valid UTF-8\n"


def test_a_job_named_twice_is_acted_on_once(jobs3, capsys):
    uuid = jobs3.jobs()[0]["uuid"]
    code, out, err = call(capsys, "job", "delete", "1", uuid, "1", "-y")
    assert (code, out) == (0, "job 1: deleted\n"), err
    code, out, err = call(capsys, "flow", "delete", "1", "1", "-y")
    assert code == 0 and out == "flow 1: deleted with 2 jobs\n", err


def test_escape_codes_in_names_are_shown_escaped(penv, capsys):
    job = tj.add(1, 1)
    job.name = "\x1b[2Jx\u202e"
    submit_flow(Flow([job], name="\x1b]0;title\x07"))
    for args in (["job", "list"], ["job", "info", "1"], ["flow", "list"], ["flow", "info", "1"],
                 ["flow", "graph", "1"], ["flow", "graph", "1", "--format", "dot"]):  # fmt: skip
        code, out, _ = call(capsys, *args)
        assert code == 0 and "\x1b" not in out and "\u202e" not in out and "\x07" not in out, args
    assert "\\x1b[2Jx\\u202e" in call(capsys, "job", "list")[1]
    assert "\\x1b]0;title\\x07" in call(capsys, "flow", "list")[1]
    assert json.loads(call(capsys, "job", "list", "--json")[1])[0]["name"] == "\x1b[2Jx\u202e"  # JSON: as stored
    code, _, err = call(capsys, "job", "info", "\x1b[2J")
    assert code == 3 and err == "jfr: error: no job \\x1b[2J\n"


def test_queue_out_prints_the_end_reading_only_the_end(penv, capsys):
    submit_flow(tj.add(1, 1))
    run_dir = penv.work / "r1"
    run_dir.mkdir(parents=True)
    with penv.db() as db:
        db.update_job(1, {"run_dir": str(run_dir)})
    with open(run_dir / "queue.out", "wb") as f:  # 4 GiB, sparse: only its end is on disk
        f.truncate(4 * 2**30)
        f.seek(0, os.SEEK_END)
        f.write(b"".join(b"line %d \xff\n" % i for i in range(1000)))
    (run_dir / "queue.err").write_text("warning\n")

    def limited():  # reading the whole file would need more memory than this
        resource.setrlimit(resource.RLIMIT_AS, (2**30, 2**30))

    cmd = [sys.executable, str(ROOT / "jfr.py"), "job", "queue-out", "1"]
    proc = subprocess.run(cmd, env=penv.env(), capture_output=True, text=True, timeout=60, preexec_fn=limited)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0] == "==> queue.out <==" and lines[1:201] == [f"line {i} \ufffd" for i in range(800, 1000)]
    assert lines[201:] == ["==> queue.err <==", "warning"]
    proc = subprocess.run([*cmd, "-n", "3"], env=penv.env(), capture_output=True, text=True, timeout=60,
                          preexec_fn=limited)  # fmt: skip
    assert proc.stdout.splitlines()[1:4] == ["line 997 \ufffd", "line 998 \ufffd", "line 999 \ufffd"]
    (run_dir / "queue.out").write_text("".join(f"{i}\n" for i in range(500)))
    code, out, _ = call(capsys, "job", "queue-out", "1", "--all")
    assert code == 0 and out.splitlines()[1:501] == [str(i) for i in range(500)]
    (run_dir / "queue.err").unlink()
    _, out, _ = call(capsys, "job", "queue-out", "1", "-n", "1")
    assert out == "==> queue.out <==\n499\n==> queue.err <==\n(missing)\n"


# --- times -----------------------------------------------------------------------------

TABLE_TIME = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2} [0-9]{2}:[0-9]{2}:[0-9]{2}[+-][0-9]{2}:[0-9]{2}")


def _next_second():
    start = datetime.now().replace(microsecond=0)
    wait_for(lambda: datetime.now().replace(microsecond=0) > start, 5, interval=0.01, message="the next second")


def test_a_time_copied_from_a_table_selects_the_right_jobs(penv):
    for i in range(3):  # three jobs updated in three different seconds
        if i:
            _next_second()
        submit_flow(tj.add(i, i))
    env = {**penv.env(), "TZ": "Asia/Kolkata"}  # UTC+05:30, no daylight saving time

    def jfr(*args):
        proc = subprocess.run([sys.executable, str(ROOT / "jfr.py"), *args], env=env, capture_output=True,
                              text=True, timeout=60)  # fmt: skip
        assert proc.returncode == 0, proc.stderr
        return proc.stdout

    rows = jfr("job", "list").splitlines()[1:]
    shown = [TABLE_TIME.search(row).group(0) for row in rows]
    assert all(t.endswith("+05:30") for t in shown) and len(set(shown)) == 3
    stored = [j["updated_on"] for j in json.loads(jfr("job", "list", "--json"))]
    assert all(t.endswith("+00:00") for t in stored)  # JSON: ISO 8601 UTC, as stored

    def ids(*args):
        return [j["db_id"] for j in json.loads(jfr("job", "list", "--json", *args))]

    second = shown[1]
    assert ids("--since", second) == [2, 3]
    assert ids("--until", second) == [1]
    assert ids("--since", shown[0], "--until", shown[2]) == [1, 2]
    assert ids("--since", second[:-6]) == [2, 3]  # a naive time is local time
    assert ids("--since", second.replace(" ", "T")) == [2, 3]  # ISO with its offset
    utc = stored[1][:19] + "Z"  # the same instant in UTC
    assert ids("--since", utc) == [2, 3]
    assert ids("--since", "1h") == [1, 2, 3] and ids("--until", "1h") == []
    assert TABLE_TIME.search(jfr("job", "info", "2")).group(0) == second
    assert TABLE_TIME.search(jfr("flow", "list").splitlines()[1]).group(0).endswith("+05:30")
