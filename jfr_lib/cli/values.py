"""Values read from the command line: whole numbers, seconds, text, times, patterns.

A value that cannot mean what the user wants is refused with a one-line
:class:`~jfr_lib.errors.UsageError` (or an argparse error), never silently read
another way: a number is ASCII digits only (``int("٣")`` is 3, and a delete must
not hit job 3 for it), an empty or non-UTF-8 value is refused rather than
dropped (a dropped filter would widen a selection), and numbers are checked for
range before they reach the database.
"""

from __future__ import annotations

import argparse
import math
import re
from datetime import datetime, timedelta, timezone

#: The largest integer the queue databases store (SQLite INTEGER, BSON int64).
MAX_INT = 2**63 - 1
AGE = re.compile(r"([0-9]+)\s*([smhdw])", re.ASCII)
CLOCK = re.compile(r"[0-9]{1,2}:[0-9]{2}(:[0-9]{2})?", re.ASCII)


# --- argparse types ---------------------------------------------------------------


def whole(text: str) -> int | None:
    """The value of a whole number in ASCII digits with an optional sign, or None.

    None too when it has more digits than any number the databases store (and
    before ``int`` would refuse a very long one).
    """
    m = re.fullmatch(r"([+-]?)0*([0-9]{1,19})", text, re.ASCII)
    if m is None or abs(int(m.group(2))) > MAX_INT:
        return None
    return -int(m.group(2)) if m.group(1) == "-" else int(m.group(2))


def count_type(low: int = 0, high: int = MAX_INT, what: str = "N"):
    """An argparse ``type``: a whole number from ``low`` to ``high``, written in ASCII digits."""

    def count(text: str) -> int:
        value = whole(text)
        if value is None or not low <= value <= high:
            raise argparse.ArgumentTypeError(f"{text!r}: give a whole number from {low} to {high}")
        return value

    count.__name__ = what
    return count


def seconds_type(text: str) -> float:
    """An argparse ``type``: a finite number of seconds, 0 or more (``nan``, ``inf`` refused)."""
    try:
        value = float(text) if text.isascii() else math.nan
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError(f"{text!r}: give a number of seconds, 0 or more")
    return value


# --- values -------------------------------------------------------------------------


def text_value(value: str, option: str) -> str:
    """``value`` if it is a non-empty UTF-8 string; a UsageError otherwise.

    Every job, flow, worker and name is stored as UTF-8 text, so an argument
    that was not (its bytes arrive as surrogates) can match nothing.
    """
    from jfr_lib.errors import UsageError

    if value == "":
        raise UsageError(f"{option}: give a value, not an empty string")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise UsageError(f"{option} {value!r}: not valid UTF-8") from None
    return value


def parse_when(text: str, option: str) -> str:
    """A time given on the command line, as the stored form (ISO 8601 UTC with milliseconds).

    Accepts an age (``90s``, ``30m``, ``2h``, ``3d``, ``1w``: that long ago), an
    ISO date or time with an offset (``Z`` too) as the tables print them
    (``2026-11-30 21:40:05+01:00``), a date or time without one, read as
    local time, or a time of day alone (``14:30``, ``14:30:00``): its latest
    occurrence, today or yesterday, as jobflow-remote reads it.
    """
    from jfr_lib.errors import UsageError

    text_value(text, option)
    value = text.strip()
    try:
        m = AGE.fullmatch(value)
        if m:
            unit = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}[m.group(2)]
            when = datetime.now(timezone.utc) - timedelta(**{unit: int(m.group(1))})
        elif CLOCK.fullmatch(value):
            now = datetime.now().astimezone()
            clock = datetime.strptime(value if value.count(":") == 2 else value + ":00", "%H:%M:%S")
            when = now.replace(hour=clock.hour, minute=clock.minute, second=clock.second, microsecond=0)
            if when > now:
                when -= timedelta(days=1)
        else:
            if not value.isascii():  # fromisoformat reads other scripts' digits too
                raise ValueError(value)
            if value[-1:] in ("Z", "z"):
                value = value[:-1] + "+00:00"
            when = datetime.fromisoformat(value)
            if when.tzinfo is None:
                when = when.astimezone()  # a local time
        return when.astimezone(timezone.utc).isoformat(timespec="milliseconds")
    except (OverflowError, OSError):
        raise UsageError(f"{option} {text!r}: out of range") from None
    except ValueError as exc:
        if "out of range" in str(exc):
            raise UsageError(f"{option} {text!r}: out of range") from None
        raise UsageError(f"{option} {text!r}: give a time as the tables show it (2026-11-30 21:40:05+01:00), "
                         "an ISO date or time, HH:MM:SS, or an age such as 2h or 3d") from None  # fmt: skip


def parse_int(text: str, what: str) -> int:
    """A whole number (ASCII digits, optional sign) that the databases can store."""
    from jfr_lib.errors import UsageError

    value = whole(text)
    if value is None:
        raise UsageError(f"{what} {text!r}: give a whole number from {-MAX_INT} to {MAX_INT}")
    return value


def parse_regex(text: str, option: str):
    """A compiled regular expression; a UsageError when it is not one."""
    from jfr_lib.errors import UsageError

    text_value(text, option)
    try:
        return re.compile(text)
    except (re.error, RecursionError, OverflowError) as exc:
        raise UsageError(f"{option} {text!r}: not a valid regular expression: {exc}") from None
