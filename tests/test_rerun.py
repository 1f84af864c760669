"""End to end: reruns give what a fresh run gives; stops release the children that accept it."""

from __future__ import annotations

import pytest
from jobflow import Flow
from test_job_cmd import run_main

from jfr_lib import submit_flow

import testjobs as tj

pytestmark = pytest.mark.e2e


def by_uuid(penv) -> dict:
    return {(j["uuid"], j["index"]): j for j in penv.jobs()}


def test_rerun_removes_what_earlier_runs_created(penv, capsys, tmp_path):
    source = tmp_path / "value.txt"
    source.write_text("v1")
    src = tj.read_text(str(source))
    mid = tj.expand(src.output)  # replaced by tag(value, "-r") at index 2, adds tag(value, "-a")
    end = tj.tag(mid.output, "-end")
    submit_flow(Flow([src, mid, end]))
    penv.run_until_idle()
    first = by_uuid(penv)
    assert len(first) == 5 and {j["state"] for j in first.values()} == {"COMPLETED"}
    assert penv.output(first[(end.uuid, 1)]) == "v1-r-end"
    old_addition = next(j for j in first.values() if j.get("created_by", {}).get("kind") == "addition")
    assert penv.output(old_addition) == "v1-a"

    source.write_text("v2")
    src_id = str(first[(src.uuid, 1)]["db_id"])
    code, _, err = run_main(capsys, "job", "rerun", src_id)
    assert code == 4 and "--force" in err
    code, out, _ = run_main(capsys, "job", "rerun", src_id, "--force")
    assert code == 0 and "COMPLETED -> READY" in out
    now = by_uuid(penv)
    # the index-2 job and the added job are gone, outputs included; the rest waits again
    assert set(now) == {(src.uuid, 1), (mid.uuid, 1), (end.uuid, 1)}
    assert [now[k]["state"] for k in sorted(now, key=lambda k: now[k]["db_id"])] == ["READY", "WAITING", "WAITING"]
    from jfr_lib.jobstore import get_jobstore

    store = get_jobstore(penv.project)
    assert store.docs_store.count({"uuid": {"$in": [mid.uuid, end.uuid, old_addition["uuid"]]}}) == 0
    penv.run_until_idle()
    again = by_uuid(penv)
    assert len(again) == 5 and {j["state"] for j in again.values()} == {"COMPLETED"}
    assert penv.output(again[(mid.uuid, 2)]) == "v2-r"
    assert again[(mid.uuid, 2)]["run_dir"].endswith("_2_r1")  # not the folder of the removed index 2
    assert penv.output(again[(end.uuid, 1)]) == "v2-r-end"
    additions = [j for j in again.values() if j.get("created_by", {}).get("kind") == "addition"]
    assert len(additions) == 1 and additions[0]["uuid"] != old_addition["uuid"]
    assert penv.output(additions[0]) == "v2-a"
    with penv.db() as db:
        assert db.get_flow(again[(src.uuid, 1)]["flow_uuid"])["n_jobs"] == 5


def test_rerun_that_would_reset_a_completed_job_needs_force(penv, capsys, tmp_path):
    marker = tmp_path / "ready"
    bad = tj.flaky(str(marker))
    child = tj.tolerant(bad.output)  # ran with the output missing
    submit_flow(Flow([bad, child]))
    penv.run_until_idle()
    jobs = by_uuid(penv)
    assert jobs[(bad.uuid, 1)]["state"] == "FAILED" and penv.output(jobs[(child.uuid, 1)]) == "missing"
    bad_id = str(jobs[(bad.uuid, 1)]["db_id"])
    code, _, err = run_main(capsys, "job", "rerun", bad_id)
    assert code == 4
    assert f"rerunning it would reset COMPLETED job {jobs[(child.uuid, 1)]['db_id']} (tolerant)" in err
    assert "--force" in err
    assert by_uuid(penv)[(child.uuid, 1)]["state"] == "COMPLETED"  # nothing changed
    marker.write_text("")
    code, out, _ = run_main(capsys, "job", "rerun", bad_id, "--force")
    assert code == 0 and "FAILED -> READY" in out
    penv.run_until_idle()
    jobs = by_uuid(penv)
    assert penv.output(jobs[(bad.uuid, 1)]) == "ok" and penv.output(jobs[(child.uuid, 1)]) == "ok"


def test_user_stop_releases_children_that_accept_a_missing_output(penv, capsys):
    parent = tj.add(1, 1)
    tolerant, strict = tj.tolerant(parent.output), tj.add(parent.output, 1)
    submit_flow(Flow([parent, tolerant, strict]))
    code, out, _ = run_main(capsys, "job", "stop", parent.uuid)
    assert code == 0 and "READY -> USER_STOPPED" in out
    jobs = by_uuid(penv)
    assert jobs[(tolerant.uuid, 1)]["state"] == "READY" and jobs[(strict.uuid, 1)]["state"] == "WAITING"
    penv.run_until_idle()
    jobs = by_uuid(penv)
    assert penv.output(jobs[(tolerant.uuid, 1)]) == "missing"
    assert jobs[(strict.uuid, 1)]["state"] == "WAITING"
    with penv.db() as db:
        assert db.get_flow(jobs[(parent.uuid, 1)]["flow_uuid"])["state"] == "STOPPED"


def test_flow_stop_releases_a_tolerant_child_in_another_flow(penv):
    stopper = tj.stop_flow_job(1)
    stopped = tj.add(stopper.output, 1)
    submit_flow(Flow([stopper, stopped]))
    reader = tj.tolerant(stopped.output)
    submit_flow(Flow([reader]), allow_external_references=True)
    penv.run_until_idle()
    jobs = by_uuid(penv)
    assert jobs[(stopped.uuid, 1)]["state"] == "STOPPED"
    assert penv.output(jobs[(reader.uuid, 1)]) == "missing"


@pytest.mark.parametrize("backend", ["sqlite", "mongo"])
def test_rerun_plan_on_both_backends(tmp_path, backend):
    """a -> b (replaced by b@2, which a replacement job r feeds; b's child c waits for r too), b adds x."""
    from jfr_lib.errors import StateError
    from jfr_lib.rerun import rerun

    if backend == "sqlite":
        from jfr_lib.queue_db.sqlite import SQLiteQueueDB

        db = SQLiteQueueDB(tmp_path / "queue.db")
    else:
        mongomock = pytest.importorskip("mongomock")
        from jfr_lib.queue_db.mongo import MongoQueueDB

        db = MongoQueueDB(database="t", client=mongomock.MongoClient())

    def doc(uuid, parents=(), index=1, **extra):
        return {"uuid": uuid, "index": index, "name": uuid, "state": "COMPLETED", "parents": list(parents),
                "flow_uuid": "f", "job": {}, "run_dir": f"/run/{uuid}_{index}", **extra}  # fmt: skip

    replaced, added = {"uuid": "b", "index": 1, "kind": "replace"}, {"uuid": "b", "index": 1, "kind": "addition"}
    db.insert_flow({"uuid": "f", "name": "f", "state": "COMPLETED"}, [
        doc("a"), doc("b", ["a"], created=["b", "r", "x"]), doc("c", ["b", "r"]), doc("z"),
        doc("r", created_by=replaced), doc("b", ["r"], index=2, created_by=replaced),
        doc("x", ["b"], created_by=added)])  # fmt: skip
    a = db.get_job(uuid="a")
    with pytest.raises(StateError, match="add --force to rerun a COMPLETED job"):
        rerun(db, a)
    db.update_job(a["db_id"], {"state": "FAILED"})
    a = db.get_job(uuid="a")
    with pytest.raises(StateError, match=r"would reset COMPLETED job \d+ \(b\) and 4 more; add --force"):
        rerun(db, a)
    c = db.get_job(uuid="c")
    db.update_job(c["db_id"], {"state": "RUNNING"})
    with pytest.raises(StateError, match=r"job \d+ \(c\) below it is RUNNING; stop it or wait"):
        rerun(db, a, force=True)
    db.update_job(c["db_id"], {"state": "COMPLETED"})
    assert rerun(db, a, force=True)["state"] == "READY"
    jobs = {(j["uuid"], j["index"]): j for j in db.find_jobs()}
    assert set(jobs) == {("a", 1), ("b", 1), ("c", 1), ("z", 1)}  # r, b@2 and x are gone
    assert [jobs[k]["state"] for k in [("a", 1), ("b", 1), ("c", 1), ("z", 1)]] == [
        "READY", "WAITING", "WAITING", "COMPLETED"]
    assert jobs[("c", 1)]["parents"] == ["b"] and [j["uuid"] for j in db.children("r")] == []
    assert jobs[("b", 1)]["created"] is None and jobs[("b", 1)]["run_dir"] is None
    assert (jobs[("a", 1)]["reruns"], jobs[("b", 1)]["reruns"]) == (1, 1)
    assert not [j for j in jobs.values() if j.get("lock_id")]
    assert db.get_flow("f")["state"] == "RUNNING"  # z completed, a ready
    db.close()
