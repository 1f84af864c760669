"""Secrets stay out of what jfr prints: mask_text, mask_mapping, `project show`, errors."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from test_job_cmd import run_main

from jfr_lib.redact import is_secret_key, mask_mapping, mask_text


@pytest.mark.parametrize("text, masked", [
    ("mongodb://user:s3cret@127.0.0.1:27999/db: cannot reach", "mongodb://user:***@127.0.0.1:27999/db: cannot reach"),
    ("mongodb+srv://u:p%40ss@cluster0.example.net/?retryWrites=true", "mongodb+srv://u:***@cluster0.example.net/"
     "?retryWrites=true"),
    ("mongodb://u:p@ss@host/db", "mongodb://u:***@host/db"),  # an @ the user forgot to escape
    ("see https://a:b@c.org/x and redis://:pw@cache:6379", "see https://a:***@c.org/x and redis://:***@cache:6379"),
    ("password=abc host=x", "password=*** host=x"),
    ("MongoClient(host='h', password='pw x', port=1)", "MongoClient(host='h', password='***', port=1)"),
    ('{"password": "x", "user": "u", "token": 12, "key": "task_id"}',
     '{"password": "***", "user": "u", "token": "***", "key": "task_id"}'),
    ("{'aws_secret_access_key': 'abc/def', 'aws_access_key_id': 'AKIAID'}",
     "{'aws_secret_access_key': '***', 'aws_access_key_id': 'AKIAID'}"),
    ("AccountName=acc;AccountKey=abc==;EndpointSuffix=core", "AccountName=acc;AccountKey=***;EndpointSuffix=core"),
    ("export MP_API_KEY=abcd; export OMP_NUM_THREADS=4", "export MP_API_KEY=***; export OMP_NUM_THREADS=4"),
    ("?authSource=admin&password=zz&ssl=true", "?authSource=admin&password=***&ssl=true"),
])  # fmt: skip
def test_mask_text_hides_passwords_and_only_them(text, masked):
    assert mask_text(text) == masked
    assert mask_text(masked) == masked  # idempotent


@pytest.mark.parametrize("text", [
    "mongodb://user@host/db", "mongodb://h1:27017,h2:27017/?replicaSet=rs", "key_filename=/home/me/.ssh/id",
    "workers.w.password: must be a string", '"password": null', "passphrase=None", "x" * 300,
])  # fmt: skip
def test_mask_text_leaves_the_rest(text):
    assert mask_text(text) == text


def test_which_keys_are_secret():
    secret = ["password", "passphrase", "secret_key", "aws_secret_access_key", "aws_session_token", "token",
              "client_secret", "private_key", "pkey", "apiKey", "MP_API_KEY", "AccountKey", "GITHUB_TOKEN",
              "DB_PASS", "credentials", "ssh.password"]  # fmt: skip
    plain = ["key", "key_filename", "private_key_file", "public_key", "aws_access_key_id", "username", "host",
             "uri", "s3_resource_kwargs", "connect_kwargs", "token_url", "sort_key", "collection_name", "compass"]
    assert [k for k in secret if not is_secret_key(k)] == []
    assert [k for k in plain if is_secret_key(k)] == []


def test_mask_mapping_walks_store_specs():
    spec = {"docs_store": {"type": "MongoURIStore", "uri": "mongodb://u:pw1@h/db", "collection_name": "outputs"},
            "additional_stores": {"data": {
                "type": "S3Store", "bucket": "b", "key": "fs_id",
                "s3_resource_kwargs": {"aws_access_key_id": "AKIA", "aws_secret_access_key": "pw2"},
                "index": {"type": "MongoStore", "host": "h", "username": "bob", "password": "pw3", "key": "fs_id"},
                "ssh_tunnel": {"username": "t", "password": "pw4", "private_key": "pw5"}}},
            "flags": [{"use_password": True, "password": None, "token": ""}]}  # fmt: skip
    masked = mask_mapping(spec)
    text = json.dumps(masked)
    assert not any(f"pw{i}" in text for i in range(1, 6))
    assert masked["docs_store"]["uri"] == "mongodb://u:***@h/db"
    s3 = masked["additional_stores"]["data"]
    assert s3["s3_resource_kwargs"] == {"aws_access_key_id": "AKIA", "aws_secret_access_key": "***"}
    assert s3["key"] == "fs_id" and s3["index"]["username"] == "bob"
    assert masked["flags"] == spec["flags"]  # nothing to hide in a flag or an empty value
    assert spec["docs_store"]["uri"] == "mongodb://u:pw1@h/db"  # a copy: the original is untouched


def test_importing_it_loads_only_the_standard_library():
    code = ("import sys; before = set(sys.modules); import jfr_lib.redact; "
            "print(' '.join(sorted(set(sys.modules) - before)))")  # fmt: skip
    new = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert [m for m in new if m.split(".")[0] not in sys.stdlib_module_names] == ["jfr_lib", "jfr_lib.redact"]


SECRET_PROJECT = """\
name: test
base_dir: {base}
workers:
  local:
    type: local
    work_dir: {work}
  hpc:
    type: remote
    host: login.example
    user: me
    work_dir: /scratch/me
    password: pw-worker
    key_filename: /home/me/.ssh/id_ed25519
    passphrase: pw-phrase
    connect_kwargs: {{pkey: pw-pkey, password: pw-kwargs}}
    gateway: {{host: jump.example, password: pw-gateway}}
exec_config:
  mp:
    export: {{MP_API_KEY: pw-apikey, OMP_NUM_THREADS: "2"}}
    pre_run: export DB_PASSWORD=pw-preRun
queue:
  store:
    type: MongoStore
    host: db.example
    database: jfr
    username: bob
    password: pw-queue
    collection_name: jobs
jobstore:
  docs_store: {{type: MongoURIStore, uri: "mongodb://bob:pw-docs@db.example/out", collection_name: outputs}}
  additional_stores:
    data:
      type: S3Store
      bucket: blobs
      s3_resource_kwargs: {{aws_access_key_id: AKIAPLAIN, aws_secret_access_key: pw-s3}}
      index: {{type: MongoStore, host: db.example, database: jfr, collection_name: idx, password: pw-index}}
metadata: {{token: pw-meta}}
"""


@pytest.mark.parametrize("json_flag", [[], ["--json"]])
def test_project_show_masks_every_secret(penv, capsys, json_flag):
    penv.path.write_text(SECRET_PROJECT.format(base=penv.base, work=penv.work))
    code, out, err = run_main(capsys, "project", "show", *json_flag)
    assert code == 0, err
    assert "pw-" not in out
    for shown in ("/home/me/.ssh/id_ed25519", "AKIAPLAIN", "mongodb://bob:***@db.example", "jump.example",
                  "OMP_NUM_THREADS", "DB_PASSWORD=***"):  # fmt: skip
        assert shown in out


def test_validation_errors_do_not_show_secrets(penv, capsys):
    penv.path.write_text(SECRET_PROJECT.format(base=penv.base, work=penv.work).replace("type: remote", "type: x"))
    code, _, err = run_main(capsys, "project", "validate")
    assert code == 2 and "workers.hpc.type: must be one of local, remote" in err
    assert "pw-" not in err
