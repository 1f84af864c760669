"""What jfr writes is for its user only: folders 0700, files 0600.

The queue database, the JobStore, the logs and the run folders hold a project's
inputs, outputs and errors. On a login node shared with other users they must
not be readable by them, whatever the user's umask. The runner also runs with
umask 077, so what its processes and local jobs create is private too (a job's
``pre_run`` may set another umask).
"""

from __future__ import annotations

import os
from pathlib import Path

FOLDER_MODE = 0o700
FILE_MODE = 0o600
UMASK = 0o077


def private_dir(path) -> Path:
    """Create ``path`` (and missing parents) readable by this user only; existing folders are left as they are."""
    path = Path(path)
    missing = []
    for folder in [path, *path.parents]:
        if folder.exists():
            break
        missing.append(folder)
    path.mkdir(parents=True, exist_ok=True)
    for folder in missing:
        try:
            os.chmod(folder, FOLDER_MODE)
        except OSError:  # created by another process as another user: its business
            pass
    return path


def private_file(path, *companions: str) -> None:
    """Make ``path`` (and ``path + suffix`` for each companion that exists, e.g. ``-wal``) 0600."""
    for name in (str(path), *(f"{path}{suffix}" for suffix in companions)):
        try:
            if os.stat(name).st_mode & 0o777 != FILE_MODE:
                os.chmod(name, FILE_MODE)
        except OSError:  # not there, or not ours
            pass
