"""``jfr project check``: can the runner reach everything the project names?

Each check gives a :class:`Check` (passed or not, a label, details or the
reason it failed). A worker whose host cannot be reached skips its other checks.
"""

from __future__ import annotations

import shlex
import sys
from dataclasses import dataclass

VERSION_PROBE = ("import jfr_lib, jfr_lib.worker, jobflow; "
                 "print(jfr_lib.__version__, jobflow.__version__)")  # fmt: skip


@dataclass
class Check:
    ok: bool
    label: str
    detail: str = ""


def _versions_here() -> str:
    import jobflow

    import jfr_lib

    return f"jfr {jfr_lib.__version__}, jobflow {jobflow.__version__}"


def check_worker(project, worker) -> list:
    from jfr_lib.errors import HostError
    from jfr_lib.hosts import get_host
    from jfr_lib.queue import QueueAdapter

    out = []
    where = "this machine" if worker.is_local else f"{worker.user + '@' if worker.user else ''}{worker.host}"
    host = get_host(worker)
    if worker.interactive_login and not worker.is_local:
        try:
            login = _check_login(project, worker)
        except HostError as exc:  # the ssh config cannot be read, say
            login = Check(False, f"worker {worker.name}: logged in (interactive_login)", str(exc))
        out.append(login)
        if not login.ok:
            out.append(Check(False, f"worker {worker.name}: other checks skipped", "no login"))
            return out
    try:
        try:
            result = host.run("echo jfr-ok", timeout=min(worker.timeout_execute, 60))
            ok = result.exit_code == 0 and "jfr-ok" in result.stdout
            out.append(Check(ok, f"worker {worker.name}: run a command on {where}",
                             "" if ok else (result.stderr.strip() or f"exit {result.exit_code}")[-300:]))  # fmt: skip
        except HostError as exc:
            out.append(Check(False, f"worker {worker.name}: run a command on {where}", str(exc)))
            out.append(Check(False, f"worker {worker.name}: other checks skipped", "the host cannot be reached"))
            return out
        python = worker.python or (sys.executable if worker.is_local else "python3")
        script = "\n".join(x for x in (worker.pre_run, f"{python} -c {shlex.quote(VERSION_PROBE)}") if x)
        result = host.run(script)
        if result.exit_code == 0 and result.stdout.split():
            jfr_v, jobflow_v = (result.stdout.split()[-2:] + ["?"])[:2]
            out.append(Check(True, f"worker {worker.name}: python -m jfr_lib.worker can run",
                             f"worker: jfr {jfr_v}, jobflow {jobflow_v}; here: {_versions_here()}"))  # fmt: skip
        else:
            reason = (result.stderr.strip().splitlines() or [f"exit {result.exit_code}"])[-1]
            out.append(Check(False, f"worker {worker.name}: python -m jfr_lib.worker can run",
                             f"{python}: {reason}"))  # fmt: skip
        q = shlex.quote
        folders = [("work_dir", worker.work_dir)]
        if worker.is_batch:
            folders += [("batch.jobs_handle_dir", worker.batch.jobs_handle_dir),
                        ("batch.work_dir", worker.batch.work_dir)]  # fmt: skip
        for key, folder in folders:
            folder = folder if worker.is_local else host.expand(folder)
            probe = f"{folder}/.jfr-check"
            result = host.run(f"mkdir -p {q(folder)} && touch {q(probe)} && rm -f {q(probe)}")
            out.append(Check(result.exit_code == 0, f"worker {worker.name}: {key} {folder} is writable",
                             result.stderr.strip()[-300:]))  # fmt: skip
        queue = QueueAdapter(worker.scheduler_type)
        if worker.scheduler_type == "shell":
            command = "ps -o pid,user,etime,state,comm -p $$"
        else:
            command = queue.io.get_jobs_list_cmd(None, worker.scheduler_username or worker.user)
        result = host.run(command)
        out.append(Check(result.exit_code == 0, f"worker {worker.name}: queue status ({worker.scheduler_type})",
                         (result.stderr.strip() or result.stdout.strip())[-300:] if result.exit_code else ""))
    except HostError as exc:
        out.append(Check(False, f"worker {worker.name}: checks interrupted", str(exc)))
    finally:
        host.close()
    return out


def _check_login(project, worker) -> Check:
    """Whether the worker's interactive login is there; since when it is missing, if the runner saw it go."""
    from datetime import datetime

    from jfr_lib import login_marks
    from jfr_lib.login import logged_in
    from jfr_lib.queue_db import open_queue_db

    what = f"worker {worker.name}: logged in (interactive_login)"
    if logged_in(worker):
        return Check(True, what, "")
    since = ""
    try:
        with open_queue_db(project) as db:
            mark = login_marks.get(db, worker.name)
        if mark:
            when = datetime.fromtimestamp(mark["since"]).astimezone()
            since = f" since {when.isoformat(sep=' ', timespec='seconds')}"
    except Exception:  # the database's own check says what is wrong with it
        pass
    return Check(False, what, f"login needed{since}: run `jfr login {worker.name}` on a terminal")


def _reason(exc) -> str:
    """One line, no password, no pymongo topology dump."""
    from jfr_lib.errors import JfrError
    from jfr_lib.redact import mask_text

    if not isinstance(exc, JfrError) and type(exc).__module__.split(".")[0] == "pymongo":
        from jfr_lib.queue_db.mongo import describe_error

        return f"cannot reach its MongoDB server: {describe_error(exc)}" if _unreachable(exc) else describe_error(exc)
    return mask_text(" ".join(str(exc).split()))[:500]


def _unreachable(exc) -> bool:
    return bool({c.__name__ for c in type(exc).__mro__} & {"ConnectionFailure", "ServerSelectionTimeoutError"})


def _limit_mongo_waits(store, timeout: float) -> None:
    """Give each MongoDB store of the JobStore the queue's connect timeout, unless its spec sets one.

    maggma passes ``mongoclient_kwargs`` to pymongo, whose default wait for an
    unreachable server is 30 s.
    """
    stores = [store.docs_store, *store.additional_stores.values()]
    stores += [s.index for s in stores if hasattr(s, "index")]  # S3Store keeps its index in another store
    ms = int(timeout * 1000)
    for s in stores:
        kwargs = getattr(s, "mongoclient_kwargs", None)
        if isinstance(kwargs, dict):
            kwargs.setdefault("serverSelectionTimeoutMS", ms)
            kwargs.setdefault("connectTimeoutMS", ms)


def check_databases(project) -> list:
    """Open the queue database and count the JobStore's outputs; each answers within ``queue.connect_timeout``."""
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(1) as pool:  # each may wait for an unreachable server: let them wait side by side
        queue = pool.submit(_check_queue_db, project)
        store = _check_jobstore(project)
        return [queue.result(), store]


def _check_queue_db(project) -> Check:
    label = f"queue database ({project.queue.backend})"
    try:
        from jfr_lib.queue_db import open_queue_db

        with open_queue_db(project) as db:
            n = db.count_jobs()
            return Check(True, label, f"schema {db.schema_version()}, {n} jobs")
    except Exception as exc:  # any failure here is the answer to the check
        return Check(False, label, _reason(exc))


def _check_jobstore(project) -> Check:
    try:
        from jfr_lib.jobstore import get_jobstore, store_lock

        store = get_jobstore(project, connect=False)
        _limit_mongo_waits(store, project.queue.connect_timeout)
        with store_lock(project, exclusive=True):
            store.connect()
        with store_lock(project, exclusive=False):
            n = store.docs_store.count()
        names = ", ".join(sorted(store.additional_stores)) or "none"
        return Check(True, "JobStore", f"{n} outputs; additional stores: {names}")
    except Exception as exc:  # any failure here is the answer to the check
        return Check(False, "JobStore", _reason(exc))


def run_checks(project, worker_names=None) -> list:
    from jfr_lib.errors import UsageError

    names = worker_names or list(project.workers)
    unknown = [n for n in names if n not in project.workers]
    if unknown:
        raise UsageError(f"unknown worker {unknown[0]!r} (known: {', '.join(project.workers)})")
    checks = []
    for name in names:
        checks += check_worker(project, project.workers[name])
    return checks + check_databases(project)
