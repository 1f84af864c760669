"""Runs one job on the worker: ``python -m jfr_lib.worker RUN_DIR``.

Reads ``jfr_in.json`` (the job with its references already resolved), runs it
against a store held in memory, and always writes ``jfr_out.json``: the times,
then either the response (what the job asks of its flow) or the error with its
traceback. The outputs themselves go to ``jfr_store.json``. The worker never
touches the queue database, and imports nothing from the command line.

A marker file created with ``O_EXCL`` makes a second start of the same run
folder refuse to run the job again, so a job submitted twice runs once.
"""

from __future__ import annotations

import json
import os
import socket
import sys
import time
import traceback
from datetime import datetime, timezone

from jfr_lib.rundir import IN_FILE, OUT_FILE, STARTED_FILE, STORE_FILE, StoreEncoder, read_started, write_atomic  # noqa: F401

#: Set by the warm server in the process it forked for a job (see :mod:`jfr_lib.warm`).
STARTED_WARM = False


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


def _process_start() -> str:
    """This process's start in clock ticks since boot ("-" without /proc): tells its pid from a reuse."""
    try:
        with open("/proc/self/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return "-"


def _graph(flow) -> dict:
    """The jobs a response adds, as data the runner can store without importing them."""
    from monty.json import MontyEncoder

    jobs = []
    for job, parents in flow.iterflow():  # the graph's parents include a LINEAR flow's order
        job_dict = json.loads(json.dumps(job.as_dict(), cls=MontyEncoder))
        jobs.append({"job": job_dict, "parents": list(dict.fromkeys([*parents, *job.input_uuids]))})
    uuids = {j["job"]["uuid"] for j in jobs}
    used = {p for j in jobs for p in j["parents"] if p in uuids}
    return {"jobs": jobs, "leaves": sorted(uuids - used)}


def describe_response(response) -> dict:
    """The parts of a jobflow ``Response`` that change the flow, as JSON data."""
    from jobflow.core.flow import get_flow
    from monty.json import jsanitize

    out = {
        "stop_children": bool(response.stop_children),
        "stop_jobflow": bool(response.stop_jobflow),
        "stored_data": jsanitize(response.stored_data, strict=True, enum_values=True)
        if response.stored_data is not None
        else None,
    }
    for kind in ("replace", "addition", "detour"):
        new = getattr(response, kind)
        out[kind] = _graph(get_flow(new)) if new is not None else None
    return out


class Terminated(Exception):
    """The queue asked the job to stop (SIGTERM: time limit, cancel)."""


def _on_term(signum, frame):
    raise Terminated(f"terminated by signal {signum} (time limit, cancel or shutdown)")


def run(run_dir: str) -> int:
    """Run the job of ``run_dir``; returns the process exit code."""
    import signal

    signal.signal(signal.SIGTERM, _on_term)
    os.chdir(run_dir)
    try:
        fd = os.open(STARTED_FILE, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
    except FileExistsError:
        print(f"jfr worker: {run_dir} was already started; not running it twice", file=sys.stderr)
        return 3
    os.write(fd, f"{socket.gethostname()} {os.getpid()} {_now()} {_process_start()}\n".encode())
    os.close(fd)
    result = {"start_time": _now(), "host": socket.gethostname(), "pid": os.getpid(),
              "started": "warm" if STARTED_WARM else "cold"}
    if os.environ.get("JFR_PILOT"):  # run by a pilot of a batch worker: which one
        result["pilot"] = os.environ["JFR_PILOT"]
    t0 = time.perf_counter()
    try:
        with open(IN_FILE) as f:
            data = json.load(f)
        from jobflow import JobStore
        from maggma.stores import MemoryStore
        from monty.json import MontyDecoder

        job = MontyDecoder().process_decoded(data["job"])
        if data.get("resolved"):
            job.config.resolve_references = False
        names = data.get("store_names") or []
        store = JobStore(MemoryStore(), additional_stores={n: MemoryStore() for n in names})
        store.connect()
        # outputs the job may resolve itself (resolve_references=False with expose_store)
        seeded = data.get("store_docs") or []
        if seeded:
            store.docs_store.update(seeded, key=["uuid", "index"])
        seen = {(d["uuid"], d["index"]) for d in seeded}
        response = job.run(store=store, job_dir=os.getcwd())
        dump = {
            "docs": [_strip(d) for d in store.docs_store.query() if (d["uuid"], d["index"]) not in seen],
            "additional": {n: [_strip(d) for d in s.query()] for n, s in store.additional_stores.items()},
        }
        write_atomic(STORE_FILE, json.dumps(dump, cls=StoreEncoder))
        result["response"] = describe_response(response)
        result["state"] = "COMPLETED"
    except BaseException as exc:  # the output file must say why, whatever happened
        result["state"] = "FAILED"
        result["error"] = f"{type(exc).__name__}: {exc}"
        result["traceback"] = traceback.format_exc()
    result["end_time"] = _now()
    result["run_seconds"] = round(time.perf_counter() - t0, 3)
    try:
        write_atomic(OUT_FILE, json.dumps(result, cls=StoreEncoder))
    except (TypeError, ValueError) as exc:
        fallback = {k: result[k] for k in ("start_time", "end_time", "host", "pid")}
        fallback.update(state="FAILED", error=f"the response cannot be written as JSON: {exc}",
                        traceback=traceback.format_exc())  # fmt: skip
        write_atomic(OUT_FILE, json.dumps(fallback))
    return 0 if result.get("state") == "COMPLETED" else 1


def _strip(doc: dict) -> dict:
    doc.pop("_id", None)
    return doc


USAGE = "usage: python -m jfr_lib.worker RUN_DIR [--notify FIFO] [--warm SOCKET]"


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    options = {"--notify": None, "--warm": None}
    while len(argv) >= 3 and argv[-2] in options:
        value = argv.pop()
        options[argv.pop()] = value
    if len(argv) != 1:
        print(USAGE, file=sys.stderr)
        return 2
    if options["--warm"]:  # scripts written by a runner before warm_client.command existed
        from jfr_lib.warm_client import hand_over

        rest = argv + (["--notify", options["--notify"]] if options["--notify"] else [])
        code = hand_over(options["--warm"], rest, path=sys.path)
        if code is not None:
            return code
    code = run(argv[0])
    if options["--notify"]:
        _notify(options["--notify"])
    return code


def _notify(path: str) -> None:
    """Tell a runner on this machine that the job is done (never blocks)."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_NONBLOCK)
    except OSError:
        return
    try:
        os.write(fd, b"!")
    except OSError:
        pass
    finally:
        os.close(fd)


if __name__ == "__main__":
    sys.exit(main())
