"""Keep secrets out of what jfr prints, logs and stores: passwords become ``***``.

Two functions, standard library only (``re``), so the command line can import
this module on every error at no cost:

- :func:`mask_text` for any text: an error message, a log line, a traceback.
  It masks the password of a URI (``mongodb://user:SECRET@host`` ->
  ``mongodb://user:***@host``), ``KEY=VALUE`` pairs and quoted
  ``"KEY": VALUE`` pairs (JSON, a Python dict's repr) whose key looks secret.
- :func:`mask_mapping` for configuration data (a project file, a maggma store
  spec): the values of keys that look secret become ``***``, recursively, and
  every other string goes through :func:`mask_text`.

A key looks secret (:func:`is_secret_key`) when, split into words (``-``, ``_``,
``.``, camelCase), it names a password, passphrase, secret, token, credential,
private key, API key, account key and the like: ``password``, ``aws_secret_access_key``,
``secret_key``, ``aws_session_token``, ``client_secret``, ``pkey``, ``apiKey``,
``MP_API_KEY``, ``AccountKey``. It does not when it names where such a thing
lives or something public: ``key_filename``, ``private_key_file``, ``token_url``,
``public_key``, ``aws_access_key_id``, nor maggma's ``key`` (the name of a
document field). Boolean values (``use_password: true``) and empty ones are
kept: they reveal nothing.

What stays visible: a ``key: value`` pair without quotes in free text, because
jfr's own errors read ``FILE: workers.w.password: must be a string``; the
project loader therefore never quotes the lines of a file in its errors.

Both calls are meant to be trivial to add where text leaves the program::

    # the command line's last resort, jfr_lib.cli.main
    from jfr_lib.redact import mask_text
    print(f"jfr: error: {mask_text(str(exc))}", file=sys.stderr)

    # a logging handler: mask the formatted record, message and traceback alike
    class MaskingFormatter(logging.Formatter):
        def format(self, record):
            return mask_text(super().format(record))

Both are idempotent: masking masked text changes nothing.
"""

from __future__ import annotations

import re

MASK = "***"

#: Words that make a key secret wherever they appear in it.
SECRET_WORDS = frozenset({
    "password", "passwd", "pwd", "pass", "passphrase", "secret", "secrets", "token", "tokens",
    "credential", "credentials", "pkey", "privkey", "privatekey", "apikey", "sas", "authorization",
    "cookie", "bearer",
})  # fmt: skip
#: Pairs of consecutive words that make a key secret (``private_key``, ``MP_API_KEY``).
SECRET_PAIRS = frozenset({
    ("private", "key"), ("api", "key"), ("account", "key"), ("access", "signature"), ("signing", "key"),
    ("encryption", "key"), ("master", "key"), ("auth", "key"), ("ssh", "key"), ("client", "key"),
})  # fmt: skip
#: A key ending with one of these names where a secret lives or what it is, not the secret.
NOT_SECRET_LAST = frozenset({
    "file", "files", "filename", "filenames", "path", "paths", "dir", "url", "uri", "id", "name", "type",
    "field", "fields", "expiry", "expires", "expiration", "prompt", "command", "cmd", "env", "length",
})  # fmt: skip

# patterns compile on first use (re caches them): importing this module costs nothing
_CAMEL = r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])"
_SPLIT = r"[^a-z0-9]+"
# scheme://user:PASSWORD@host; the password runs to the last @ before a space, a slash or a quote
_URI = r"(\b[A-Za-z][A-Za-z0-9+.\-]*://[^:@/\s'\"<>]*:)([^\s/'\"<>]*)(@)"
_VALUE = r"(\"(?:[^\"\\\n]|\\.)*\"|'(?:[^'\\\n]|\\.)*'|[^\s&;,'\"}\])]+)"
# KEY=VALUE (a URL query, a connection string, a shell line, a repr of keyword arguments)
_ASSIGN = r"(?<![\w.\-])([A-Za-z_][\w.\-]*)(\s*=\s*)" + _VALUE
# "KEY": VALUE and 'KEY': VALUE (JSON, the repr of a dict)
_QUOTED = r"([\"'])([^\"'\n]{1,100})\1(\s*:\s*)" + _VALUE
_HARMLESS = frozenset({"", "null", "none", "true", "false", "***", "'***'", '"***"', "''", '""'})


def is_secret_key(key) -> bool:
    """Whether a key's value is a secret (a password, a token, a private key...).

    Parameters
    ----------
    key
        A mapping key, an environment variable name, a ``KEY`` of ``KEY=VALUE``;
        a dotted path is judged by its last part.

    Returns
    -------
    bool
        True for ``password``, ``aws_secret_access_key``, ``MP_API_KEY``...;
        False for ``key``, ``key_filename``, ``public_key``, ``aws_access_key_id``...
    """
    if not isinstance(key, str):
        return False
    last = key.rsplit(".", 1)[-1]
    words = [w for w in re.split(_SPLIT, re.sub(_CAMEL, "_", last).lower()) if w]
    if not words or "public" in words or words[-1] in NOT_SECRET_LAST:
        return False
    return any(w in SECRET_WORDS for w in words) or any(p in SECRET_PAIRS for p in zip(words, words[1:]))


def _masked_value(value: str) -> str:
    if value.strip("'\"").lower() in _HARMLESS:
        return value
    quote = value[0] if value[:1] in ("'", '"') else ""
    return f"{quote}{MASK}{quote}"


def _assign(match) -> str:
    key, sep, value = match.groups()
    return f"{key}{sep}{_masked_value(value)}" if is_secret_key(key) else match.group(0)


def _quoted(match) -> str:
    quote, key, sep, value = match.groups()
    if not is_secret_key(key):
        return match.group(0)
    masked = _masked_value(value)
    if masked == MASK:  # a bare number or word: keep the text valid JSON
        masked = f"{quote}{MASK}{quote}"
    return f"{quote}{key}{quote}{sep}{masked}"


def mask_text(text) -> str:
    """The text with the secrets it holds replaced by ``***``.

    Parameters
    ----------
    text
        Any text (other objects are converted with ``str``).

    Returns
    -------
    str
        ``scheme://user:***@host`` for a URI with a password; ``KEY=***`` and
        ``"KEY": "***"`` where KEY looks secret (:func:`is_secret_key`).
    """
    text = text if isinstance(text, str) else str(text)
    if "://" in text:
        text = re.sub(_URI, lambda m: m.group(1) + (m.group(2) and MASK) + m.group(3), text)
    if "=" in text:
        text = re.sub(_ASSIGN, _assign, text)
    if ":" in text:
        text = re.sub(_QUOTED, _quoted, text)
    return text


def mask_mapping(obj):
    """A copy of configuration data with its secrets replaced by ``***``.

    Parameters
    ----------
    obj
        A mapping, a list or tuple, a string, or anything else (returned as is).

    Returns
    -------
    object
        Mappings (as dicts) and lists/tuples copied; the value of a key that
        looks secret (:func:`is_secret_key`) is ``***`` unless it is empty,
        None or a boolean; every other string goes through :func:`mask_text`.
    """
    if isinstance(obj, dict) or (hasattr(obj, "items") and hasattr(obj, "keys")):
        out = {}
        for key, value in obj.items():
            if is_secret_key(key) and value not in (None, "", {}, []) and not isinstance(value, bool):
                out[key] = MASK
            else:
                out[key] = mask_mapping(value)
        return out
    if isinstance(obj, list):
        return [mask_mapping(v) for v in obj]
    if isinstance(obj, tuple):
        return tuple(mask_mapping(v) for v in obj)
    if isinstance(obj, str):
        return mask_text(obj)
    return obj
