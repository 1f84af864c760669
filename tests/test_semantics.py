"""Differential suite: every flow run by ``jobflow.run_locally`` and by jfr gives the same result.

Each case builds a flow once. A deep copy runs in ``run_locally`` (a MemoryStore
JobStore with the ``data`` additional store, as jfr's default has); the flow itself
is submitted to jfr, and one runner runs every case's flow side by side on the
local worker with the embedded default stores. Then, job by job, we compare:

- which jobs exist: (uuid, index) for the jobs of the submitted flow and the higher
  indexes of replaced jobs; (name, index) for jobs created at run time, whose
  uuids are new in every run;
- each job's state, mapped from what ``run_locally`` did: ran and returned ->
  COMPLETED; raised -> FAILED; never ran because of ``stop_jobflow`` or
  ``stop_children`` -> STOPPED; never ran otherwise (a parent failed) -> WAITING;
- each output (references inside outputs resolved, compared by value) and
  ``stored_data``.

Where jfr deliberately differs, the case says so in one line (``differs``): the
job named there is expected in the state given instead.
"""

from __future__ import annotations

import copy
import json
import time
from datetime import datetime
from unittest import mock

import pytest
import semantics_jobs as sj
from jobflow import Flow, JobOrder

from jfr_lib import submit_flow

pytestmark = pytest.mark.e2e

CASES = {}

#: Why jfr waits where run_locally goes on: its jobs below a detour or a
#: replacement wait for every job of it to complete, as jobflow-remote (detours)
#: and jobflow's FireWorks manager (both) do.
WAITS_FOR_DYNAMIC = "jobs below a detour or replacement wait for all of its jobs to complete"


def case(differs=None):
    """Register a flow factory. ``differs``: job name -> (state in jfr, why in one line)."""

    def register(factory):
        CASES[factory.__name__] = (factory, differs or {})
        return factory

    return register


# --- plain graphs -----------------------------------------------------------------
@case()
def chain():
    a = sj.add(1, 2)
    b = sj.add(a.output, 3)
    return Flow([a, b, sj.mul(b.output, 2)])


@case()
def diamond():
    top = sj.add(1, 1)
    left, right = sj.add(top.output, 10), sj.mul(top.output, 20)
    return Flow([top, left, right, sj.add(left.output, right.output)])


@case()
def fan_out_fan_in():
    jobs = [sj.mul(i, i) for i in range(6)]
    return Flow([*jobs, sj.total([j.output for j in jobs])])


@case()
def nested_flows():
    a = sj.add(1, 1)
    b = sj.mul(a.output, 5)
    inner = Flow([a, b], output=b.output, name="inner")
    return Flow([inner, sj.add(inner.output, 1)], name="outer")


@case()
def deeply_nested():
    a = sj.add(2, 2)
    b = sj.mul(a.output, 3)
    c = sj.add(b.output, 1)
    return Flow([Flow([Flow([a]), b]), Flow([c])])


# --- LINEAR order ---------------------------------------------------------------------
@case()
def linear_after_failure():
    return Flow([sj.fail(), sj.add(1, 1), sj.add(2, 2)], order=JobOrder.LINEAR)


@case()
def linear_after_stop_jobflow():
    return Flow([sj.add(0, 1), sj.stop_jobflow_job(1), sj.add(1, 2), sj.add(3, 4)], order=JobOrder.LINEAR)


@case()
def linear_inside_auto():
    inner = Flow([sj.fail(), sj.add(2, 2)], order=JobOrder.LINEAR)
    return Flow([inner, sj.add(5, 5)])


@case()
def linear_of_flows():
    first = Flow([sj.add(1, 1), sj.add(2, 2)])
    last = Flow([sj.add(3, 3), sj.mul(4, 4)])
    return Flow([first, sj.fail(), last], order=JobOrder.LINEAR)


@case()
def linear_with_detour():
    return Flow([sj.detour(1), sj.add(5, 5)], order=JobOrder.LINEAR)


@case()
def linear_with_replace():
    return Flow([sj.replace_with_flow(1), sj.add(2, 2)], order=JobOrder.LINEAR)


# --- Makers and @flow ---------------------------------------------------------------
@case()
def maker():
    first = sj.AddMaker(offset=5).make(1)
    second = sj.AddMaker(name="second", offset=100).make(first.output)
    return Flow([first, second])


@case()
def flow_maker():
    made = sj.TwoStepMaker(factor=3).make(4)
    return Flow([made, sj.add(made.output, 1)])


@case()
def maker_as_argument():
    used = sj.use_maker(sj.AddMaker(offset=3), 4)
    return Flow([used, sj.add(used.output, 1)])


@case()
def flow_maker_as_argument():
    used = sj.use_maker(sj.TwoStepMaker(factor=5), 2)
    return Flow([used, sj.mul(used.output, 2)])


@case()
def decorated_flow():
    made = sj.decorated(3)
    return Flow([made, sj.add(made.output, 1)])


@case()
def decorated_nested():
    return sj.decorated_outer(1)


# --- replace ----------------------------------------------------------------------
@case()
def replace_with_job():
    r = sj.replace_with_job(1)
    return Flow([r, sj.add(r.output, 1)])


@case()
def replace_with_flow():
    r = sj.replace_with_flow(2)
    return Flow([r, sj.add(r.output, 1)])


@case()
def replace_with_list():
    r = sj.replace_with_list(10)
    return Flow([r, sj.total(r.output)])


@case()
def replace_with_dict():
    r = sj.replace_with_dict(10)
    return Flow([r, sj.flatten(r.output), sj.mul(r.output["high"], 2)])


@case()
def replace_failing():
    r = sj.replace_failing(1)
    return Flow([r, sj.add(r.output, 1)])


@case(differs={"mul": ("WAITING", WAITS_FOR_DYNAMIC)})
def replace_with_failing_side_job():
    r = sj.replace_with_side_job(1)
    return Flow([r, sj.mul(r.output, 2)])


@case()
def countdown():
    c = sj.countdown(3)
    return Flow([c, sj.add(c.output, "!")])


# --- addition and detour --------------------------------------------------------
@case()
def addition():
    a = sj.addition(1)
    return Flow([a, sj.add(a.output, 1)])


@case()
def fibonacci():
    return Flow([sj.fibonacci(1, 1, stop_point=30)])


@case()
def detour():
    d = sj.detour(3)
    return Flow([d, sj.add(d.output, 1)])


@case()
def detour_flow():
    d = sj.detour_flow(3)
    return Flow([d, sj.mul(d.output, 10)])


@case(differs={"mul": ("WAITING", WAITS_FOR_DYNAMIC)})
def detour_failing():
    d = sj.detour_failing(1)
    return Flow([d, sj.mul(d.output, 3)])


# --- stopping ----------------------------------------------------------------------
@case()
def stop_children():
    s = sj.stop_children_job(1)
    c1 = sj.add(s.output, 1)
    return Flow([s, c1, sj.add(c1.output, 1), sj.add(5, 5)])


@case()
def stop_children_with_detour():
    s = sj.stop_children_with_detour(1)
    return Flow([s, sj.mul(s.output, 2)])


@case()
def stop_jobflow():
    s = sj.stop_jobflow_job(1)
    c = sj.add(s.output, 1)
    return Flow([s, c, sj.mul(c.output, 2)])


@case()
def stop_jobflow_in_replacement():
    r = sj.replace_stopping(1)
    return Flow([r, sj.add(r.output, 1)])


@case()
def stored_data():
    s = sj.stored(4)
    return Flow([s, sj.add(s.output, 1)])


# --- missing references -----------------------------------------------------------
@case()
def on_missing_none():
    f = sj.fail()
    return Flow([f, sj.tolerant(f.output)])


@case()
def on_missing_pass():
    f = sj.fail()
    return Flow([f, sj.passing(f.output)])


@case()
def on_missing_error():
    f = sj.fail()
    a = sj.add(f.output, 1)
    return Flow([f, a, sj.add(a.output, 1)])


@case(differs={"tolerant": ("WAITING", "a job waiting behind a failed one has not finished, so its children wait")})
def on_missing_behind_failure():
    f = sj.fail()
    a = sj.add(f.output, 1)
    return Flow([f, a, sj.tolerant(a.output)])


@case()
def on_missing_after_stop_children():
    s = sj.stop_children_job(1)
    return Flow([s, sj.tolerant(s.output)])


# --- references and stores ----------------------------------------------------------
@case()
def resolve_in_job():
    a = sj.add(2, 3)
    p = sj.points(2)
    return Flow([a, p, sj.self_resolving(a.output, 10), sj.self_resolving(p.output["a"][1].b, 2)])


@case()
def attribute_reference():
    p = sj.points(3)
    return Flow([p, sj.add(p.output["a"][0].b, 1), sj.mul(p.output["a"][1].a, p.output["n"])])


@case()
def tuple_index():
    pr = sj.pair(4)
    return Flow([pr, sj.add(pr.output[1], pr.output[0])])


@case()
def references_in_containers():
    a, b = sj.add(1, 1), sj.mul(3, 3)
    return Flow([a, b, sj.total([a.output, b.output, 3]), sj.flatten({"x": a.output, "y": {"z": b.output}})])


@case()
def additional_store_whole_output():
    b = sj.big(1000)
    return Flow([b, sj.total(b.output)])


@case()
def additional_store_by_key():
    w = sj.with_numbers(50)
    return Flow([w, sj.total(w.output["numbers"]), sj.add(w.output["label"], "!")])


@case()
def append_name():
    flow = Flow([sj.replace_with_flow(1), sj.addition(2), sj.detour(3)])
    flow.append_name(" v2")
    return flow


# --- running both ---------------------------------------------------------------------
def plain(value) -> str:
    from monty.json import jsanitize

    return json.dumps(jsanitize(value, strict=True, allow_bson=True, enum_values=True), sort_keys=True)


def run_local(flow, root) -> dict:
    """Run ``flow`` with ``run_locally``: (uuid, index) -> (name, state, output, stored_data)."""
    from jobflow import JobStore, run_locally
    from jobflow.core.job import Job
    from maggma.stores import MemoryStore

    jobs = {(j.uuid, j.index): j.name for j, _ in flow.iterflow()}
    parents = {(j.uuid, j.index): set(p) for j, p in flow.iterflow()}
    started, original = set(), Job.run

    def recording_run(self, *args, **kwargs):
        started.add((self.uuid, self.index))
        return original(self, *args, **kwargs)

    store = JobStore(MemoryStore(), additional_stores={"data": MemoryStore()})
    with mock.patch.object(Job, "run", recording_run):
        responses = run_locally(flow, store=store, log=False, root_dir=root)
    for by_index in responses.values():
        for response in by_index.values():
            for new in (response.replace, response.detour, response.addition):
                for j, p in new.iterflow() if new is not None else ():
                    jobs[(j.uuid, j.index)] = j.name
                    parents[(j.uuid, j.index)] = set(p)
    done = {(u, i) for u, by_index in responses.items() for i in by_index}
    stop_all = any(r.stop_jobflow for by_index in responses.values() for r in by_index.values())
    stopped = {u for u, by_index in responses.items() for r in by_index.values() if r.stop_children}
    changed = True
    while changed:  # run_locally skips the children of skipped children, and so on
        changed = False
        for key in jobs:
            if key not in started and key[0] not in stopped and parents[key] & stopped:
                stopped.add(key[0])
                changed = True
    out = {}
    for key, name in jobs.items():
        if key in done:
            response = responses[key[0]][key[1]]
            out[key] = (name, "COMPLETED", plain(store.get_output(key[0], which=key[1], load=True)),
                        plain(response.stored_data))  # fmt: skip
        elif key in started:
            out[key] = (name, "FAILED", None, None)
        elif stop_all or key[0] in stopped:
            out[key] = (name, "STOPPED", None, None)
        else:
            out[key] = (name, "WAITING", None, None)
    return out


def jfr_result(env, jobs, store) -> dict:
    out = {}
    for job in jobs:
        key = (job["uuid"], job["index"])
        if job["state"] == "COMPLETED":
            output = plain(store.get_output(job["uuid"], which=job["index"], load=True))
            out[key] = (job["name"], "COMPLETED", output, plain(job.get("stored_data")))
        else:
            out[key] = (job["name"], job["state"], None, None)
    return out


def comparable(result: dict, static: set) -> tuple:
    """Jobs of the submitted flow by (uuid, index); jobs made at run time as a sorted list."""
    fixed = {k: v for k, v in result.items() if k[0] in static}
    made = sorted((v[0], k[1], *v[1:]) for k, v in result.items() if k[0] not in static)
    return fixed, made


@pytest.fixture(scope="module")
def runs(module_penv, tmp_path_factory):
    from jfr_lib.jobstore import get_jobstore

    root = tmp_path_factory.mktemp("local")
    built = {name: factory() for name, (factory, _) in CASES.items()}
    local = {name: run_local(copy.deepcopy(flow), root) for name, flow in built.items()}
    for flow in built.values():
        submit_flow(flow, project=module_penv.project)
    start = time.monotonic()
    module_penv.run_until_idle(timeout=400)
    seconds = time.monotonic() - start
    store = get_jobstore(module_penv.project)
    with module_penv.db() as db:
        jobs = db.find_jobs(sort=[("db_id", 1)])
        flows = {f["uuid"]: f for f in db.find_flows()}
    by_flow = {}
    for job in jobs:
        by_flow.setdefault(job["flow_uuid"], []).append(job)
    theirs = {name: jfr_result(module_penv, by_flow[flow.uuid], store) for name, flow in built.items()}
    return {"built": built, "local": local, "jfr": theirs, "jobs": by_flow, "flows": flows,
            "seconds": seconds, "n_jobs": len(jobs)}  # fmt: skip


@pytest.mark.parametrize("name", list(CASES))
def test_same_result_as_run_locally(runs, name):
    flow = runs["built"][name]
    differs = CASES[name][1]
    expected = {}
    for key, row in runs["local"][name].items():
        if row[0] in differs:
            row = (row[0], differs[row[0]][0], None, None)
        expected[key] = row
    static = {j.uuid for j, _ in flow.iterflow()}
    got_fixed, got_made = comparable(runs["jfr"][name], static)
    want_fixed, want_made = comparable(expected, static)
    errors = {j["name"]: j.get("error") for j in runs["jobs"][flow.uuid] if j.get("error")}
    assert got_fixed == want_fixed, errors
    assert got_made == want_made, errors


def test_the_suite_is_broad_and_quick(runs):
    assert len(CASES) >= 30
    print(f"\n{len(CASES)} flows, {runs['n_jobs']} jobs, jfr runner {runs['seconds']:.1f} s")
    assert not [j["db_id"] for jobs in runs["jobs"].values() for j in jobs if j.get("lock_id")]


def _times(job) -> tuple:
    return datetime.fromisoformat(job["start_time"]), datetime.fromisoformat(job["end_time"])


@pytest.mark.parametrize("name", ["linear_with_detour", "linear_with_replace"])
def test_linear_next_job_starts_after_the_dynamic_jobs(runs, name):
    """In a LINEAR flow the next job starts only once what the previous job created has ended."""
    flow = runs["built"][name]
    jobs = runs["jobs"][flow.uuid]
    nxt = next(j for j in jobs if j["uuid"] == flow.jobs[-1].uuid)
    made = [j for j in jobs if j["uuid"] != nxt["uuid"] and (j.get("created_by") or j["index"] > 1)]
    assert made and all(j["state"] == "COMPLETED" for j in jobs)
    assert all(_times(nxt)[0] >= _times(j)[1] for j in made)


@pytest.mark.parametrize(("name", "state"), [("linear_after_failure", "FAILED"), ("stop_jobflow", "STOPPED"),
                                             ("linear_after_stop_jobflow", "STOPPED"), ("fibonacci", "COMPLETED"),
                                             ("detour_failing", "FAILED"), ("replace_failing", "FAILED")])  # fmt: skip
def test_flow_state(runs, name, state):
    assert runs["flows"][runs["built"][name].uuid]["state"] == state
