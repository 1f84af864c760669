"""Flow commands: info, graph, delete, resume, report."""

from __future__ import annotations

import json
import shutil

import pytest
from jobflow import Flow
from test_job_cmd import run_main

from jfr_lib import submit_flow

import testjobs as tj


@pytest.fixture
def diamond(penv):
    top = tj.add(1, 1)
    left, right = tj.add(top.output, 10), tj.add(top.output, 20)
    bottom = tj.add(left.output, right.output)
    submit_flow(Flow([top, left, right, bottom], name="diamond"))
    submit_flow(Flow([tj.add(5, 5)], name="single"))
    return penv


def test_info_and_list(diamond, capsys):
    code, out, _ = run_main(capsys, "flow", "info", "1", "--json")
    info = json.loads(out)
    assert code == 0 and info["states"] == {"READY": 1, "WAITING": 3} and len(info["jobs"]) == 4
    code, out, _ = run_main(capsys, "flow", "list", "--name", "sing*", "--json")
    assert [f["name"] for f in json.loads(out)] == ["single"]
    code, _, err = run_main(capsys, "flow", "info", "7")
    assert code == 3 and "no flow 7" in err


def test_list_shows_the_newest_flows(penv, capsys):
    for i in range(5):
        submit_flow(Flow([tj.add(i, i)], name=f"f{i}"))
    _, out, _ = run_main(capsys, "flow", "list", "-n", "2", "--json")
    assert [f["name"] for f in json.loads(out)] == ["f3", "f4"]  # the newest two, oldest of them first
    _, out, _ = run_main(capsys, "flow", "list", "--count", "--name", "f[0-2]")
    assert out.strip() == "3"


def test_graph_mermaid_and_dot(diamond, capsys):
    _, out, _ = run_main(capsys, "flow", "graph", "1")
    lines = out.splitlines()
    assert lines[0] == "flowchart TD"
    assert {"    j1 --> j2", "    j1 --> j3", "    j2 --> j4", "    j3 --> j4"} <= set(lines)
    _, out, _ = run_main(capsys, "flow", "graph", "1", "--format", "dot")
    assert out.startswith("digraph flow {") and "  j3 -> j4;" in out and out.rstrip().endswith("}")
    if shutil.which("dot"):
        png = diamond.root / "g.png"
        assert run_main(capsys, "flow", "graph", "1", "--png", str(png))[0] == 0
        assert png.read_bytes()[:4] == b"\x89PNG"


def test_resume_and_delete(diamond, capsys):
    run_main(capsys, "job", "pause", "1")
    code, out, _ = run_main(capsys, "flow", "resume", "1")
    assert code == 0 and "job 1: PAUSED -> READY" in out
    code, _, err = run_main(capsys, "flow", "delete", "1", stdin="n\n")
    assert code == 1 and "delete 4 jobs? [y/N]" in err
    code, out, _ = run_main(capsys, "flow", "delete", "1", "-y")
    assert code == 0 and "deleted with 4 jobs" in out
    _, out, _ = run_main(capsys, "flow", "list", "--json")
    assert [f["name"] for f in json.loads(out)] == ["single"]
    assert [j["db_id"] for j in diamond.jobs()] == [5]


def test_report(diamond, capsys):
    code, out, _ = run_main(capsys, "flow", "report", "--json", "--days", "3")
    data = json.loads(out)
    assert data["jobs"] == 5 and data["states"] == {"READY": 2, "WAITING": 3}
    assert data["workers"] == {"local": {"READY": 2, "WAITING": 3}} and len(data["days"]) == 3
