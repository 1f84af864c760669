"""One contract suite for both queue database backends (SQLite file; MongoDB via mongomock),
and a real multi-process claim test on the SQLite file."""

from __future__ import annotations

import os
import time

import pytest

from jfr_lib.queue_db.base import SCHEMA_VERSION


@pytest.fixture(params=["sqlite", "mongo"])
def db(request, tmp_path):
    if request.param == "sqlite":
        from jfr_lib.queue_db.sqlite import SQLiteQueueDB

        d = SQLiteQueueDB(tmp_path / "queue.db")
    else:
        mongomock = pytest.importorskip("mongomock")
        from jfr_lib.queue_db.mongo import MongoQueueDB

        d = MongoQueueDB(database="t", client=mongomock.MongoClient())
    yield d
    d.close()


def job(uuid, state="READY", parents=(), flow="f1", index=1, priority=0, worker="w"):
    return {"uuid": uuid, "index": index, "name": f"job-{uuid}", "state": state,
            "parents": list(parents), "flow_uuid": flow, "priority": priority,
            "worker": worker, "job": {"payload": uuid}}  # fmt: skip


def test_schema_version_is_recorded(db):
    assert db.schema_version() == SCHEMA_VERSION


def test_insert_and_read_back(db):
    ids = db.insert_flow({"uuid": "f1", "name": "flow", "state": "READY"},
                         [job("a"), job("b", "WAITING", ["a"])])  # fmt: skip
    assert ids == [1, 2]
    a = db.get_job(db_id=1)
    assert a["uuid"] == "a" and a["job"] == {"payload": "a"} and a["state"] == "READY"
    assert db.get_job(uuid="b")["parents"] == ["a"]
    assert db.get_flow("f1")["name"] == "flow"
    assert db.count_jobs({"state": ["READY", "WAITING"]}) == 2
    assert db.count_states() == {"READY": 1, "WAITING": 1}


def test_db_ids_keep_growing_across_flows(db):
    db.insert_flow({"uuid": "f1", "name": "x", "state": "READY"}, [job("a")])
    ids = db.insert_flow({"uuid": "f2", "name": "y", "state": "READY"}, [job("b", flow="f2"), job("c", flow="f2")])
    assert ids == [2, 3]
    assert [f["db_id"] for f in db.find_flows(sort=[("db_id", 1)])] == [1, 2]


def test_duplicate_flow_or_job_is_refused_and_nothing_written(db):
    db.insert_flow({"uuid": "f1", "name": "x", "state": "READY"}, [job("a")])
    with pytest.raises(KeyError):
        db.insert_flow({"uuid": "f1", "name": "x", "state": "READY"}, [job("z")])
    with pytest.raises(KeyError):
        db.insert_flow({"uuid": "f2", "name": "y", "state": "READY"}, [job("q", flow="f2"), job("a", flow="f2")])
    assert db.count_jobs() == 1
    assert db.get_flow("f2") is None


def test_claim_is_exclusive_and_ordered_by_priority(db):
    db.insert_flow({"uuid": "f1", "name": "x", "state": "READY"},
                   [job("low", priority=1), job("high", priority=9), job("mid", priority=5)])  # fmt: skip
    first = db.claim_job({"state": "READY"}, "lock-1")
    second = db.claim_job({"state": "READY"}, "lock-2")
    assert (first["uuid"], second["uuid"]) == ("high", "mid")
    assert first["lock_id"] == "lock-1"
    assert db.count_jobs({"locked": True}) == 2
    third = db.claim_job({"state": "READY"}, "lock-3")
    assert third["uuid"] == "low"
    assert db.claim_job({"state": "READY"}, "lock-4") is None


def test_update_is_compare_and_set(db):
    db.insert_flow({"uuid": "f1", "name": "x", "state": "READY"}, [job("a")])
    claimed = db.claim_job({"state": "READY"}, "L")
    assert not db.update_job(claimed["db_id"], {"state": "CHECKED_OUT"}, state="READY", lock_id="other")
    assert not db.update_job(claimed["db_id"], {"state": "CHECKED_OUT"}, state="WAITING", lock_id="L")
    assert db.update_job(claimed["db_id"], {"state": "CHECKED_OUT", "run_dir": "/x"}, state="READY", lock_id="L")
    got = db.get_job(db_id=claimed["db_id"])
    assert got["state"] == "CHECKED_OUT" and got["run_dir"] == "/x"
    assert got["updated_on"] >= claimed["updated_on"]
    assert db.release_job(claimed["db_id"], "L")
    assert db.get_job(db_id=claimed["db_id"])["lock_id"] is None


def test_set_state_records_previous_state(db):
    db.insert_flow({"uuid": "f1", "name": "x", "state": "READY"}, [job("a")])
    a = db.get_job(db_id=1)
    assert db.set_state(a, "FAILED", error="boom")
    got = db.get_job(db_id=1)
    assert (got["state"], got["previous_state"], got["error"]) == ("FAILED", "READY", "boom")
    assert not db.set_state(dict(a, state="READY"), "COMPLETED")  # stale view loses


def test_retry_due_hides_jobs_until_their_time(db):
    db.insert_flow({"uuid": "f1", "name": "x", "state": "READY"}, [job("a")])
    db.update_job(1, {"retry_time": 1000.0})
    assert db.claim_job({"state": "READY", "retry_due": 999.0}, "L") is None
    assert db.claim_job({"state": "READY", "retry_due": 1001.0}, "L")["uuid"] == "a"


def test_children_latest_states_and_parents(db):
    db.insert_flow({"uuid": "f1", "name": "x", "state": "READY"},
                   [job("a"), job("b", "WAITING", ["a"]), job("c", "WAITING", ["a", "b"])])  # fmt: skip
    assert [c["uuid"] for c in db.children("a")] == ["b", "c"]
    db.insert_jobs([job("a", "WAITING", index=2)])
    db.insert_jobs([job("a", "WAITING", index=2)])  # repeated insert is ignored
    assert db.count_jobs({"uuid": "a"}) == 2
    assert db.latest_states(["a", "b", "zz"]) == {"a": "WAITING", "b": "WAITING"}
    db.add_parents([2], ["x", "a"])
    assert db.get_job(uuid="b")["parents"] == ["a", "x"]
    assert [c["uuid"] for c in db.children("x")] == ["b"]


def test_flow_state_is_derived_from_jobs(db):
    db.insert_flow({"uuid": "f1", "name": "x", "state": "READY"}, [job("a"), job("b", "WAITING", ["a"])])
    assert db.refresh_flow_state("f1") == "READY"
    db.update_job(1, {"state": "RUNNING"})
    assert db.refresh_flow_state("f1") == "RUNNING"
    db.update_job(1, {"state": "FAILED"})
    assert db.refresh_flow_state("f1") == "FAILED"
    db.update_job(1, {"state": "COMPLETED"})
    db.update_job(2, {"state": "COMPLETED"})
    assert db.refresh_flow_state("f1") == "COMPLETED"
    assert db.get_flow("f1")["state"] == "COMPLETED"


def test_flow_state_reads_the_states_present_only(db):
    """Many jobs in a few states: the state comes out right from the (flow, state) index."""
    states = ["COMPLETED"] * 50 + ["REMOTE_ERROR", "WAITING"] * 5
    db.insert_flow({"uuid": "f1", "name": "x", "state": "READY"}, [job(f"j{i}", s) for i, s in enumerate(states)])
    db.insert_flow({"uuid": "f2", "name": "y", "state": "READY"}, [job("other", "FAILED", flow="f2")])
    assert db.refresh_flow_state("f1") == "RUNNING"  # REMOTE_ERROR is not a failure of the flow
    db.update_job(3, {"state": "FAILED"})
    assert db.refresh_flow_state("f1") == "FAILED"
    assert db.refresh_flow_state("f2") == "FAILED" and db.refresh_flow_state("nothing") == "COMPLETED"


def test_count_by_groups_in_the_database(db):
    db.insert_flow({"uuid": "f1", "name": "x", "state": "READY"},
                   [job("a", worker="w1"), job("b", "COMPLETED", worker="w1"), job("c", "COMPLETED", worker="w2"),
                    job("d", "FAILED", worker="w2")])  # fmt: skip
    assert db.count_by(["worker", "state"]) == {("w1", "READY"): 1, ("w1", "COMPLETED"): 1, ("w2", "COMPLETED"): 1,
                                                ("w2", "FAILED"): 1}  # fmt: skip
    today = db.get_job(db_id=1)["updated_on"][:10]
    assert db.count_by(["updated_day", "state"], {"state": ["COMPLETED", "FAILED"]}) == {
        (today, "COMPLETED"): 2, (today, "FAILED"): 1}
    assert db.count_by(["state"], {"worker": "w1", "updated_since": "2999-01-01"}) == {}


def test_count_flows_and_newest_first(db):
    for i in range(5):
        db.insert_flow({"uuid": f"f{i}", "name": f"run-{i % 2}", "state": "READY"}, [job(f"j{i}", flow=f"f{i}")])
    assert db.count_flows() == 5 and db.count_flows({"name_glob": "run-1"}) == 2
    assert [f["uuid"] for f in db.find_flows(sort=[("db_id", -1)], limit=2)] == ["f4", "f3"]


def test_release_sweep_looks_only_at_recently_finished_jobs(db):
    from datetime import datetime, timedelta, timezone

    from jfr_lib.dependencies import SWEEP_KEY, sweep_waiting

    def stamp(hours: float) -> str:
        return (datetime.now(timezone.utc) + timedelta(hours=hours)).isoformat(timespec="milliseconds")

    db.insert_flow({"uuid": "f1", "name": "x", "state": "READY"},
                   [job("p1", "COMPLETED"), job("c1", "WAITING", ["p1"])])  # fmt: skip
    assert sweep_waiting(db) == [2]  # the first sweep of a database looks at every WAITING job
    db.insert_flow({"uuid": "f2", "name": "y", "state": "READY"},
                   [job("p2", "COMPLETED", flow="f2"), job("c2", "WAITING", ["p2"], flow="f2")])  # fmt: skip
    db.set_meta(SWEEP_KEY, stamp(2))  # as if p2 had finished well before the last sweep
    assert sweep_waiting(db) == [] and db.get_job(db_id=4)["state"] == "WAITING"  # not looked at
    db.set_meta(SWEEP_KEY, stamp(-0.1))
    assert sweep_waiting(db) == [4]  # p2 finished since the last sweep: its child is released
    assert db.get_meta(SWEEP_KEY) > stamp(-0.05)


def test_waiting_children_and_parents_done(db):
    tolerant = {**job("t", "WAITING", ["a", "b", "external"]), "allow_failed_parents": True}
    db.insert_flow({"uuid": "f1", "name": "x", "state": "READY"},
                   [job("a", "COMPLETED"), job("b", "FAILED"), job("c", "WAITING", ["a", "b"]), tolerant,
                    job("d", "READY", ["a"])])  # fmt: skip
    assert db.waiting_children("a") == [{"db_id": 3, "allow_failed_parents": False},
                                        {"db_id": 4, "allow_failed_parents": True}]  # d is READY: not listed
    assert not db.parents_done(3, ["COMPLETED"])  # b failed
    assert db.parents_done(4, ["COMPLETED", "FAILED"])  # an unknown uuid is an external, done reference
    db.insert_jobs([job("b", "COMPLETED", index=2)])  # b replaced: its highest index counts
    assert db.parents_done(3, ["COMPLETED"])
    many = [job(f"p{i}", "COMPLETED", flow="f2") for i in range(450)] + [job("p450", "RUNNING", flow="f2")]
    db.insert_flow({"uuid": "f2", "name": "y", "state": "READY"},
                   [*many, job("gather", "WAITING", [j["uuid"] for j in many], flow="f2")])  # fmt: skip
    gather = db.get_job(uuid="gather")["db_id"]
    assert not db.parents_done(gather, ["COMPLETED"])
    db.update_job(db.get_job(uuid="p450")["db_id"], {"state": "COMPLETED"})
    assert db.parents_done(gather, ["COMPLETED"])


def test_update_jobs_is_a_compare_and_set_for_each(db):
    db.insert_flow({"uuid": "f1", "name": "x", "state": "READY"},
                   [job("a", "WAITING"), job("b", "READY"), job("c", "WAITING")])  # fmt: skip
    assert db.update_jobs([1, 2, 3], {"state": "READY"}, state="WAITING") == [1, 3]
    assert [j["state"] for j in db.find_jobs(sort=[("db_id", 1)])] == ["READY", "READY", "READY"]


def test_name_glob_and_time_window(db):
    db.insert_flow({"uuid": "f1", "name": "x", "state": "READY"}, [job("relax-1"), job("relax-2"), job("static")])
    assert [j["uuid"] for j in db.find_jobs({"name_glob": "job-relax-*"}, sort=[("db_id", 1)])] == [
        "relax-1", "relax-2"]
    time.sleep(0.01)  # updated_on has millisecond resolution
    db.update_job(3, {"priority": 1})
    later = db.get_job(db_id=3)["updated_on"]
    assert [j["db_id"] for j in db.find_jobs({"updated_since": later})] == [3]
    assert sorted(j["db_id"] for j in db.find_jobs({"updated_until": later})) == [1, 2]


def test_delete_jobs_and_flow(db):
    db.insert_flow({"uuid": "f1", "name": "x", "state": "READY"}, [job("a"), job("b", "WAITING", ["a"])])
    assert db.delete_jobs([2]) == 1
    assert db.children("a") == [] and db.count_jobs() == 1
    db.delete_jobs([1])
    db.delete_flow("f1")
    assert db.get_flow("f1") is None and db.count_jobs() == 0


def test_meta_round_trip(db):
    db.set_meta("lease", {"pid": 1, "host": "h"})
    assert db.get_meta("lease") == {"pid": 1, "host": "h"}
    assert db.get_meta("missing", 7) == 7


def test_swap_meta_is_compare_and_set_on_the_token(db):
    assert db.swap_meta("lease", None, {"token": "a", "n": 1})  # absent: taken
    assert not db.swap_meta("lease", None, {"token": "b"})  # held by a
    assert not db.swap_meta("lease", "b", {"token": "b"})
    assert db.swap_meta("lease", "a", {"token": "a", "n": 2})  # the holder updates it
    assert db.get_meta("lease") == {"token": "a", "n": 2}
    assert db.swap_meta("lease", "a", {"token": None})  # released
    assert db.swap_meta("lease", None, {"token": "c"})  # taken again
    assert db.get_meta("lease")["token"] == "c"


def test_unknown_query_field_is_refused(db):
    with pytest.raises(ValueError):
        db.find_jobs({"no_such_field": 1})


def _claimer(path, out_path, ready, gate):
    """Child process: say it is ready; once the gate opens, claim until nothing is left, record every claim."""
    from jfr_lib.queue_db.sqlite import SQLiteQueueDB

    d = SQLiteQueueDB(path)
    os.write(ready, b"!")
    os.read(gate, 1)  # returns when the parent closes the other end: all claimers start together
    got = []
    while (j := d.claim_job({"state": "READY"}, f"pid-{os.getpid()}")) is not None:
        if d.update_job(j["db_id"], {"state": "CHECKED_OUT"}, state="READY", lock_id=j["lock_id"]):
            got.append(j["db_id"])
        time.sleep(0.0005)  # a little work per job, as an action does: the others get their turn
    d.close()
    with open(out_path, "w") as f:
        f.write("\n".join(map(str, got)))


def test_four_processes_claim_each_job_exactly_once(tmp_path):
    from jfr_lib.queue_db.sqlite import SQLiteQueueDB

    path = tmp_path / "queue.db"
    d = SQLiteQueueDB(path)
    d.insert_flow({"uuid": "f", "name": "big", "state": "READY"}, [job(f"j{i}", flow="f") for i in range(1000)])
    d.close()
    import select

    pids = []
    gate, opener = os.pipe()
    ready_r, ready_w = os.pipe()
    for n in range(4):
        pid = os.fork()
        if pid == 0:
            code = 0
            try:
                os.close(opener)
                _claimer(path, tmp_path / f"claims{n}", ready_w, gate)
            except BaseException:
                code = 1
            os._exit(code)
        pids.append(pid)
    os.close(gate)
    seen, deadline = 0, time.monotonic() + 60
    while seen < 4 and time.monotonic() < deadline:
        if select.select([ready_r], [], [], 1)[0]:
            seen += len(os.read(ready_r, 4))
    assert seen == 4, "the claimers did not start"
    os.close(opener)  # open the gate
    for pid in pids:
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
    claims = []
    per_process = []
    for n in range(4):
        text = (tmp_path / f"claims{n}").read_text()
        ids = [int(x) for x in text.split()] if text else []
        per_process.append(len(ids))
        claims += ids
    assert len(claims) == len(set(claims)), "a job was claimed twice"
    assert sorted(claims) == list(range(1, 1001)), "a job was lost"
    assert sum(1 for n in per_process if n > 0) >= 2, f"no concurrency happened: {per_process}"
    d = SQLiteQueueDB(path)
    assert d.count_jobs({"state": "CHECKED_OUT"}) == 1000


def test_stop_request_survives_a_concurrent_heartbeat(db):
    """A stop request written while the runner is between reading and rewriting
    its lease must still reach the runner (it used to be overwritten)."""
    from jfr_lib import lease

    mine = lease.new_lease(5, 15)
    assert lease.acquire(db, mine)[0]
    real_get = db.get_meta

    def get_meta_then_stop(key, default=None):
        value = real_get(key, default)
        if key == lease.KEY and not getattr(db, "_stopped", False):
            db._stopped = True
            lease.request_stop(db)  # lands after the heartbeat read the lease
        return value

    db.get_meta = get_meta_then_stop
    assert lease.heartbeat(db, mine, []) == "stop"
    db.get_meta = real_get
    assert lease.read(db)["stop_requested"] is True
    assert lease.heartbeat(db, mine, []) == "stop"  # stays requested until the runner leaves
    assert lease.release(db, mine["token"]) and lease.read(db) is None
    successor = lease.new_lease(5, 15)
    assert lease.acquire(db, successor)[0]
    assert lease.heartbeat(db, successor, []) == "ok"  # a request for the old runner is not for the next


def test_an_older_database_gets_what_it_lacks(tmp_path):
    import sqlite3

    from jfr_lib.queue_db.sqlite import _FLOW_STATES, SQLiteQueueDB

    path = tmp_path / "queue.db"
    d = SQLiteQueueDB(path)
    d.insert_flow({"uuid": "f", "name": "x", "state": "READY"},
                  [job("a"), {**job("b", "WAITING", ["a"]), "allow_failed_parents": True}])  # fmt: skip
    d.close()
    conn = sqlite3.connect(path)  # as an older jfr left it
    conn.executescript("DROP INDEX jobs_flow_state; DROP INDEX jobs_state_updated; "
                       "CREATE INDEX jobs_flow ON jobs (flow_uuid); ALTER TABLE job_parents DROP COLUMN tolerant;")
    conn.close()
    d = SQLiteQueueDB(path)
    assert d.waiting_children("a") == [{"db_id": 2, "allow_failed_parents": True}]  # filled from the documents
    names = {r[0] for r in d.conn.execute("SELECT name FROM sqlite_master WHERE type = 'index'")}
    assert {"jobs_flow_state", "jobs_state_updated"} <= names and "jobs_flow" not in names
    plan = " ".join(r[3] for r in d.conn.execute("EXPLAIN QUERY PLAN " + _FLOW_STATES, ("f",)))
    assert "COVERING INDEX jobs_flow_state" in plan and "SCAN jobs" not in plan
    d.close()
