"""Interactive logins of remote workers (``interactive_login: true``).

A worker with an interactive login never authenticates from the runner: a person
logs it in once, on a terminal (``jfr login WORKER``, or ``jfr runner start`` on a
terminal), and every runner process rides on that login:

- ``ssh_client: openssh``: an OpenSSH master connection (``ssh -fN``, ControlMaster)
  on jfr's socket, or on the ``ControlPath`` the user's ssh config sets;
- ``ssh_client: fabric``: a login process holding the paramiko connection
  (:mod:`jfr_lib.hosts.broker`, :mod:`jfr_lib.hosts.login_process`).

When the login is gone, the worker waits in the "login needed" state
(:mod:`jfr_lib.login_marks`); :func:`restored` ends that wait at once after a new login.
"""

from __future__ import annotations

import logging

log = logging.getLogger("jfr.login")

#: States in which a job may wait for its worker's login (the actions that reach the host).
WAITING_STATES = ("READY", "CHECKED_OUT", "UPLOADED", "RUN_FINISHED", "DOWNLOADED")


def interactive(project) -> list:
    """The workers of ``project`` that log in interactively."""
    return [w for w in project.workers.values() if w.interactive_login and not w.is_local]


def _host(worker):
    from jfr_lib.hosts import get_host

    return get_host(worker)


def logged_in(worker) -> bool:
    """Whether ``worker`` has a live login the runner can ride on."""
    if worker.ssh_client == "openssh":
        return _host(worker).logged_in()
    from jfr_lib.hosts import broker

    return broker.logged_in(worker)


def log_in(worker, log_path=None, timeout: float = 300.0) -> None:
    """Log ``worker`` in, asking on this terminal; nothing when it is logged in already.

    Raises
    ------
    HostError
        The login failed (one line).
    """
    saved = _terminal_settings()
    try:
        if worker.ssh_client == "openssh":
            _host(worker).login(timeout=timeout)
            return
        from jfr_lib.hosts import login_process

        login_process.login(worker, timeout=timeout, log_path=log_path)
    except BaseException:
        if saved is not None:  # a prompt given up half-way leaves the terminal without echo
            _restore_terminal(saved)
        raise


def _terminal_settings():
    """This terminal's settings (``/dev/tty``), or None without one."""
    try:
        import termios

        with open("/dev/tty") as tty:
            return termios.tcgetattr(tty)
    except (OSError, ImportError):
        return None


def _restore_terminal(saved) -> None:
    import termios

    try:
        with open("/dev/tty", "w") as tty:
            termios.tcsetattr(tty, termios.TCSANOW, saved)
            tty.write("\n")  # the error goes on a line of its own, not after the prompt
    except OSError:
        pass


def log_out(worker) -> bool:
    """Close the login jfr opened for ``worker``; whether there was one."""
    if worker.ssh_client == "openssh":
        return _host(worker).logout()
    from jfr_lib.hosts import broker

    return broker.logout(worker)


def restored(project, worker) -> int:
    """After a login: for ``worker`` and every worker riding on the same login, drop the "login
    needed" mark, make the jobs that waited due now, and wake the actions.

    A job the runner claims meanwhile keeps its own next try: the change is only its retry time.

    Returns
    -------
    int
        How many jobs waited for the login.
    """
    from jfr_lib import login_marks
    from jfr_lib.actions import ORDER
    from jfr_lib.queue_db import open_queue_db
    from jfr_lib.wakeup import notify

    names = [worker.name] + [w.name for w in interactive(project)
                             if w.name != worker.name and logged_in(w)]  # fmt: skip
    due = []
    with open_queue_db(project) as db:
        for name in names:
            login_marks.clear(db, name)
            jobs = db.find_jobs({"worker": name, "state": list(WAITING_STATES), "locked": False})
            due += [j["db_id"] for j in jobs if j.get("login_wait")]
        if due:
            db.update_jobs(due, {"retry_time": None})
    for action in ORDER:
        notify(project.base_dir, action)
    return len(due)


def close_all(project) -> list:
    """Close the logins of the project's workers (``jfr runner stop --logout``); their names."""
    closed = []
    for worker in interactive(project):
        try:
            if log_out(worker):
                closed.append(worker.name)
        except Exception as exc:  # a login that cannot be closed ends with its ControlPersist/connection
            log.warning("worker %s: the login could not be closed: %s", worker.name, exc)
    return closed
