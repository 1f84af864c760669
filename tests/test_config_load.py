"""Reading project files: repeated keys are reported with their lines; a file that is not
UTF-8 text is one ConfigError naming it, in every format."""

from __future__ import annotations

import pytest
from test_job_cmd import run_main

from jfr_lib.config import load_project_file
from jfr_lib.errors import ConfigError

YAML_TWICE = """\
name: demo
workers:
  cluster:
    type: local
    work_dir: /tmp/a
  other:
    work_dir: /tmp/b
  cluster:
    type: local
    work_dir: /tmp/c
    max_jobs: 2
    max_jobs: 3
"""


def test_a_repeated_yaml_key_is_reported_with_both_lines(tmp_path):
    path = tmp_path / "demo.yaml"
    path.write_text(YAML_TWICE)
    with pytest.raises(ConfigError) as err:
        load_project_file(path)
    assert str(err.value).splitlines() == [
        f"{path}: workers.cluster: repeated key (line 8; first on line 3): only one may stay",
        f"{path}: workers.cluster.max_jobs: repeated key (line 12; first on line 11): only one may stay",
    ]


def test_yaml_merge_keys_are_no_repetition(tmp_path):
    path = tmp_path / "demo.yaml"
    path.write_text("metadata: &d\n  type: local\n  work_dir: /tmp/a\n"
                    "workers:\n  w:\n    <<: *d\n    work_dir: /tmp/b\n")  # fmt: skip
    assert load_project_file(path).workers["w"].work_dir == "/tmp/b"


def test_a_repeated_json_key_is_reported(tmp_path):
    path = tmp_path / "demo.json"
    path.write_text('{"workers": {"w": {"work_dir": "/tmp/a"}, "w": {"work_dir": "/tmp/b"}}}')
    with pytest.raises(ConfigError) as err:
        load_project_file(path)
    assert str(err.value) == f"{path}: workers.w: repeated key: only one may stay"


def test_a_repeated_toml_key_is_refused(tmp_path):
    path = tmp_path / "demo.toml"
    path.write_text('[workers.w]\nwork_dir = "/tmp/a"\n[workers.w]\nwork_dir = "/tmp/b"\n')
    with pytest.raises(ConfigError, match=r"demo.toml: not valid TOML: .*line 3"):
        load_project_file(path)


LATIN1 = {
    "yaml": "name: demo\n# café\nworkers:\n  w:\n    work_dir: /tmp/a\n",
    "toml": 'name = "demo"\n# café\n[workers.w]\nwork_dir = "/tmp/a"\n',
    "json": '{"name": "demo", "metadata": {"place": "café"}, "workers": {"w": {"work_dir": "/tmp/a"}}}',
}


@pytest.mark.parametrize("suffix", ["yaml", "toml", "json"])
def test_a_latin1_file_is_one_config_error_naming_it(tmp_path, capsys, suffix):
    path = tmp_path / f"demo.{suffix}"
    path.write_bytes(LATIN1[suffix].encode("latin-1"))
    with pytest.raises(ConfigError) as err:
        load_project_file(path)
    where = "line 2, column 6" if suffix != "json" else "line 1, column 44"
    assert str(err.value) == f"{path}: not UTF-8 text (byte 0xe9 at {where}): save it as UTF-8"
    code, _, stderr = run_main(capsys, "project", "validate", str(path))
    assert code == 2 and stderr == f"jfr: error: {err.value}\n"


@pytest.mark.parametrize("suffix", ["yaml", "toml", "json"])
@pytest.mark.parametrize("content", [b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\xff\xfe", b"\x00" * 64 + b"ok",
                                     bytes(range(256))])  # fmt: skip
def test_a_binary_file_is_one_config_error_naming_it(tmp_path, capsys, suffix, content):
    path = tmp_path / f"demo.{suffix}"
    path.write_bytes(content)
    code, _, stderr = run_main(capsys, "project", "validate", str(path))
    assert code == 2
    assert stderr.startswith(f"jfr: error: {path}: ") and stderr.count("\n") == 1
    assert "internal error" not in stderr


def test_a_syntax_error_does_not_quote_the_file(tmp_path):
    path = tmp_path / "demo.yaml"
    path.write_text("workers:\n  w:\n    work_dir: /tmp/a\n    password: [hunter2\n")
    with pytest.raises(ConfigError) as err:
        load_project_file(path)
    text = str(err.value)
    assert text.startswith(f"{path}: not valid YAML: line ") and "\n" not in text
    assert "hunter2" not in text
