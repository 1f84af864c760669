"""The run folder: its place and the names of its files, the contract between the runner's
actions, the worker, the warm server and batch pilots.

A run folder is ``work_dir/uu/id/<uuid>_<index>`` on the worker. The runner
writes the job (:data:`IN_FILE`) and the script (:data:`SCRIPT_NAME`); the
script records its queue id (:data:`QUEUE_ID_FILE`); the worker creates
:data:`STARTED_FILE` with ``O_EXCL`` before it runs the job and always writes
:data:`OUT_FILE` (times, response or error) and :data:`STORE_FILE` (outputs).
This module imports only the standard library.
"""

from __future__ import annotations

import base64
import json
import os
from datetime import datetime
from pathlib import PurePosixPath

IN_FILE = "jfr_in.json"
OUT_FILE = "jfr_out.json"
STORE_FILE = "jfr_store.json"
STARTED_FILE = "jfr_started"
SCRIPT_NAME = "submit.sh"
QUEUE_OUT = "queue.out"
QUEUE_ERR = "queue.err"
#: Written by the script as it starts: its own queue id.
QUEUE_ID_FILE = "jfr_queue_id"
#: The queue's answer to the submission, kept the moment it arrives.
SUBMIT_OUT, SUBMIT_ERR = "jfr_submit.out", "jfr_submit.err"


def run_dir_for(work_dir: str, uuid: str, index: int, reruns: int = 0) -> str:
    """``work_dir/uu/id/<uuid>_<index>``, spread over sub-folders; a rerun gets ``_r<n>``.

    Jobs created at run time by a rerun job carry its ``n`` too: a replacement made
    again has the uuid and index of the one a rerun removed, not its folder.
    """
    name = f"{uuid}_{index}" + (f"_r{reruns}" if reruns else "")
    return str(PurePosixPath(work_dir) / uuid[:2] / uuid[2:4] / name)


class StoreEncoder(json.JSONEncoder):
    """JSON for store documents: datetimes and bytes keep their type through the file."""

    def default(self, o):
        if isinstance(o, datetime):
            return {"$date": o.isoformat()}
        if isinstance(o, (bytes, bytearray)):
            return {"$binary": base64.b64encode(bytes(o)).decode()}
        if type(o).__name__ == "ObjectId":
            return str(o)
        return super().default(o)


def store_object_hook(d: dict):
    """Inverse of :class:`StoreEncoder`."""
    if len(d) == 1:
        if "$date" in d:
            return datetime.fromisoformat(d["$date"])
        if "$binary" in d:
            return base64.b64decode(d["$binary"])
    return d


def read_started(text: str) -> tuple:
    """(host, pid, start) from a started marker; start is None when the marker does not say."""
    fields = text.split()
    start = fields[3] if len(fields) > 3 and fields[3] != "-" else None
    return fields[0], int(fields[1]), start


def write_atomic(path: str, text: str) -> None:
    tmp = f"{path}.tmp{os.getpid()}"
    with open(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w") as f:  # outputs are private
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
