"""Quickstart: run a real jobflow flow end to end on the embedded default.

Creates the project ``quickstart`` if it does not exist (local worker, embedded
SQLite queue, embedded JobStore), submits a flow with a chain and a dynamic job,
runs the runner until nothing is left to do, and prints the jobs with their
states and outputs.

    python examples/quickstart.py
"""

from __future__ import annotations

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from jobflow import Flow  # noqa: E402

from jfr_lib import get_jobstore, submit_flow  # noqa: E402
from jfr_lib.cli import main as jfr  # noqa: E402
from jfr_lib.config import load_project, project_files  # noqa: E402
from jfr_lib.queue_db import open_queue_db  # noqa: E402
from jfr_lib.runner import Runner, RunnerBusy  # noqa: E402

from quickstart_jobs import add, fan_out  # noqa: E402

NAME = "quickstart"


def build_flow() -> Flow:
    first = add(1, 2)  # 3
    second = add(first.output, 4)  # 7
    dynamic = fan_out(second.output, 3)  # replaced by 7+0, 7+1, 7+2 and their sum: 24
    last = add(dynamic.output, 100)  # 124
    return Flow([first, second, dynamic, last], name="quickstart")


def wait_for_flow(project, uuid: str, timeout: float = 600) -> None:
    import time

    deadline = time.monotonic() + timeout
    with open_queue_db(project) as db:
        while time.monotonic() < deadline and db.get_flow(uuid)["state"] not in ("COMPLETED", "FAILED", "STOPPED"):
            time.sleep(0.5)


def main() -> int:
    if NAME not in project_files():
        jfr(["project", "init", NAME])
    project = load_project(NAME)
    flow = build_flow()
    # the worker must import quickstart_jobs: put this folder on its PYTHONPATH
    env = {"export": {"PYTHONPATH": f"{HERE}:$PYTHONPATH"}}
    ids = submit_flow(flow, project=project, exec_config=env)
    print(f"submitted flow {flow.uuid} with jobs {ids}; running...")
    try:
        Runner(project, exit_when_idle=True).run()
    except RunnerBusy as exc:  # a runner started earlier (jfr runner start) does the work
        print(f"{exc}: waiting for it to finish the flow")
        wait_for_flow(project, flow.uuid)

    store = get_jobstore(project)
    with open_queue_db(project) as db:
        jobs = db.find_jobs({"flow_uuid": flow.uuid}, sort=[("db_id", 1)])
        state = db.get_flow(flow.uuid)["state"]
    print(f"\n{'ID':>4}  {'NAME':<13} {'IDX':>3}  {'STATE':<10} OUTPUT")
    for j in jobs:
        output = "-"
        if j["state"] == "COMPLETED":
            output = store.get_output(j["uuid"], which=j["index"])
        print(f"{j['db_id']:>4}  {j['name']:<13} {j['index']:>3}  {j['state']:<10} {output}")
    print(f"\nflow {state}; inspect with: jfr -p {NAME} job list")
    return 0 if state == "COMPLETED" else 1


if __name__ == "__main__":
    sys.exit(main())
