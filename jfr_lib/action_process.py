"""An action process: claim work, act, wake the next action, sleep when idle.

The runner forks one per action (see :mod:`jfr_lib.runner`). Faults of the
storage or the database (:mod:`jfr_lib.faults`) never end it: it waits them out
with a growing delay. It ends by itself to be replaced by a fresh fork when a
large document left it much bigger than it started (:class:`Recycle`).
"""

from __future__ import annotations

import os
import time


def run_action(project, action: str, once: bool, stop_flag, lock_id=None, status_file=None) -> None:
    """The body of an action process: step, wake the next action, sleep when idle."""
    import importlib

    from jfr_lib import faults
    from jfr_lib.actions import NEXT_ACTION, ActionContext
    from jfr_lib.wakeup import Wakeup, notify

    module = importlib.import_module(f"jfr_lib.actions.{action}")
    ctx = ActionContext(project, action, lock_id=lock_id, status_file=status_file)
    ctx.stop_flag = stop_flag
    wake = None if once else Wakeup(project.base_dir, action)
    start_mb = resident_mb()
    in_a_row = 0  # faults met one after the other
    try:
        if hasattr(module, "prepare"):
            try:
                module.prepare(ctx)
            except Exception as exc:
                if not faults.is_fault(exc):
                    raise
                ctx.log.warning("action %s: preparing met a fault (done again later): %s", action, faults.describe(exc))
        while not stop_flag():
            ctx.notified.clear()
            try:
                if in_a_row:
                    ctx.release_own_locks()  # the jobs a fault interrupted start their step over
                moved = module.step(ctx)
            except Exception as exc:
                if once or not faults.is_fault(exc):
                    raise
                wait = faults.delay(in_a_row)
                in_a_row += 1
                ctx.log.warning("action %s met a fault, trying again in %g s: %s", action, wait, faults.describe(exc))
                ctx.set_fault(faults.describe(exc))
                wake.wait(wait)
                continue
            if in_a_row:
                ctx.log.info("action %s works again", action)
                in_a_row = 0
            ctx.set_status(None)
            if moved and NEXT_ACTION[action] not in ctx.notified:  # each job's move may have woken it already
                notify(project.base_dir, NEXT_ACTION[action])
            if once:
                break
            if moved and resident_mb() > start_mb + project.runner.recycle_memory_mb:
                # freed memory mostly stays with the process: a fresh fork of the parent is small again
                ctx.log.info("action %s grew from %.0f to %.0f MB: replacing it by a fresh process",
                             action, start_mb, resident_mb())  # fmt: skip
                raise Recycle
            if not moved:
                ctx.set_status(None, force=True)  # idle: say so before sleeping
                timeout = project.runner.idle_sleep
                if hasattr(module, "next_due"):
                    timeout = min(timeout, module.next_due(ctx))
                extra = module.wait_fds(ctx) if hasattr(module, "wait_fds") else ()
                if wake.wait(timeout, extra):
                    ctx.woken_at = time.monotonic()
    finally:
        if wake is not None:
            wake.close()
        ctx.close()


class Recycle(Exception):
    """An action process asks to be replaced by a fresh one (see ``runner.recycle_memory_mb``)."""


#: Exit code of an action process that asked to be replaced: restarted at once, not a failure.
RECYCLED = 75


def resident_mb() -> float:
    """Resident memory of this process in MB (0 where /proc is missing)."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 1e6
    except (OSError, ValueError, IndexError):
        return 0.0
