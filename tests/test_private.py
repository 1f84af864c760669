"""What jfr writes is readable by its user only, whatever the umask: folders 0700, files 0600."""

from __future__ import annotations

import os
import stat

import pytest
from jobflow import Flow

from jfr_lib import submit_flow

import testjobs as tj

pytestmark = pytest.mark.e2e


def modes(root) -> dict:
    out = {}
    for folder, dirs, files in os.walk(root):
        for name in [*dirs, *files]:
            path = os.path.join(folder, name)
            st = os.lstat(path)
            if stat.S_ISDIR(st.st_mode) or stat.S_ISREG(st.st_mode):
                out[os.path.relpath(path, root)] = st.st_mode & 0o777
    return out


def test_data_log_and_run_folders_are_private(penv):
    old = os.umask(0o022)  # a common umask: 0644 files, 0755 folders
    try:
        a = tj.add(1, 2)
        submit_flow(Flow([a, tj.big_output(3000), tj.add(a.output, 1)]))
        penv.run_until_idle()
    finally:
        os.umask(old)
    assert {j["state"] for j in penv.jobs()} == {"COMPLETED"}
    seen = {}
    for root in (penv.base, penv.work, penv.root / "logs"):
        assert os.stat(root).st_mode & 0o777 == 0o700, root
        seen.update({f"{root.name}/{k}": v for k, v in modes(root).items()})
    names = {os.path.basename(k) for k in seen}
    assert {"queue.db", "jobstore.db", "test.log", "jfr_in.json", "jfr_out.json", "jfr_store.json",
            "queue.out", "queue.err", "submit.sh", "jfr_started"} <= names  # fmt: skip
    loose = {k: oct(v) for k, v in seen.items() if v & 0o077}
    assert loose == {}, loose
