"""The exception tree of jfr.

Every error a user can cause derives from :class:`JfrError` and carries the exit
code the command line returns for it. Only ``jfr_lib.cli.main`` catches these and
prints them as one line.
"""

from __future__ import annotations


class JfrError(Exception):
    """Base class of every error jfr reports to a user."""

    exit_code = 1


class UsageError(JfrError):
    """The command line or an API call was given arguments that cannot work."""

    exit_code = 2


class ConfigError(JfrError):
    """A project file is missing, unreadable or invalid.

    Parameters
    ----------
    message
        What is wrong.
    path
        The project file, named first in the message.
    key
        The dotted key that is wrong (``workers.cluster.work_dir``).
    more
        Further problems of the same file, as ``(key, reason)`` pairs: the
        message then has one line per problem, each ``FILE: KEY: reason``.
    """

    exit_code = 2

    def __init__(self, message: str, path=None, key: str | None = None, more=()):
        self.path = path
        self.key = key
        self.reason = message
        #: every problem found, ``(key, reason)``, the first one first
        self.problems = [(key, message), *more]
        lines = (": ".join([*(str(p) for p in (path, k) if p), m]) for k, m in self.problems)
        super().__init__("\n".join(lines))


class SubmitError(JfrError):
    """A flow was refused at submission; nothing was stored."""

    exit_code = 2


class NotFoundError(JfrError):
    """A job, flow, project or output does not exist."""

    exit_code = 3


class StateError(JfrError):
    """An operation is not allowed in the current state of a job or flow."""

    exit_code = 4


class QueueDBError(JfrError):
    """The queue database cannot be opened or has an unexpected schema."""

    exit_code = 5


class HostError(JfrError):
    """A command or transfer on a worker host failed for a reason that may pass.

    Actions treat it as transient: the step is retried later.
    """

    exit_code = 6


class LoginNeeded(HostError):
    """A worker with ``interactive_login`` has no logged-in connection (``jfr login WORKER``).

    Its jobs wait where they are, without spending attempts, until a login is back.
    """


class QueueError(JfrError):
    """The queue system refused or failed a command."""

    exit_code = 6

    def __init__(self, message: str, transient: bool = True, limit: bool = False):
        super().__init__(message)
        self.transient = transient
        #: the queue refused because of a per-user limit: wait, but it is no error
        self.limit = limit


class JobFailure(JfrError):
    """A job failed for a permanent reason (it raised, its output is missing)."""

    exit_code = 1

    def __init__(self, message: str, traceback: str | None = None):
        super().__init__(message)
        self.traceback = traceback
