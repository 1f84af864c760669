"""The package's modules depend on each other without a circle (function-level imports included),
and the light entry points stay light."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ROOT

PACKAGE = ROOT / "jfr_lib"


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def import_graph() -> dict:
    """module -> the modules of ours it imports anywhere in its code."""
    files = {module_name(p): p for p in PACKAGE.rglob("*.py")}
    graph = {name: set() for name in files}
    for name, path in files.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text())):
            targets = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package.split(".")[: len(package.split(".")) - node.level + 1]
                    source = ".".join([*base, *([node.module] if node.module else [])])
                else:
                    source = node.module or ""
                # `from jfr_lib import lease` imports the module jfr_lib.lease, not the package's code only
                targets = [f"{source}.{a.name}" if f"{source}.{a.name}" in files else source for a in node.names]
            graph[name] |= {t for t in targets if t in files and t != name}
    return graph


def circles(graph: dict) -> list:
    """The strongly connected groups of more than one module (Tarjan's algorithm, iterative)."""
    index, low, on_stack, stack, found, counter = {}, {}, set(), [], [], [0]
    for root in graph:
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = counter[0]
        counter[0] += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter[0]
                    counter[0] += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                group = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    group.append(member)
                    if member == node:
                        break
                if len(group) > 1:
                    found.append(sorted(group))
    return found


def test_the_finder_sees_a_circle():
    assert circles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_no_import_circle_in_the_package():
    graph = import_graph()
    assert "jfr_lib.worker" in graph and graph["jfr_lib.runner"]  # the graph was really built
    assert circles(graph) == []


@pytest.mark.parametrize("module, below", [
    ("jfr_lib.worker", {"jfr_lib.rundir", "jfr_lib.warm_client"}),
    ("jfr_lib.warm", {"jfr_lib.warm_client", "jfr_lib.proc", "jfr_lib.worker", "jfr_lib.rundir"}),
    ("jfr_lib.pilot", {"jfr_lib.batch", "jfr_lib.warm", "jfr_lib.warm_client", "jfr_lib.proc", "jfr_lib.worker",
                       "jfr_lib.rundir"}),
])  # fmt: skip
def test_the_run_side_depends_only_downward(module, below):
    """What runs on a worker (the job, the warm server, a pilot) never imports the runner's side
    (nor the database: a pilot never touches it)."""
    graph = import_graph()
    seen, todo = set(), [module]
    while todo:
        for dep in graph[todo.pop()] - seen:
            seen.add(dep)
            todo.append(dep)
    assert seen <= below | {"jfr_lib"}, sorted(seen - below)


def test_light_commands_import_no_heavy_library():
    heavy = ("jobflow", "maggma", "fabric", "paramiko", "pymongo", "qtoolkit", "monty", "starlette", "uvicorn")
    code = ("import sys; from jfr_lib.cli import build_parser; build_parser(); "
            f"print(sorted(m for m in {heavy!r} if m in sys.modules))")  # fmt: skip
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert out.returncode == 0 and out.stdout.strip() == "[]", out.stderr
