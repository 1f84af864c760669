"""Warm starts: local shell jobs fork from a process that has jobflow loaded.

A cold ``python -m jfr_lib.worker`` spends most of a short job importing
jobflow, maggma and their dependencies. On the runner's own machine the runner
keeps one more process, the *warm server*, forked from its parent after those
imports. The job's script still runs as usual (through the shell queue, with
its exports, modules and pre/post commands); its worker command is a small
client (:mod:`jfr_lib.warm_client`, started with ``python -S`` so that it does
not even pay for ``site``) that connects to the server's Unix socket and hands
over its standard streams, environment and working folder. The server works out the
``sys.path`` the job would have had (its folder, its PYTHONPATH, then what
``site`` gives this Python, learnt once at start) and forks a process that
becomes the job: it takes that environment, runs the job exactly as a cold
worker would, and reports the exit code back. The client stays in the
foreground for the queue and relays signals (a ``jfr job stop`` SIGTERM
reaches the job); if the client dies, the job is terminated as if it had
received SIGTERM. A job that must start cold makes the client replace itself
with ``python -m jfr_lib.worker``.

A job starts warm only when nothing the preloaded modules read at import time
could differ: same machine, same Python executable, a ``sys.path`` that finds
every module already loaded in the same file (it may add folders), and the same
values of the variables in :data:`IMPORT_TIME_VARIABLES` (Python's own, the
dynamic linker's, thread counts of OpenMP/MKL/OpenBLAS, jobflow's settings...).
Otherwise, or when the server is not there, the worker starts cold, with the
reason on its standard error. The global generators of ``random`` and
``numpy.random`` are reseeded in every job. ``runner.warm_start: false`` turns
warm starts off.

This module imports only the standard library.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import sys

from jfr_lib.warm_client import CONNECT_TIMEOUT, receive, send

#: Prefixes (and whole names) of environment variables read when modules load.
IMPORT_TIME_VARIABLES = (
    "PYTHON", "LD_", "DYLD_", "OMP_", "MKL_", "OPENBLAS_", "GOTO", "KMP_", "NUMEXPR_", "VECLIB_",
    "BLIS_", "CUDA_", "JOBFLOW_", "MAGGMA_", "MONTY_", "PMG_", "VIRTUAL_ENV", "CONDA_PREFIX", "TZ",
    "LANG", "LC_",
)  # fmt: skip
RELAYED_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGUSR1, signal.SIGUSR2)


def socket_path(base_dir):
    """The server's socket: in the data folder, or, when that path is too long for a
    socket name (about 100 bytes), in a private folder of this user under the temporary folder."""
    from pathlib import Path

    path = Path(base_dir) / "wake" / "warm.sock"
    if len(os.fsencode(path)) <= 100:
        return path
    import hashlib
    import tempfile

    digest = hashlib.sha256(os.fsencode(Path(base_dir).resolve())).hexdigest()[:16]
    return Path(tempfile.gettempdir()) / f"jfr-{os.getuid()}" / f"{digest}.sock"


def _private_folder(folder) -> str | None:
    """Create ``folder`` for this user only; why it cannot be used, if so."""
    folder.mkdir(parents=True, exist_ok=True)
    st = os.lstat(folder)
    if st.st_uid != os.getuid() or not os.path.isdir(folder) or os.path.islink(folder):
        return f"{folder} belongs to someone else"
    os.chmod(folder, 0o700)  # only this user may connect
    return None


def _sensitive(env: dict) -> dict:
    # PYTHONPATH matters only through sys.path, which is checked module by module
    return {k: v for k, v in env.items() if k.startswith(IMPORT_TIME_VARIABLES) and k != "PYTHONPATH"}


def _find(name: str, path: list):
    """Where a fresh interpreter with ``path`` as its sys.path would find module ``name``."""
    from importlib.machinery import PathFinder

    for finder in sys.meta_path:  # the same ones in the job: same Python, same site-packages
        if finder is PathFinder:
            spec = PathFinder.find_spec(name, path)
        elif hasattr(finder, "find_spec"):
            spec = finder.find_spec(name, None)  # e.g. an editable install's finder
        else:
            continue
        if spec is not None:
            return spec
    return None


_verdicts = {}  # sys.path with each folder's mtime -> the first loaded module it would find elsewhere


def _mtime(entry: str):
    try:
        return os.stat(entry or ".").st_mtime_ns
    except OSError:
        return None


def shadowed(path: list) -> str | None:
    """A module already loaded here that ``path`` would import from another file, if any.

    A job's ``sys.path`` may add folders (its own code, a PYTHONPATH export);
    what it must not do is change where jobflow, numpy... come from.
    """
    key = tuple((entry, _mtime(entry)) for entry in path)  # a file added to a folder changes its mtime
    if key not in _verdicts:
        if len(_verdicts) >= 64:
            _verdicts.clear()
        found = None
        for name, module in sorted(sys.modules.items()):
            loaded = getattr(module, "__spec__", None)
            if "." in name or loaded is None or loaded.name != name or not loaded.has_location:
                continue  # submodules follow their package, aliases their module; frozen and built-in ones their Python
            spec = _find(name, list(path))
            if spec is None or not spec.origin or os.path.realpath(spec.origin) != os.path.realpath(loaded.origin):
                found = name
                break
        _verdicts[key] = found
    return _verdicts[key]


def _module_files(folder: str) -> str | None:
    """A loaded top-level module that a file or folder in ``folder`` could hide, if any."""
    from importlib.machinery import all_suffixes

    suffixes = tuple(all_suffixes())
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return None
    names = {e.name.split(".")[0] for e in entries if e.name.endswith(suffixes) or e.is_dir()}
    hits = sorted(n for n in names if n in sys.modules)
    return hits[0] if hits else None


#: sys.path of a fresh interpreter of this Python without PYTHONPATH (set by :func:`serve`).
SITE_PATH = None


def learn_site_path(timeout: float = 60.0) -> list | None:
    """The ``sys.path`` this Python gets from ``site`` (PYTHONPATH left out), asked of a fresh one."""
    import subprocess

    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    try:
        out = subprocess.run([sys.executable, "-c", "import json, sys; print(json.dumps(sys.path))"], env=env,
                             cwd="/", capture_output=True, text=True, timeout=timeout, check=True).stdout  # fmt: skip
        return [p for p in json.loads(out) if p]  # "" is the current folder
    except (OSError, ValueError, subprocess.SubprocessError):
        return None


def job_path(request: dict) -> list | None:
    """The ``sys.path`` the job would have in a fresh ``python -m``: the client's own, or,
    from a client started without ``site``, its folder, its PYTHONPATH and :data:`SITE_PATH`."""
    cwd = request.get("cwd") or "/"
    if request.get("path") is not None:
        return [entry or cwd for entry in request["path"]]  # "" is the job's folder
    if SITE_PATH is None:
        return None
    env = request.get("env") or {}
    # as Python does: every PYTHONPATH entry made absolute (an empty one is the folder), then
    # site drops repeated entries, then ``-m`` puts the folder first
    raw = env.get("PYTHONPATH")
    extra = [os.path.abspath(os.path.join(cwd, p)) for p in raw.split(os.pathsep)] if raw else []
    first = [] if env.get("PYTHONSAFEPATH") else [cwd]
    return [*first, *dict.fromkeys([*extra, *SITE_PATH])]


def mismatch(request: dict) -> str | None:
    """Why a job described by ``request`` cannot fork from this process (None: it can)."""
    env, executable = os.environ, sys.executable
    if request.get("host") != socket.gethostname():
        return f"the job runs on {request.get('host')}, the runner on {socket.gethostname()}"
    if os.path.realpath(request.get("executable") or "") != os.path.realpath(executable):
        return f"the job's Python is {request.get('executable')}, the runner's {executable}"
    cwd = request.get("cwd") or "/"
    path = job_path(request)
    if path is None:
        return "the warm server does not know this Python's site folders"
    if request.get("path") is None and (request.get("env") or {}).get("HOME") != env.get("HOME"):
        return "the job's HOME differs from the runner's (and with it the user's site folder)"
    # the job's folder differs for every job: look into it instead of caching a verdict on it
    module = (_module_files(cwd) if cwd in path else None) or shadowed([p for p in path if p != cwd])
    if module is not None:
        return f"the job's sys.path would load {module} from another place than the runner's"
    mine, theirs = _sensitive(env), _sensitive(request.get("env") or {})
    differ = sorted(k for k in mine.keys() | theirs.keys() if mine.get(k) != theirs.get(k))
    if differ:
        return f"environment variables read at import time differ: {', '.join(differ)}"
    return None


# --- server (a child of the runner) ------------------------------------------------------
def _peer_uid(conn: socket.socket) -> int | None:
    if not hasattr(socket, "SO_PEERCRED"):
        return None
    import struct

    creds = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    return struct.unpack("3i", creds)[1]


def _write_status(status_file, state: str, jobs: int) -> None:
    """What ``jfr runner info`` shows for this process."""
    from datetime import datetime, timezone

    from jfr_lib.proc import write_status

    write_status(status_file, {"pid": os.getpid(), "action": "warm", "state": state, "jobs": jobs,
                               "since": datetime.now(timezone.utc).isoformat(timespec="seconds")})  # fmt: skip


def serve(project, stop_flag, log, status_file=None) -> None:
    """The runner's warm server: :func:`serve_at` on the project's socket."""
    serve_at(socket_path(project.base_dir), stop_flag, log, status_file)


def serve_at(path, stop_flag, log, status_file=None) -> None:
    """Accept job hand-overs on the socket ``path`` until ``stop_flag()``; fork one process per job."""
    import select
    from pathlib import Path

    path = Path(path)
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        problem = _private_folder(path.parent)
        if problem:
            raise OSError(problem)
        try:
            path.unlink()
        except FileNotFoundError:
            pass
        listener.bind(str(path))
        inode = os.stat(path).st_ino
    except OSError as exc:
        log.warning("warm starts are off: cannot listen on %s (%s)", path, exc)
        _write_status(status_file, "off", 0)
        listener.close()
        while not stop_flag():
            select.select([], [], [], 1.0)
        return
    listener.listen(16)  # jobs that come meanwhile wait in the backlog
    global SITE_PATH
    SITE_PATH = learn_site_path()
    if SITE_PATH is None:
        log.warning("warm server: cannot learn this Python's sys.path; jobs will start cold")
    log.info("warm server listening on %s", path)
    started, reported = 0, -1
    try:
        while not stop_flag():
            _reap()
            ready, _, _ = select.select([listener], [], [], 0.5)
            if ready:
                conn, _ = listener.accept()
                try:
                    started += _hand_over(listener, conn, log)
                finally:
                    conn.close()
            else:  # a quiet half second: the count of started jobs is worth a file write now
                if reported != started:
                    _write_status(status_file, "listening", started)
                    reported = started
            if reported < 0:
                _write_status(status_file, "listening", started)
                reported = started
    finally:
        listener.close()
        try:
            if os.stat(path).st_ino == inode:  # ours, not one a newer server made meanwhile
                path.unlink()
        except OSError:
            pass


def _reap() -> None:
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def _hand_over(listener, conn, log) -> int:
    """Serve one connection; 1 when a job was forked, else 0."""
    fds = []
    try:
        conn.settimeout(CONNECT_TIMEOUT)
        uid = _peer_uid(conn)
        if uid is not None and uid != os.getuid():
            log.warning("warm server: refused a connection from uid %d", uid)
            return 0
        _, fds, _, _ = socket.recv_fds(conn, 1, 3)
        request = receive(conn)
        if request is None or len(fds) != 3:
            return 0
        reason = mismatch(request)
        if reason:
            send(conn, {"refused": reason})
            return 0
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                listener.close()
                code = _become_job(conn, fds, request)
            except BaseException:
                import traceback

                traceback.print_exc()  # on the job's standard error when it got that far
            finally:
                os._exit(code)
        log.debug("warm start of %s as pid %d", request.get("argv"), pid)
        return 1
    except (OSError, ValueError, EOFError) as exc:
        log.warning("warm server: a hand-over failed: %s", exc)
        return 0
    finally:
        for fd in fds:
            os.close(fd)


def _become_job(conn: socket.socket, fds: list, request: dict) -> int:
    """In the forked process: take on the job's environment and run the worker."""
    import importlib
    import logging
    import random
    import threading

    from jfr_lib.proc import name_process, set_title

    os.setsid()  # out of the runner's session: its terminal and signals are not the job's
    set_title(f"jfr-job {request['argv'][0] if request.get('argv') else ''}")
    name_process("jfr-job")
    for signum in (*RELAYED_SIGNALS, signal.SIGCHLD, signal.SIGPIPE):
        signal.signal(signum, signal.SIG_DFL if signum != signal.SIGPIPE else signal.SIG_IGN)
    for target, fd in enumerate(fds):
        os.dup2(fd, target)
    for fd in fds:
        if fd > 2:
            os.close(fd)
    logging.root.handlers.clear()  # the runner's log file is not the job's
    logging.root.setLevel(logging.WARNING)
    for logger in logging.root.manager.loggerDict.values():
        if isinstance(logger, logging.Logger):
            logger.handlers.clear()
    os.environ.clear()
    os.environ.update(request["env"])
    sys.path[:] = job_path(request)
    importlib.invalidate_caches()
    os.chdir(request["cwd"])
    random.seed()
    if "numpy.random" in sys.modules:  # not imported yet: the job's own import seeds it afresh
        sys.modules["numpy.random"].seed()
    conn.settimeout(None)
    send(conn, {"pid": os.getpid()})

    finished = threading.Event()

    def watch_client():
        try:
            while conn.recv(1):
                pass
        except OSError:
            pass
        if not finished.is_set():  # the job's script is gone: stop as a cancelled job would
            os.kill(os.getpid(), signal.SIGTERM)

    from jfr_lib import worker

    worker.STARTED_WARM = True
    sys.argv = [worker.__file__, *request["argv"]]
    # as under `python -m jfr_lib.worker`: the runner's own script is not the job's main module
    # (multiprocessing's spawn method re-imports the main module in its processes)
    sys.modules["__main__"] = worker
    threading.Thread(target=watch_client, daemon=True).start()
    code = worker.main(request["argv"])
    finished.set()
    sys.stdout.flush()
    sys.stderr.flush()
    send(conn, {"exit": code})
    return code
