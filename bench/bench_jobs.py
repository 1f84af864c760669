"""Job functions of the benchmarks.

They live in a module of their own because the worker imports them by name;
``common.make_project`` puts this folder on the jobs' PYTHONPATH.
"""

import time

from jobflow import job


@job
def sleep_add(a, b, seconds=0.2):
    """Add two numbers after sleeping a while: a short job that takes some time."""
    time.sleep(seconds)
    return a + b


@job
def collect(values):
    """How many values the job received (the runner resolved each reference beforehand)."""
    return len(values)


@job
def big(megabytes):
    """A string of ``megabytes`` MiB: a large output that goes through the runner."""
    return "x" * (megabytes * 1024 * 1024)


@job
def length(value):
    """The length of a value: reads a large output."""
    return len(value)
