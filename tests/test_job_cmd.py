"""Job commands on IDs or queries: filters, confirmation, state rules, rerun, delete, set."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from jobflow import Flow

from jfr_lib import submit_flow
from jfr_lib.cli import main

import testjobs as tj


def run_main(capsys, *args, stdin: str = ""):
    import sys

    old = sys.stdin
    sys.stdin = io.StringIO(stdin)
    try:
        code = main(list(args))
    except SystemExit as exc:  # argparse's exit is an exit code too, as in the executable
        code = exc.code
    finally:
        sys.stdin = old
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def many(penv):
    """Two flows: 'relax' jobs with metadata, and a 'static' job on another worker."""
    penv.write(None, workers=f"  other:\n    type: local\n    work_dir: {penv.work}/other\n")
    relax = [tj.add(i, 1) for i in range(3)]
    for j in relax:
        j.name = f"relax-{j.name}"
        j.metadata = {"material": "Si"}
    submit_flow(Flow(relax, name="first"))
    static = tj.add(9, 9)
    static.name = "static"
    submit_flow(Flow([static], name="second"), worker="other")
    return penv


def ids(out: str) -> list:
    return [row["db_id"] for row in json.loads(out)]


def test_list_filters_count_sort_limit(many, capsys):
    assert ids(run_main(capsys, "job", "list", "--name", "relax-*", "--json")[1]) == [1, 2, 3]
    assert ids(run_main(capsys, "job", "list", "-w", "other", "--json")[1]) == [4]
    assert ids(run_main(capsys, "job", "list", "--flow", "2", "--json")[1]) == [4]
    assert ids(run_main(capsys, "job", "list", "--metadata", "material=Si", "--json")[1]) == [1, 2, 3]
    assert ids(run_main(capsys, "job", "list", "--since", "1h", "--json")[1]) == [1, 2, 3, 4]
    assert ids(run_main(capsys, "job", "list", "--until", "1h", "--json")[1]) == []
    assert run_main(capsys, "job", "list", "--count")[1].strip() == "4"
    assert json.loads(run_main(capsys, "job", "list", "--count", "--json", "-s", "READY")[1]) == {"count": 4}
    assert ids(run_main(capsys, "job", "list", "-n", "2", "--json")[1]) == [3, 4]
    assert ids(run_main(capsys, "job", "list", "--sort", "name", "--json")[1])[-1] == 4  # "static" last
    code, _, err = run_main(capsys, "job", "list", "--since", "yesterday-ish")
    assert code == 2 and "--since" in err
    code, _, err = run_main(capsys, "job", "list", "--flow", "99")
    assert code == 3 and "no flow 99" in err


def test_query_actions_ask_for_confirmation(many, capsys):
    code, _, err = run_main(capsys, "job", "pause", "--name", "relax-*", stdin="n\n")
    assert code == 1 and "pause 3 jobs? [y/N]" in err and "nothing done" in err
    assert ids(run_main(capsys, "job", "list", "-s", "PAUSED", "--json")[1]) == []
    code, out, _ = run_main(capsys, "job", "pause", "--name", "relax-*", stdin="y\n")
    assert code == 0 and out.count("READY -> PAUSED") == 3
    code, out, _ = many.jfr("job", "resume", "-s", "PAUSED", "-y")  # the real executable, no prompt
    assert code == 0 and out.count("PAUSED -> READY") == 3
    code, out, _ = many.jfr("job", "pause", "-s", "READY", stdin="yes\n")
    assert code == 0 and out.count("-> PAUSED") == 4
    code, _, err = run_main(capsys, "job", "pause")
    assert code == 2 and "name jobs by ID or select them with filters" in err


def test_state_rules_are_explained(many, capsys):
    code, _, err = run_main(capsys, "job", "retry", "1")
    assert code == 4 and "job 1 (relax-add) is READY: only REMOTE_ERROR jobs can be retried" in err
    code, _, err = run_main(capsys, "job", "rerun", "1")
    assert code == 4 and "can be rerun" in err
    code, _, err = run_main(capsys, "job", "resume", "1")
    assert code == 4 and "only PAUSED jobs can be resumed" in err
    code, _, err = run_main(capsys, "job", "pause", "1", "999")
    assert code == 3 and "no job 999" in err


def test_set_worker_exec_config_resources_priority(many, capsys):
    assert run_main(capsys, "job", "set", "worker", "other", "1")[0] == 0
    assert run_main(capsys, "job", "set", "exec-config", "with_env", "1")[0] == 0
    assert run_main(capsys, "job", "set", "resources", '{"job_name": "x"}', "1")[0] == 0
    assert run_main(capsys, "job", "set", "priority", "5", "--name", "relax-*", "-y")[0] == 0
    code, out, _ = run_main(capsys, "job", "info", "1", "--json")
    job = json.loads(out)
    assert (job["worker"], job["exec_config"], job["resources"], job["priority"]) == (
        "other", "with_env", {"job_name": "x"}, 5)
    # resources merge by default: new keys win, null removes a key; --replace replaces
    code, out, _ = run_main(capsys, "job", "set", "resources", '{"time": "1:00:00", "nodes": 2}', "1")
    assert code == 0 and '{"job_name": "x", "time": "1:00:00", "nodes": 2}' in out
    run_main(capsys, "job", "set", "resources", '{"nodes": null, "job_name": "y"}', "1")
    assert json.loads(run_main(capsys, "job", "info", "1", "--json")[1])["resources"] == {
        "job_name": "y", "time": "1:00:00"}
    run_main(capsys, "job", "set", "resources", '{"partition": "debug"}', "1", "--replace")
    assert json.loads(run_main(capsys, "job", "info", "1", "--json")[1])["resources"] == {"partition": "debug"}
    code, _, err = run_main(capsys, "job", "set", "worker", "mars", "1")
    assert code == 2 and "unknown worker 'mars'" in err
    code, _, err = run_main(capsys, "job", "set", "resources", "[1]", "1")
    assert code == 2 and "JSON mapping" in err


@pytest.mark.e2e
def test_rerun_and_delete(penv, capsys):
    a = tj.add(1, 2)
    b = tj.add(a.output, 3)
    submit_flow([a, b])
    penv.run_until_idle()
    code, _, err = run_main(capsys, "job", "rerun", "1")
    assert code == 4 and "--force" in err
    code, out, _ = run_main(capsys, "job", "rerun", "1", "--force")
    assert code == 0 and "COMPLETED -> READY" in out
    first = penv.jobs()
    assert [j["state"] for j in first] == ["READY", "WAITING"]  # the child waits again
    assert first[0]["run_dir"] is None and first[0]["reruns"] == 1
    penv.run_until_idle()
    again = penv.jobs()
    assert [j["state"] for j in again] == ["COMPLETED", "COMPLETED"]
    assert again[0]["run_dir"].endswith("_1_r1") and Path(again[0]["run_dir"], "jfr_out.json").exists()
    assert penv.output(again[1]) == 6
    code, out, _ = run_main(capsys, "job", "delete", "2", "--output", "--files")
    assert code == 0 and "deleted" in out
    assert not Path(again[1]["run_dir"]).exists()
    assert [j["db_id"] for j in penv.jobs()] == [1]
    code, _, err = run_main(capsys, "job", "output", "2")
    assert code == 3
    from jfr_lib.jobstore import get_jobstore

    assert get_jobstore(penv.project).docs_store.query_one({"uuid": b.uuid}) is None


@pytest.mark.e2e
def test_bulk_rerun_of_failed_jobs_matching_an_error(penv, capsys):
    submit_flow(Flow([tj.fail("disk full"), tj.fail("segfault"), tj.add(1, 1)]))
    penv.run_until_idle()
    code, out, _ = run_main(capsys, "job", "rerun", "--error", "--error-match", "disk", "-y")
    assert code == 0 and out.count("FAILED -> READY") == 1
    states = {j["db_id"]: j["state"] for j in penv.jobs()}
    assert states == {1: "READY", 2: "FAILED", 3: "COMPLETED"}
