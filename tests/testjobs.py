"""Job functions used by the end-to-end tests (imported by the worker too)."""

from __future__ import annotations

import os
from typing import Any

from jobflow import Flow, JobConfig, OnMissing, Response, job
from pydantic import BaseModel, ConfigDict


@job
def add(a, b):
    return a + b


@job
def add_many(*values):
    return sum(values)


@job
def fail(message="this job always fails"):
    raise RuntimeError(message)


@job
def apply(func, value):
    """Call a function passed as an argument."""
    return func(value)


@job
def read_env(name):
    return os.environ.get(name)


@job(data=True)
def big_output(n):
    return list(range(n))


@job
def length(values):
    return len(values)


@job
def replace_with_add(a, b):
    """Replaced by a flow of two additions; its own output comes from the replacement."""
    first = add(a, b)
    second = add(first.output, 100)
    return Response(replace=Flow([first, second], output=second.output))


@job
def add_more(a):
    """Adds a new job to the flow; the current job's children do not wait for it."""
    extra = add(a, 1000)
    return Response(output=a, addition=extra)


@job
def detour_add(a):
    """The current job's children wait for the detour."""
    extra = add(a, 7)
    return Response(output=a, detour=extra)


@job
def stop_children_job(a):
    return Response(output=a, stop_children=True)


@job
def stop_flow_job(a):
    return Response(output=a, stop_jobflow=True)


@job
def store_data(a):
    return Response(output=a, stored_data={"note": "kept", "value": a})


@job
def append_line(path, text, after=None, seconds=0):
    """Record that this job ran (tests count the lines); ``after`` links it to a parent;
    then take ``seconds`` more, as real work would."""
    import time

    with open(path, "a") as f:
        f.write(f"{text}\n")
    time.sleep(seconds)
    return text


@job
def sleep_add(seconds, a=0, b=0):
    import time

    time.sleep(seconds)
    return a + b


@job
def env_vars(*names):
    """The values of some environment variables where the job runs."""
    return {n: os.environ.get(n) for n in names}


@job
def random_draws():
    """Draws from the global generators (two warm jobs must not draw the same)."""
    import random

    import numpy

    return {"random": random.random(), "numpy": float(numpy.random.random()), "pid": os.getpid()}


@job
def spawn_square(x):
    """Squares ``x`` in a process started with multiprocessing's spawn method."""
    import multiprocessing

    with multiprocessing.get_context("spawn").Pool(1) as pool:
        return pool.apply(pow, (x, 2))


@job
def read_text(path):
    """The content of a file: its value changes when a test rewrites the file."""
    with open(path) as f:
        return f.read().strip()


@job
def tag(value, suffix):
    return f"{value}{suffix}"


@job
def expand(value):
    """Replaced by a job tagging ``value``, with another job added beside it."""
    return Response(replace=tag(value, "-r"), addition=tag(value, "-a"))


@job
def flaky(path):
    """Fails until ``path`` exists."""
    if not os.path.exists(path):
        raise RuntimeError(f"{path} is missing")
    return "ok"


@job(config=JobConfig(on_missing_references=OnMissing.NONE))
def tolerant(value):
    """Runs even when its parent failed or was stopped."""
    return "missing" if value is None else value


class JfremoteExecutionConfig(BaseModel):
    """The fields of jobflow-remote's pydantic ``ExecutionConfig``, as its users build it."""

    model_config = ConfigDict(extra="forbid")
    modules: list[str] | None = None
    export: dict[str, Any] | None = None
    pre_run: str | None = None
    post_run: str | None = None


@job
def python_path():
    """The job's sys.path and where it runs."""
    import sys

    return {"path": list(sys.path), "cwd": os.getcwd()}


@job
def big_text(megabytes):
    """An output of ``megabytes`` MB, stored in the docs store."""
    return "x" * (megabytes * 1024 * 1024)


@job
def chaos_step(path, tag, value, seconds=0.0, after=None):
    """Records that it ran (a line with its tag), works a little, returns ``value``.
    ``after`` ties it to a parent without using its output."""
    import time

    with open(path, "a") as f:
        f.write(f"{tag}\n")
    time.sleep(seconds)
    return value


@job
def chaos_adder(path, tag, n):
    """Records that it ran, then adds ``n`` chaos steps to the flow."""
    with open(path, "a") as f:
        f.write(f"{tag}\n")
    added = []
    for i in range(n):
        step = chaos_step(path, f"{tag}-{i}", 1000 + i, 0.3)
        step.name = f"{tag}-{i}"
        added.append(step)
    return Response(output=n, addition=Flow(added))
