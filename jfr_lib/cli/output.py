"""Tables for people, JSON for scripts."""

from __future__ import annotations

import json
import shutil
import sys


def print_json(data) -> None:
    json.dump(data, sys.stdout, indent=2, sort_keys=False, default=str)
    sys.stdout.write("\n")


def print_table(rows: list, columns: list, empty: str = "nothing to show") -> None:
    """Print ``rows`` (dicts) as aligned columns ``[(key, title), ...]``, cut to the terminal."""
    if not rows:
        print(empty)
        return
    cells = [[_cell(r.get(key)) for key, _ in columns] for r in rows]
    titles = [title for _, title in columns]
    widths = [max(len(t), *(len(c[i]) for c in cells)) for i, t in enumerate(titles)]
    width = shutil.get_terminal_size((120, 24)).columns if sys.stdout.isatty() else 10_000
    lines = ["  ".join(t.ljust(w) for t, w in zip(titles, widths)).rstrip()]
    lines += ["  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in cells]
    sys.stdout.write("\n".join(line[:width] for line in lines) + "\n")


def _cell(value) -> str:
    if value is None:
        return "-"
    if isinstance(value, str) and len(value) >= 23 and value[4:5] == "-" and "T" in value:
        return value[:19].replace("T", " ")  # ISO time: drop fractions and zone
    return str(value)


def add_json_flag(parser) -> None:
    parser.add_argument("--json", action="store_true", help="print JSON for scripts")
