"""The project's JobStore: the indexed SQLite default, an older MontyStore kept until migrated."""

from __future__ import annotations

import pytest
from test_job_cmd import run_main


def test_new_projects_get_the_indexed_sqlite_store(penv):
    from jfr_lib.jobstore import get_jobstore, store_lock
    from jfr_lib.sqlite_store import SQLiteStore

    store = get_jobstore(penv.project)
    assert isinstance(store.docs_store, SQLiteStore) and isinstance(store.additional_stores["data"], SQLiteStore)
    assert store.docs_store.path == penv.project.jobstore_dir / "jobstore.db"
    with store_lock(penv.project):  # no flock for this store: nothing is created next to it
        assert not (penv.base / "jobstore.lock").exists()


def legacy_outputs(project, n: int) -> list:
    """Outputs written into a MontyStore as an earlier jfr left it: (uuid, index, output)."""
    from jobflow import JobStore

    from jfr_lib.jobstore import _monty_spec

    store = JobStore.from_dict_spec(_monty_spec(str(project.jobstore_dir)))
    store.connect()
    rows = []
    for i in range(n):
        uuid = f"00000000-0000-0000-0000-{i:012d}"
        output = {"energy": -1.5 * i, "numbers": list(range(i))}
        store.update({"uuid": uuid, "index": 1 + i % 2, "output": output, "name": "relax", "metadata": {}},
                     key=["uuid", "index"], save={"data": ["numbers"]} if i % 3 == 0 else {})  # fmt: skip
        rows.append((uuid, 1 + i % 2, output))
    store.close()
    return rows


def test_an_older_montystore_is_kept_until_migrated(penv, capsys):
    from maggma.stores import MontyStore

    from jfr_lib.jobstore import get_jobstore
    from jfr_lib.sqlite_store import SQLiteStore

    rows = legacy_outputs(penv.project, 30)
    store = get_jobstore(penv.project)
    assert isinstance(store.docs_store, MontyStore)  # not silently replaced by an empty new store
    assert store.get_output(rows[3][0], load=True) == rows[3][2]
    store.close()

    code, out, _ = run_main(capsys, "admin", "migrate-jobstore", "--sample", "10")
    assert code == 0 and "docs: 30 documents copied" in out and "data: 10 documents copied" in out
    assert "10 outputs read back the same" in out
    folder = penv.project.jobstore_dir
    assert (folder / "jobstore.db").exists() and (folder / "monty.storage.cfg.migrated").exists()
    assert not (folder / "jobstore.partial.db").exists()
    store = get_jobstore(penv.project)
    assert isinstance(store.docs_store, SQLiteStore)
    for uuid, index, output in rows:
        assert store.get_output(uuid, which=index, load=True) == output
    code, _, err = run_main(capsys, "admin", "migrate-jobstore")
    assert code != 0 and "no MontyStore of an earlier jfr to migrate" in err


def test_migration_refuses_a_project_with_its_own_jobstore(penv, capsys):
    text = penv.path.read_text() + ("jobstore:\n  docs_store:\n    type: MemoryStore\n    collection_name: o\n")
    penv.write(text)
    code, _, err = run_main(capsys, "admin", "migrate-jobstore")
    assert code != 0 and "names its own JobStore: nothing to migrate" in err


@pytest.mark.e2e
def test_flows_run_on_a_migrated_store(penv, capsys):
    from jobflow import Flow

    from jfr_lib import submit_flow

    import testjobs as tj

    legacy_outputs(penv.project, 3)
    assert run_main(capsys, "admin", "migrate-jobstore")[0] == 0
    a = tj.add(1, 2)
    submit_flow(Flow([a, tj.add(a.output, 3)]))
    penv.run_until_idle()
    assert [penv.output(j) for j in penv.jobs()] == [3, 6]
