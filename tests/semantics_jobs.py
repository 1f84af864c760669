"""Job functions, Makers and output classes of the differential suite (``test_semantics.py``).

They live in a module of their own so that the worker imports them by name, as a
user's package would be imported.
"""

from __future__ import annotations

from dataclasses import dataclass

from jobflow import CURRENT_JOB, Flow, JobConfig, Maker, OnMissing, Response, flow, job
from monty.json import MSONable


@job
def add(a, b):
    return a + b


@job
def mul(a, b):
    return a * b


@job
def fail(message="this job fails"):
    raise RuntimeError(message)


@job
def total(items):
    """Sum of a list whose items may be references."""
    return sum(items)


@job
def flatten(mapping):
    """Sum of the numbers in a nested dict whose values may be references."""
    out = 0
    for value in mapping.values():
        out += flatten.original(value) if isinstance(value, dict) else value
    return out


@job
def pair(a):
    return a, a * 10


@dataclass
class Point(MSONable):
    """An output object: references read its attributes (``.output["a"][0].b``)."""

    a: int
    b: int


@job
def points(n):
    return {"a": [Point(n, n + 1), Point(2 * n, 2 * n + 1)], "n": n}


@job(config=JobConfig(on_missing_references=OnMissing.NONE))
def tolerant(x):
    """Runs even when its input is missing (its parent failed or was stopped)."""
    return {"missing": x is None, "value": x}


@job(config=JobConfig(on_missing_references=OnMissing.PASS))
def passing(x):
    """Sees the reference itself when its input is missing."""
    return type(x).__name__


@job(config=JobConfig(resolve_references=False, expose_store=True))
def self_resolving(ref, factor):
    """Resolves its own input against the store it is given."""
    return ref.resolve(CURRENT_JOB.store) * factor


@job(data=True)
def big(n):
    return list(range(n))


@job(data="numbers")
def with_numbers(n):
    return {"numbers": list(range(n)), "label": f"{n} numbers"}


@job
def replace_with_job(a):
    return Response(replace=add(a, 100))


@job
def replace_with_flow(a):
    first = add(a, 1)
    second = mul(first.output, 3)
    return Response(replace=Flow([first, second], output=second.output))


@job
def replace_with_list(a):
    return [add(a, i) for i in range(3)]


@job
def replace_with_dict(a):
    return {"low": add(a, -1), "high": add(a, 1)}


@job
def replace_failing(a):
    return Response(replace=fail(f"replacement of {a} fails"))


@job
def replace_with_side_job(a):
    """A replacement whose output comes from one job; another job of it fails."""
    main = add(a, 5)
    side = fail("side job fails")
    return Response(replace=Flow([main, side], output=main.output))


@job
def replace_stopping(a):
    """The replacement stops the whole flow."""
    return Response(replace=stop_jobflow_job(a))


@job
def addition(a):
    return Response(output=a, addition=add(a, 1000))


@job
def detour(a):
    return Response(output=a, detour=add(a, 7))


@job
def detour_flow(a):
    first = add(a, 1)
    second = add(first.output, 1)
    return Response(output=a * 2, detour=Flow([first, second]))


@job
def detour_failing(a):
    return Response(output=a, detour=fail("the detour fails"))


@job
def stop_children_job(a):
    return Response(output=a, stop_children=True)


@job
def stop_children_with_detour(a):
    """Its children are stopped, but its own detour still runs."""
    return Response(output=a, stop_children=True, detour=add(a, 1))


@job
def stop_jobflow_job(a):
    return Response(output=a, stop_jobflow=True)


@job
def stored(a):
    return Response(output=a, stored_data={"note": "kept", "values": [a, a + 1]})


@job
def fibonacci(smaller, larger, stop_point=50):
    """jobflow's dynamic example: each job adds the next one until the sum passes ``stop_point``."""
    total_ = smaller + larger
    if total_ > stop_point:
        return total_
    return Response(output=total_, addition=fibonacci(larger, total_, stop_point=stop_point))


@job
def countdown(n):
    """Replaces itself until ``n`` reaches 0: one uuid, indexes 1..n+1."""
    if n <= 0:
        return "done"
    return Response(replace=countdown(n - 1))


@dataclass
class AddMaker(Maker):
    """A Maker whose job adds a fixed offset."""

    name: str = "add offset"
    offset: int = 10

    @job
    def make(self, a):
        return a + self.offset


@dataclass
class TwoStepMaker(Maker):
    """A Maker that makes a flow."""

    name: str = "two steps"
    factor: int = 2

    def make(self, a):
        first = mul(a, self.factor)
        second = add(first.output, 1)
        return Flow([first, second], output=second.output, name=self.name)


@job
def use_maker(maker, a):
    """Takes a Maker as an argument and replaces itself with what it makes."""
    return maker.make(a)


@flow
def decorated(a):
    first = add(a, 1)
    second = mul(first.output, 2)
    return second.output


@flow
def decorated_outer(a):
    inner = decorated(a)
    return add(inner.output, 1000).output
