"""Job functions of the quickstart. They live in a module of their own because
the worker imports them by name to run each job."""

from jobflow import Flow, Response, job


@job
def add(a, b):
    """Add two numbers."""
    return a + b


@job
def total(values):
    """Sum a list of numbers."""
    return sum(values)


@job
def fan_out(value, n):
    """A dynamic job: replaced at run time by n additions and a job that sums them."""
    parts = [add(value, i) for i in range(n)]
    collect = total([p.output for p in parts])
    return Response(replace=Flow([*parts, collect], output=collect.output))
