"""The project for the commands that control a runner, even from an invalid project file.

status, stop, kill and logs must keep working when the project file has become
invalid while a runner runs (the runner itself keeps the last valid one):
:func:`lenient_project` reads what they need (``base_dir``, ``log_dir``,
``queue``) from what can still be read of the file.
"""

from __future__ import annotations

import json
import re
from pathlib import Path


def lenient_project(name: str | None = None) -> tuple:
    """The project for the commands that control a runner, even from an invalid file.

    Returns
    -------
    (Project, ConfigError or None)
        The validated project and None; or, when the file is invalid, a project
        holding only what these commands need (name, base_dir, log_dir, queue,
        read leniently) and the error, which the caller shows as a warning.

    Raises
    ------
    NotFoundError, ConfigError
        No project file can be chosen, or not even those keys can be read.
    """
    from jfr_lib.config import find_project_file, load_project_file
    from jfr_lib.errors import ConfigError

    path = Path(find_project_file(name)).expanduser().absolute()
    try:
        return load_project_file(path), None
    except ConfigError as exc:
        problem = exc
    try:
        return _partial_project(path), problem
    except (ConfigError, OSError):
        raise problem from None


def _partial_project(path: Path):
    """A project of the keys the runner commands need, checked as a full load checks them.

    They are written alone (with a placeholder worker) into a file of the same
    name in a private temporary folder, and that file is loaded: the checks stay
    those of :mod:`jfr_lib.config`, whatever the rest of the real file holds.
    """
    import tempfile

    from jfr_lib.config import load_project_file, read_mapping
    from jfr_lib.errors import ConfigError

    try:
        data = read_mapping(path)
    except ConfigError:
        data = _scan(path)
    keys = {k: data[k] for k in ("base_dir", "log_dir", "queue") if data.get(k) is not None}
    keys.update(name=path.stem, workers={"placeholder": {"type": "local", "work_dir": "/"}})
    with tempfile.TemporaryDirectory(prefix="jfr-") as folder:
        alone = Path(folder) / f"{path.stem}.json"
        alone.write_text(json.dumps(keys, default=str))
        project = load_project_file(alone)
    project.path, project.workers = path, {}
    return project


def _scan(path: Path) -> dict:
    """The top-level keys that still parse in a file that does not parse as a whole.

    YAML and TOML are cut into top-level blocks (a key at the start of a line, a
    ``[table]``), each parsed alone, line by line when the block fails; JSON is
    read value by value after each key wanted.
    """
    text = path.read_text(errors="replace")
    found = {}
    if path.suffix == ".json":
        decoder = json.JSONDecoder()
        for key in ("base_dir", "log_dir", "queue"):
            m = re.search(rf'"{key}"\s*:\s*', text)
            if m:
                try:
                    found[key] = decoder.raw_decode(text, m.end())[0]
                except ValueError:
                    pass
        return found
    if path.suffix == ".toml":
        try:
            import tomllib
        except ImportError:  # Python 3.10
            import tomli as tomllib
        blocks, load, errors = re.split(r"(?m)^(?=\[)", text), tomllib.loads, (tomllib.TOMLDecodeError,)
    else:
        import yaml

        blocks, load, errors = re.split(r"(?m)^(?=[^\s#\-\[{][^\n]*:)", text), yaml.safe_load, (yaml.YAMLError,)
    for block in blocks:
        try:
            parts = [load(block)]
        except errors:
            parts = [_load_lines(block, load, errors)] if path.suffix == ".toml" else []
        for data in parts:
            _merge(found, data)
    return found


def _merge(into: dict, data) -> None:
    """Add the keys of ``data`` missing from ``into``, a table split over blocks (``[queue.store]``) joined."""
    for key, value in data.items() if isinstance(data, dict) else ():
        if isinstance(value, dict) and isinstance(into.get(key), dict):
            _merge(into[key], value)
        else:
            into.setdefault(key, value)


def _load_lines(block: str, load, errors) -> dict:
    """The lines of a TOML block that parse alone, each under the block's table header."""
    lines = block.splitlines()
    header = lines[0] if lines and lines[0].startswith("[") else ""
    out = {}
    for line in lines[bool(header):]:
        try:
            _merge(out, load(f"{header}\n{line}"))
        except errors:
            continue
    return out
