"""Tables for people, JSON for scripts."""

from __future__ import annotations

import json
import shutil
import sys


def print_json(data) -> None:
    json.dump(data, sys.stdout, indent=2, sort_keys=False, default=str)
    sys.stdout.write("\n")


#: ANSI colours of states, used only on a terminal and never with NO_COLOR.
COLOURS = {"COMPLETED": "32", "FAILED": "31", "REMOTE_ERROR": "31", "RUNNING": "36", "SUBMITTED": "36",
           "READY": "33", "PAUSED": "35", "STOPPED": "90", "USER_STOPPED": "90"}  # fmt: skip


def use_colour() -> bool:
    import os

    return sys.stdout.isatty() and "NO_COLOR" not in os.environ and os.environ.get("TERM") != "dumb"


def print_table(rows: list, columns: list, empty: str = "nothing to show") -> None:
    """Print ``rows`` (dicts) as aligned columns ``[(key, title), ...]``, cut to the terminal."""
    if not rows:
        print(empty)
        return
    cells = [[_cell(r.get(key)) for key, _ in columns] for r in rows]
    titles = [title for _, title in columns]
    widths = [max(len(t), *(len(c[i]) for c in cells)) for i, t in enumerate(titles)]
    tty = sys.stdout.isatty()
    width = shutil.get_terminal_size((120, 24)).columns if tty else 10_000
    colour = use_colour()
    lines = ["  ".join(t.ljust(w) for t, w in zip(titles, widths)).rstrip()[:width]]
    for row in cells:
        line = "  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip()[:width]
        if colour:
            for cell in row:
                if cell in COLOURS:
                    line = line.replace(cell, f"\033[{COLOURS[cell]}m{cell}\033[0m", 1)
                    break
        lines.append(line)
    sys.stdout.write("\n".join(lines) + "\n")


def _cell(value) -> str:
    if value is None:
        return "-"
    if isinstance(value, str) and len(value) >= 23 and value[4:5] == "-" and "T" in value:
        return value[:19].replace("T", " ")  # ISO time: drop fractions and zone
    return str(value)


def add_json_flag(parser) -> None:
    parser.add_argument("--json", action="store_true", help="print JSON for scripts")
