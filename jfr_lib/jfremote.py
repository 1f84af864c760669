"""jobflow-remote's side of an import: where its queue lives, what its run folders hold.

:func:`source_from_project` reads the ``queue`` section of a jobflow-remote
project file and :func:`connect` reaches that MongoDB database.

jobflow-remote's worker (``jf execution run``) writes ``jfremote_out.json`` as it
starts (the start time) and again as it ends (times, then the response or the
error as a traceback), and the job's outputs in ``remote_job_data.json`` (and
``additional_store_<name>.json``), maggma JSON stores holding a list of documents.
jfr's complete step reads ``jfr_out.json`` and ``jfr_store.json`` instead. A job
whose jobflow-remote run ended is brought over by writing jfr's two files from
these into a folder of the project's data folder: jfr then completes the job as
one of its own (outputs stored, response applied, children released).
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path

from jfr_lib.errors import ConfigError, QueueDBError
from jfr_lib.rundir import OUT_FILE, STORE_FILE, StoreEncoder, write_atomic

#: jobflow-remote's collection names when its project file does not name others.
DEFAULT_COLLECTIONS = {"jobs": "jobs", "flows": "flows", "aux": "jf_auxiliary"}
OUT_NAME = "jfremote_out.json"
STORE_NAME = "remote_job_data"
ADDITIONAL_NAME = "additional_store_{}"


def source_from_project(path) -> dict:
    """Where a jobflow-remote project file keeps its queue (its ``queue`` section).

    Parameters
    ----------
    path
        The project file (YAML, TOML or JSON).

    Returns
    -------
    dict
        ``uri``, ``database``, ``options`` (of the MongoDB client), the collection
        names ``jobs``, ``flows``, ``aux``, and ``db_id_prefix``.

    Raises
    ------
    ConfigError
        The file cannot be read, or its ``queue.store`` is not a MongoDB store with a database.
    """
    from urllib.parse import quote_plus

    from jfr_lib.config_load import read_mapping

    path = Path(path).expanduser()
    queue = read_mapping(path).get("queue") or {}
    store = queue.get("store") if isinstance(queue, dict) else None
    if not isinstance(store, dict) or not store.get("database"):
        raise ConfigError("no queue.store with a database: not a jobflow-remote project file", path, "queue.store")
    kind = store.get("type") or store.get("@class")
    if kind == "MongoURIStore":
        uri = store.get("uri")
    elif kind == "MongoStore":
        auth = ""
        if store.get("username"):
            auth = f"{quote_plus(str(store['username']))}:{quote_plus(str(store.get('password', '')))}@"
        uri = f"mongodb://{auth}{store.get('host', 'localhost')}:{store.get('port', 27017)}/"
    else:
        raise ConfigError("must be a MongoStore or MongoURIStore", path, "queue.store.type")
    options = dict(store.get("mongoclient_kwargs") or {})
    if store.get("auth_source"):
        options["authSource"] = str(store["auth_source"])
    return {"uri": uri, "database": store["database"], "options": options,
            "jobs": store.get("collection_name") or DEFAULT_COLLECTIONS["jobs"],
            "flows": queue.get("flows_collection") or DEFAULT_COLLECTIONS["flows"],
            "aux": queue.get("auxiliary_collection") or DEFAULT_COLLECTIONS["aux"],
            "db_id_prefix": queue.get("db_id_prefix")}  # fmt: skip


def connect(uri: str, timeout: float = 5.0, options=None):
    """A pymongo client for jobflow-remote's queue, checked with a ping.

    Parameters
    ----------
    uri
        The MongoDB URI.
    timeout
        Seconds to wait for the server.
    options
        More options of ``pymongo.MongoClient``.

    Raises
    ------
    QueueDBError
        The URI is not valid or the server does not answer (one line, password masked).
    """
    from jfr_lib.redact import mask_text

    try:
        import pymongo
    except ImportError:
        raise QueueDBError("reading jobflow-remote's queue needs pymongo: pip install pymongo") from None
    ms = int(timeout * 1000)
    try:
        client = pymongo.MongoClient(uri, **{"serverSelectionTimeoutMS": ms, "connectTimeoutMS": ms, **(options or {})})
        client.admin.command("ping")
    except Exception as exc:  # InvalidURI, ServerSelectionTimeoutError, OperationFailure...
        reason = " ".join(str(exc).split(", Timeout:")[0].split())[:200]
        raise QueueDBError(f"{mask_text(uri)}: cannot read jobflow-remote's queue: {mask_text(reason)}") from None
    return client


def ended_output(host, run_dir: str) -> dict | None:
    """jobflow-remote's output of a run that has ended, or None.

    Parameters
    ----------
    host
        The worker's :class:`jfr_lib.hosts.Host`.
    run_dir
        The job's run folder on that host.

    Returns
    -------
    dict or None
        The content of ``jfremote_out.json`` once it holds the end time; None while
        the job waits in its queue or runs (the file is missing, holds only the
        start time, or is being rewritten).

    Raises
    ------
    HostError
        The host cannot be reached or the file cannot be read.
    """
    try:
        text = host.read_text(f"{run_dir}/{OUT_NAME}")
    except FileNotFoundError:
        return None
    try:
        out = json.loads(text)
    except ValueError:  # rewritten whole at the end, not atomically: caught half written
        return None
    return out if isinstance(out, dict) and "end_time" in out else None


def write_jfr_files(host, run_dir: str, output: dict | None, folder, store_names=()) -> str:
    """Write ``jfr_out.json`` (and ``jfr_store.json``) into ``folder`` for an ended run.

    Parameters
    ----------
    host
        The worker's host, from which the store files are fetched.
    run_dir
        The run folder on that host.
    output
        What :func:`ended_output` returned; None when the run ended without it.
    folder
        A local folder (created private); the store files fetched are kept there.
    store_names
        The additional stores of the project's JobStore.

    Returns
    -------
    str
        ``COMPLETED`` or ``FAILED``: what jfr's complete step will make of the job.
    """
    from jfr_lib.private import private_dir

    folder = private_dir(folder)
    output = output or {}
    result = {"start_time": _time(output.get("start_time")), "end_time": _time(output.get("end_time")),
              "state": "FAILED"}  # fmt: skip
    if not output:
        result["error"] = f"jobflow-remote's run ended without writing {OUT_NAME}"
    elif output.get("error"):
        result.update(error=last_line(output["error"]), traceback=str(output["error"]))
    elif not output.get("response"):
        result["error"] = f"{OUT_NAME} holds no response: the job was likely killed before completing"
    else:
        docs = fetch_store(host, run_dir, folder, STORE_NAME)
        if docs is None:
            result["error"] = (f"the job's output store {STORE_NAME}.json is missing in {run_dir} (jfr reads "
                               "jobflow-remote's JSON output stores only)")  # fmt: skip
        else:
            additional = {n: fetch_store(host, run_dir, folder, ADDITIONAL_NAME.format(n)) or [] for n in store_names}
            write_atomic(str(Path(folder) / STORE_FILE),
                         json.dumps({"docs": docs, "additional": additional}, cls=StoreEncoder))  # fmt: skip
            result.update(state="COMPLETED", response=convert_response(output["response"]))
    write_atomic(str(Path(folder) / OUT_FILE), json.dumps(result, cls=StoreEncoder))
    return result["state"]


def last_line(text) -> str:
    """The line that says what went wrong: the last one of a traceback."""
    lines = [line.strip() for line in str(text).strip().splitlines() if line.strip()]
    return lines[-1] if lines else str(text)


def _time(value) -> str | None:
    """A time as jfr stores it (ISO 8601) from monty's serialized ``datetime``."""
    if isinstance(value, dict):
        from monty.json import MontyDecoder

        value = MontyDecoder().process_decoded(value)
    return value.isoformat() if hasattr(value, "isoformat") else value


def fetch_store(host, run_dir: str, folder, name: str) -> list | None:
    """The documents of a JSON store file of the run folder (plain or gzipped); None when missing."""
    for suffix in (".json", ".json.gz"):
        local = Path(folder) / f"{name}{suffix}"
        try:
            host.get(f"{run_dir}/{name}{suffix}", str(local))
        except FileNotFoundError:
            continue
        raw = local.read_bytes()
        text = (gzip.decompress(raw) if suffix.endswith(".gz") else raw).decode()
        if "$oid" in text or "$date" in text:  # written by bson's json_util
            from bson import json_util

            docs = json_util.loads(text)
        else:
            docs = json.loads(text) if text.strip() else []
        docs = docs if isinstance(docs, list) else [docs]
        for doc in docs:
            doc.pop("_id", None)
        return docs
    return None


def convert_response(response: dict) -> dict:
    """jobflow-remote's serialized ``Response`` as jfr's worker describes one.

    The jobs of a replace, addition or detour are rebuilt without importing their
    code (the functions stay serialized), as jobflow-remote's runner does, so that
    the flow's graph gives their parents.
    """
    from jobflow import Response

    from jfr_lib.worker import describe_response

    dynamic = {k: _partial(response[k]) if response.get(k) else None for k in ("replace", "addition", "detour")}
    return describe_response(Response(stored_data=response.get("stored_data"),
                                      stop_children=bool(response.get("stop_children")),
                                      stop_jobflow=bool(response.get("stop_jobflow")), **dynamic))  # fmt: skip


def _partial(data: dict):
    """A jobflow ``Flow`` or ``Job`` from its dict, its functions and arguments left serialized."""
    from jobflow import Flow, Job
    from monty.json import MontyDecoder

    decode = MontyDecoder().process_decoded
    init = {k: v for k, v in data.items() if not k.startswith("@")}
    if data.get("@class") == "Flow":
        jobs = [_partial(j) for j in init.pop("jobs", [])]
        for key in ("output", "order"):
            if key in init:
                init[key] = decode(init[key])
        return Flow(jobs=jobs, **init)
    init["config"] = decode(init.get("config"))
    return Job(**init)
