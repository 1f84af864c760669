"""Who may use the dashboard: the holder of its token, from the dashboard's own pages.

The server makes a random token when it starts and prints a URL carrying it.
The first visit with ``?token=...`` gets a session cookie (HttpOnly,
SameSite=Strict) and is redirected to the same address without the token, so the
token does not stay in the address bar or the history. Scripts may send
``Authorization: token TOKEN`` instead. Every other request is refused: 401
without a credential, 403 with a wrong one.

A request that changes something (any method but GET, HEAD and OPTIONS) must
also carry the page's CSRF value in the ``X-JFR-CSRF`` header, which a page of
another site can neither read nor send without a CORS preflight that is never
granted; a browser's ``Sec-Fetch-Site`` and ``Origin`` headers, when present,
must say the request comes from the dashboard itself.

When the server listens on a loopback address only, the ``Host`` header must
name a loopback host too (``localhost``, ``127.0.0.1``, ``[::1]``): a page of
another site that rebinds its own name to 127.0.0.1 is refused.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
from http.cookies import SimpleCookie
from urllib.parse import parse_qsl, urlencode

SAFE_METHODS = ("GET", "HEAD", "OPTIONS")
CSRF_HEADER = "x-jfr-csrf"
LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1", "[::1]")


def new_token() -> str:
    """A random token for the printed URL (256 bits)."""
    return secrets.token_urlsafe(32)


class Keys:
    """The values derived from a dashboard's token.

    Parameters
    ----------
    token
        The token printed in the URL.
    port
        The port the server listens on: it names the cookie, so that two
        dashboards on one host keep their own cookies.
    """

    def __init__(self, token: str, port: int):
        self.token = token
        self.cookie_name = f"jfr-gui-{port}"
        self.cookie_value = self._derive("cookie")
        self.csrf = self._derive("csrf")

    def _derive(self, purpose: str) -> str:
        return hmac.new(self.token.encode(), purpose.encode(), hashlib.sha256).hexdigest()

    def token_ok(self, given: str) -> bool:
        return hmac.compare_digest(given.encode(), self.token.encode())

    def cookie_ok(self, given: str) -> bool:
        return hmac.compare_digest(given.encode(), self.cookie_value.encode())

    def csrf_ok(self, given: str) -> bool:
        return hmac.compare_digest(given.encode(), self.csrf.encode())


def _headers(scope) -> dict:
    return {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}


def _host_name(host: str) -> str:
    """``localhost:8765`` -> ``localhost``; ``[::1]:8765`` -> ``[::1]``."""
    if host.startswith("["):
        return host.split("]", 1)[0] + "]"
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


class TokenMiddleware:
    """ASGI middleware that lets through only requests authenticated by the token.

    Parameters
    ----------
    app
        The application behind it.
    keys
        The dashboard's :class:`Keys`.
    loopback_only
        Check that the ``Host`` header names a loopback host.
    """

    def __init__(self, app, keys: Keys, loopback_only: bool = True):
        self.app = app
        self.keys = keys
        self.loopback_only = loopback_only

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = _headers(scope)
        method = scope["method"]
        if self.loopback_only and _host_name(headers.get("host", "")).lower() not in LOOPBACK_NAMES:
            await _deny(scope, send, 403, "this dashboard answers only to localhost, 127.0.0.1 or [::1]")
            return
        query = parse_qsl(scope.get("query_string", b"").decode("latin-1"), keep_blank_values=True)
        given = [v for k, v in query if k == "token"]
        if given:
            if not self.keys.token_ok(given[-1]):
                await _deny(scope, send, 403, "wrong token: open the URL that jfr gui printed")
                return
            if method in ("GET", "HEAD"):
                await self._redirect_with_cookie(scope, send, [(k, v) for k, v in query if k != "token"])
                return
        elif not self._authenticated(headers):
            if headers.get("authorization") or self._cookie(headers) is not None:
                await _deny(scope, send, 403, "wrong token: open the URL that jfr gui printed")
            else:
                await _deny(scope, send, 401, "this dashboard needs its token: open the URL that jfr gui printed")
            return
        if method not in SAFE_METHODS:
            problem = self._cross_site(headers)
            if problem:
                await _deny(scope, send, 403, f"cross-site request refused: {problem}")
                return
        await self.app(scope, receive, _secured(send))

    def _cookie(self, headers: dict) -> str | None:
        jar = SimpleCookie()
        try:
            jar.load(headers.get("cookie", ""))
        except Exception:  # a malformed Cookie header is no credential
            return None
        morsel = jar.get(self.keys.cookie_name)
        return None if morsel is None else morsel.value

    def _authenticated(self, headers: dict) -> bool:
        auth = headers.get("authorization", "")
        if auth[:6].lower() == "token ":
            return self.keys.token_ok(auth[6:].strip())
        cookie = self._cookie(headers)
        return cookie is not None and self.keys.cookie_ok(cookie)

    def _cross_site(self, headers: dict) -> str | None:
        """Why a request that changes something is not the dashboard's own, or None."""
        site = headers.get("sec-fetch-site")
        if site is not None and site not in ("same-origin", "none"):
            return f"Sec-Fetch-Site is {site}"
        origin = headers.get("origin")
        if origin is not None and origin.split("://", 1)[-1].lower() != headers.get("host", "").lower():
            return f"Origin {origin} is not this dashboard"
        if not self.keys.csrf_ok(headers.get(CSRF_HEADER, "")):
            return "missing or wrong X-JFR-CSRF header (reload the page)"
        return None

    async def _redirect_with_cookie(self, scope, send, rest: list) -> None:
        path = scope.get("raw_path") or scope["path"].encode("utf-8")
        path = b"/" + path.lstrip(b"/")  # never `//host/...`, which a browser reads as another site
        where = path + (f"?{urlencode(rest)}".encode("latin-1") if rest else b"")
        cookie = f"{self.keys.cookie_name}={self.keys.cookie_value}; Path=/; HttpOnly; SameSite=Strict"
        await send({"type": "http.response.start", "status": 303,
                    "headers": [(b"location", where), (b"set-cookie", cookie.encode()),
                                (b"cache-control", b"no-store"), (b"referrer-policy", b"no-referrer"),
                                (b"content-length", b"0")]})  # fmt: skip
        await send({"type": "http.response.body", "body": b""})


#: Sent with every answer: no framing, no third-party content, no referrer.
SECURITY_HEADERS = [
    (b"x-frame-options", b"DENY"),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"content-security-policy", b"default-src 'self'; img-src 'self' data:; style-src 'self'; "
                                  b"script-src 'self'; frame-ancestors 'none'; form-action 'self'"),
]  # fmt: skip


def _secured(send):
    async def wrapped(message):
        if message["type"] == "http.response.start":
            have = {k.lower() for k, _ in message.get("headers", [])}
            message = {**message, "headers": [*message.get("headers", []),
                                              *(h for h in SECURITY_HEADERS if h[0] not in have)]}  # fmt: skip
        await send(message)

    return wrapped


async def _deny(scope, send, status: int, message: str) -> None:
    """A refusal: JSON for the API, a short page for a browser."""
    if scope["path"].startswith("/api/"):
        body, kind = json.dumps({"error": message}).encode(), b"application/json"
    else:
        from html import escape

        body = (f"<!doctype html><meta charset=utf-8><title>jfr dashboard</title>"
                f"<h1>jfr dashboard</h1><p>{escape(message)}</p>").encode()  # fmt: skip
        kind = b"text/html; charset=utf-8"
    await _secured(send)({"type": "http.response.start", "status": status,
                          "headers": [(b"content-type", kind), (b"content-length", str(len(body)).encode()),
                                      (b"cache-control", b"no-store")]})  # fmt: skip
    await send({"type": "http.response.body", "body": body})
