"""The project file: find it, read it (YAML, TOML or JSON) and turn it into typed objects.

This module finds the files (the typed objects are :mod:`jfr_lib.config_model`); reading a file is
:mod:`jfr_lib.config_load`, checking it and building the objects
:mod:`jfr_lib.config_check`. Only the standard library (and PyYAML for YAML
files) is imported: the command line loads a project on every call and must
start fast.

Errors name the file and the dotted key, one line for each problem; every
problem of a file is reported at once::

    /home/me/.config/jfr/projects/p.yaml: workers.cluster.work_dir: must be an absolute path
    /home/me/.config/jfr/projects/p.yaml: runner.heartbeat: must be a finite number
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from jfr_lib.config_model import (  # noqa: F401 (the typed objects are used from here)
    PROJECT_SUFFIXES,
    SCHEDULERS,
    WORKER_TYPES,
    ExecConfig,
    Project,
    QueueConfig,
    RunnerOptions,
    Worker,
    default_base_dir,
)
from jfr_lib.errors import ConfigError

# --- where projects live -------------------------------------------------------


def projects_dir() -> Path:
    """jfr's own folder of project files: ``$JFR_PROJECTS_DIR`` or the user config folder."""
    env = os.environ.get("JFR_PROJECTS_DIR")
    if env:
        return Path(env).expanduser()
    import platformdirs

    return platformdirs.user_config_path("jfr") / "projects"


def _jfremote_settings() -> dict:
    """jobflow-remote's settings file (``$JFREMOTE_CONFIG_FILE`` or ``~/.jfremote.yaml``), if any;
    read once per process and file version."""
    path = Path(os.environ.get("JFREMOTE_CONFIG_FILE") or "~/.jfremote.yaml").expanduser()
    try:
        stamp = path.stat().st_mtime_ns
    except OSError:
        return {}
    key = (str(path), stamp)
    if key not in _SETTINGS:
        try:
            data = read_mapping(path)
        except ConfigError:
            data = {}
        _SETTINGS[key] = data if isinstance(data, dict) else {}
    return _SETTINGS[key]


_SETTINGS: dict = {}


def jfremote_dir() -> Path:
    """jobflow-remote's folder of project files: ``$JFREMOTE_PROJECTS_FOLDER``, its settings
    file's ``projects_folder``, or ``~/.jfremote``."""
    env = os.environ.get("JFREMOTE_PROJECTS_FOLDER")
    if env:
        return Path(env).expanduser()
    return Path(_jfremote_settings().get("projects_folder") or "~/.jfremote").expanduser()


def project_folders() -> list:
    """Where project files are looked for, jfr's own folder first: its projects win a name clash."""
    folders = [projects_dir()]
    other = jfremote_dir()
    if other.resolve() != folders[0].resolve():
        folders.append(other)
    return folders


_NAME_LINE = re.compile(r"""^name\s*[:=]\s*["']?([^"'#\n]*?)["']?\s*(?:#.*)?$""", re.M)


def name_in_file(path: Path) -> str:
    """The project's name: the file's top-level ``name`` (it wins), else the file's stem.

    Read with a pattern on the top-level lines (or the JSON object's first level),
    not a full parse: a command must choose its project fast.
    """
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return path.stem
    if path.suffix == ".json":
        try:
            import json

            value = json.loads(text).get("name")
        except (ValueError, AttributeError):
            value = None
    else:
        match = _NAME_LINE.search(text)
        value = match.group(1).strip() if match else None
    return value if isinstance(value, str) and value else path.stem


def project_files(folder: Path | None = None) -> dict:
    """Map project name -> file, over every folder of :func:`project_folders` (or ``folder`` alone).

    A project's name is the ``name`` inside its file; the first file found with a
    name wins (jfr's folder before jobflow-remote's, then by file name).
    """
    found = {}
    for place in [folder] if folder is not None else project_folders():
        if not place.is_dir():
            continue
        for p in sorted(place.iterdir()):
            if p.suffix in PROJECT_SUFFIXES and p.is_file() and not p.name.startswith("."):
                found.setdefault(name_in_file(p), p)
    return found


def default_project_path() -> Path:
    """The file holding the persistent default project (``jfr project default NAME``)."""
    import platformdirs

    return platformdirs.user_config_path("jfr") / "default_project"


def default_project() -> str | None:
    """The persistent default: jfr's own (``jfr project default``), else jobflow-remote's settings file."""
    try:
        name = default_project_path().read_text().strip()
    except OSError:
        name = ""
    if name:
        return name
    value = _jfremote_settings().get("project")
    return value if isinstance(value, str) and value else None


def set_default_project(name: str | None) -> None:
    """Make ``name`` the default project (None: forget the default)."""
    path = default_project_path()
    if name is None:
        path.unlink(missing_ok=True)
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(f"{name}\n")
    tmp.replace(path)


def find_project_file(name: str | None = None) -> Path:
    """Choose the project file.

    In order: ``name`` (a project name, or a file's path); ``$JFR_PROJECT``;
    ``$JFREMOTE_PROJECT``; the persistent default (:func:`default_project`);
    the only project there is.
    """
    chosen = name or os.environ.get("JFR_PROJECT") or os.environ.get("JFREMOTE_PROJECT") or None
    if chosen and (os.sep in chosen or Path(chosen).suffix in PROJECT_SUFFIXES) and Path(chosen).is_file():
        return Path(chosen)
    files = project_files()
    where = " and ".join(str(f) for f in project_folders())
    if not chosen:
        chosen = default_project()
        if chosen and chosen not in files:
            from jfr_lib.errors import NotFoundError

            raise NotFoundError(f"the default project {chosen!r} is not in {where} (change it with "
                                "`jfr project default NAME`)")  # fmt: skip
    if chosen:
        if chosen not in files:
            from jfr_lib.errors import NotFoundError

            known = ", ".join(files) or "none"
            raise NotFoundError(f"no project named {chosen!r} in {where} (known: {known})")
        return files[chosen]
    if len(files) == 1:
        return next(iter(files.values()))
    if not files:
        from jfr_lib.errors import NotFoundError

        raise NotFoundError(f"no project file in {where}: create one with `jfr project init NAME`")
    raise ConfigError(
        f"several projects ({', '.join(files)}): choose one with -p NAME, $JFR_PROJECT or `jfr project default NAME`"
    )


def load_project(name: str | None = None) -> Project:
    """Find and load a project (see :func:`find_project_file`)."""
    return load_project_file(find_project_file(name))




def read_mapping(path: Path) -> dict:
    """Read a YAML, TOML or JSON file into a dict (see :func:`jfr_lib.config_load.read_mapping`)."""
    from jfr_lib.config_load import read_mapping as read

    return read(Path(path))


def load_project_file(path) -> Project:
    """Read and validate one project file.

    Parameters
    ----------
    path
        The project file.

    Returns
    -------
    Project
        The typed project.

    Raises
    ------
    ConfigError
        Every problem found, one line each as ``FILE: KEY: reason`` (repeated
        keys included); or one line when the file cannot be read or parsed.
    """
    from jfr_lib.config_check import ProjectChecker
    from jfr_lib.config_load import read_mapping as read

    path = Path(path).expanduser().absolute()
    problems = []
    data = read(path, problems)
    return ProjectChecker(path, problems).project(data)
