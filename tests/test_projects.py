"""Which project a command uses: jfr's folder and jobflow-remote's, the name inside the file,
the variables of both tools, the persistent default."""

from __future__ import annotations

import pytest

from jfr_lib.cli import main
from jfr_lib.config import default_project, find_project_file, load_project, set_default_project
from jfr_lib.errors import ConfigError, NotFoundError

PROJECT = "name: {name}\nworkers:\n  w:\n    type: local\n    work_dir: /tmp/jfr-projects-test\n"


@pytest.fixture
def places(tmp_path, monkeypatch):
    """jfr's folder, jobflow-remote's folder and settings file, and the config home, all empty."""
    ours, theirs = tmp_path / "jfr", tmp_path / "jfremote"
    ours.mkdir()
    theirs.mkdir()
    monkeypatch.setenv("JFR_PROJECTS_DIR", str(ours))
    monkeypatch.setenv("JFREMOTE_PROJECTS_FOLDER", str(theirs))
    monkeypatch.setenv("JFREMOTE_CONFIG_FILE", str(tmp_path / "jfremote.yaml"))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    for var in ("JFR_PROJECT", "JFREMOTE_PROJECT"):
        monkeypatch.delenv(var, raising=False)
    return ours, theirs, tmp_path / "jfremote.yaml"


def add(folder, file_name, name):
    path = folder / file_name
    path.write_text(PROJECT.format(name=name))
    return path


def test_the_name_inside_the_file_wins_over_the_file_name(places):
    ours, _, _ = places
    path = add(ours, "demo.yaml", "relax-2024")
    assert find_project_file("relax-2024") == path
    assert load_project("relax-2024").name == "relax-2024"
    with pytest.raises(NotFoundError, match="no project named 'demo'"):
        find_project_file("demo")
    (ours / "plain.json").write_text('{"workers": {"w": {"work_dir": "/tmp/x"}}}')
    assert find_project_file("plain") == ours / "plain.json"  # no name inside: the file's name


def test_jobflow_remote_folder_is_searched_after_ours(places):
    ours, theirs, _ = places
    only_theirs = add(theirs, "atomate.yaml", "atomate")
    add(theirs, "both.yaml", "both")
    mine = add(ours, "both.yaml", "both")
    assert find_project_file("atomate") == only_theirs
    assert find_project_file("both") == mine  # a name in both folders: jfr's wins


def test_the_order_of_choices(places, monkeypatch):
    ours, theirs, settings = places
    add(ours, "a.yaml", "a")
    add(ours, "b.yaml", "b")
    add(theirs, "c.yaml", "c")
    with pytest.raises(ConfigError, match="several projects"):
        find_project_file()
    settings.write_text("project: c\n")  # jobflow-remote's own default
    assert find_project_file().name == "c.yaml"
    set_default_project("b")  # ours wins over theirs
    assert default_project() == "b" and find_project_file().name == "b.yaml"
    monkeypatch.setenv("JFREMOTE_PROJECT", "c")
    assert find_project_file().name == "c.yaml"
    monkeypatch.setenv("JFR_PROJECT", "a")
    assert find_project_file().name == "a.yaml"
    assert find_project_file("b").name == "b.yaml"  # -p first of all
    set_default_project(None)
    monkeypatch.delenv("JFR_PROJECT")
    monkeypatch.delenv("JFREMOTE_PROJECT")
    assert find_project_file().name == "c.yaml"


def test_a_default_that_names_no_project_is_a_clear_error(places, capsys):
    ours, _, _ = places
    add(ours, "a.yaml", "a")
    set_default_project("gone")
    assert main(["job", "list"]) == 3
    err = capsys.readouterr().err
    assert err.startswith("jfr: error: the default project 'gone' is not in ") and err.count("\n") == 1
