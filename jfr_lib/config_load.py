"""Reading a project file (YAML, TOML or JSON) into a plain mapping.

A repeated key is reported, not silently won by its last occurrence: the YAML
loader walks the document's nodes (with the line of each occurrence), JSON
objects are built through ``object_pairs_hook``, and TOML refuses them itself.
A file that is not UTF-8 text (a binary file, a Latin-1 file) gives one line
naming it. Errors never quote the file's lines, which may hold a password.

Only the standard library (and PyYAML for YAML files) is imported: the command
line reads a project on every call.
"""

from __future__ import annotations

import json
from pathlib import Path

from jfr_lib.errors import ConfigError


def read_mapping(path: Path, problems: list | None = None) -> dict:
    """Read a YAML, TOML or JSON file into a dict.

    Parameters
    ----------
    path
        The file; its suffix chooses the format (YAML unless ``.toml`` or ``.json``).
    problems
        A list to which repeated keys are appended as ``(key, reason)``; without
        one, a repeated key raises.

    Returns
    -------
    dict
        The top-level mapping (empty for an empty file).

    Raises
    ------
    ConfigError
        The file cannot be read, is not UTF-8 text, is not valid in its format,
        or does not hold a mapping (one line naming the file); or it repeats a
        key and no ``problems`` list was given (one line per repeated key).
    """
    text = _read_text(path)
    kind = {".json": "JSON", ".toml": "TOML"}.get(path.suffix, "YAML")
    if "\x00" in text:
        raise ConfigError(f"a binary file, not {kind} text", path)
    found = []
    try:
        if kind == "JSON":
            data = _load_json(text, found)
        elif kind == "TOML":
            try:
                import tomllib
            except ImportError:  # Python 3.10
                import tomli as tomllib
            data = tomllib.loads(text)
        else:
            data = _load_yaml(text, found)
    except RecursionError:
        raise ConfigError(f"not valid {kind}: nested too deeply", path) from None
    except Exception as exc:  # each parser has its own error classes
        raise ConfigError(f"not valid {kind}: {_parse_error(exc)}", path) from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError("must hold a mapping of keys", path)
    if found and problems is None:
        raise ConfigError(found[0][1], path, found[0][0], more=found[1:])
    if problems is not None:
        problems.extend(found)
    return data


def _read_text(path: Path) -> str:
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read: {exc.strerror or exc}", path) from None
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        column = exc.start - (raw.rfind(b"\n", 0, exc.start) + 1) + 1
        raise ConfigError(f"not UTF-8 text (byte 0x{raw[exc.start]:02x} at line {line}, column {column}): "
                          "save it as UTF-8", path) from None  # fmt: skip


def _parse_error(exc) -> str:
    """The parser's reason and position, without the quoted line (it may hold a secret)."""
    from jfr_lib.redact import mask_text

    problem = getattr(exc, "problem", None)
    mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
    if problem is not None and mark is not None:  # PyYAML's MarkedYAMLError
        context = getattr(exc, "context", None)
        text = f"line {mark.line + 1}, column {mark.column + 1}: {f'{context}: ' if context else ''}{problem}"
    elif isinstance(exc, json.JSONDecodeError):
        text = f"line {exc.lineno}, column {exc.colno}: {exc.msg}"
    else:
        text = str(exc)
    return mask_text(" ".join(text.split()))


def _path(parent: str, key) -> str:
    if isinstance(key, int):
        return f"{parent}[{key}]"
    return f"{parent}.{key}" if parent else str(key)


def _load_yaml(text: str, found: list):
    import yaml

    base = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    loader = base(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        _yaml_duplicates(node, "", found, set())
        return loader.construct_document(node)
    finally:
        loader.dispose()


def _yaml_duplicates(node, where: str, found: list, seen_nodes: set) -> None:
    """Append ``(key, reason)`` for each key that a mapping repeats, with both lines."""
    import yaml

    if id(node) in seen_nodes:  # an alias met again (or a recursive document)
        return
    seen_nodes.add(id(node))
    if isinstance(node, yaml.MappingNode):
        first = {}
        for key_node, value_node in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":  # `<<: *defaults`: later keys override on purpose
                _yaml_duplicates(value_node, where, found, seen_nodes)
                continue
            if isinstance(key_node, yaml.ScalarNode):
                key = (key_node.tag, key_node.value)
                line = key_node.start_mark.line + 1
                if key in first:
                    found.append((_path(where, key_node.value),
                                  f"repeated key (line {line}; first on line {first[key]}): "
                                  "only one may stay"))  # fmt: skip
                else:
                    first[key] = line
                _yaml_duplicates(value_node, _path(where, key_node.value), found, seen_nodes)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _yaml_duplicates(item, _path(where, i), found, seen_nodes)


class _Pairs(dict):
    """A JSON object that remembers which of its keys came more than once."""

    repeated: tuple = ()


def _pairs_hook(pairs):
    obj = _Pairs()
    repeated = []
    for key, value in pairs:
        if key in obj and key not in repeated:
            repeated.append(key)
        obj[key] = value
    obj.repeated = tuple(repeated)
    return obj


def _load_json(text: str, found: list):
    return _plain(json.loads(text, object_pairs_hook=_pairs_hook), "", found)


def _plain(obj, where: str, found: list):
    """Plain dicts again, reporting each repeated key of a JSON object."""
    if isinstance(obj, _Pairs):
        for key in obj.repeated:
            found.append((_path(where, key), "repeated key: only one may stay"))
        return {k: _plain(v, _path(where, k), found) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_plain(v, _path(where, i), found) for i, v in enumerate(obj)]
    return obj
