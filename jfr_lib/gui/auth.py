"""Who may use the dashboard: the holder of its token, from the dashboard's own pages.

The server makes a random token when it starts and prints a URL carrying it.
The first visit with ``?token=...`` gets a session cookie (HttpOnly,
SameSite=Strict) and is redirected to the same address without the token, so the
token leaves the address bar. The browser's history still records the URL it was
redirected from: the token is valid until the server stops, and a new one is made
at each start. Scripts may send ``Authorization: token TOKEN`` instead. Every
other request is refused: 401 without a credential, 403 with a wrong one.
Only HTTP requests (and the server's ``lifespan`` events) are served: a
WebSocket or any other kind of connection is refused.

A request that changes something (any method but GET, HEAD and OPTIONS) must
come from the dashboard itself: a browser's ``Sec-Fetch-Site`` and ``Origin``
headers, when present, must say so. When it is authenticated by the cookie it
must also carry the page's CSRF value in the ``X-JFR-CSRF`` header, which a page
of another site can neither read nor send without a CORS preflight that is never
granted. A request authenticated by its ``Authorization`` header needs no CSRF
value: a browser sends that header across sites only after such a preflight,
and a page of another site cannot know the token.

When the server listens on a loopback address, the ``Host`` header must name a
loopback host too (``localhost``, ``127.0.0.1``, ``[::1]``, the address listened
on; any 127.x.y.z when it is one of those): a page of another site that rebinds
its own name to 127.0.0.1 is refused.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import json
import secrets
from http.cookies import SimpleCookie
from urllib.parse import parse_qsl, quote, urlencode

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


def _header_token(headers: dict) -> str | None:
    """The token of an ``Authorization: token TOKEN`` header, or None."""
    auth = headers.get("authorization", "")
    return auth[6:].strip() if auth[:6].lower() == "token " else None


def _ipv4_loopback(name: str) -> bool:
    try:
        address = ipaddress.ip_address(name)
    except ValueError:
        return False
    return address.version == 4 and address.is_loopback


def loopback_names(bound: str | None) -> tuple:
    """The ``Host`` names a dashboard listening on the loopback address ``bound`` answers to."""
    if not bound:
        return LOOPBACK_NAMES
    shown = f"[{bound.strip('[]')}]" if ":" in bound else bound
    return LOOPBACK_NAMES if shown.lower() in LOOPBACK_NAMES else (*LOOPBACK_NAMES, shown.lower())


def host_allowed(host: str, bound: str | None = None) -> bool:
    """Whether the ``Host`` header ``host`` names a loopback host this dashboard listens on.

    Parameters
    ----------
    host
        The ``Host`` header (a name or an address, with or without the port).
    bound
        The address the server listens on (a loopback one); any 127.x.y.z is
        accepted when it is one of those, as 127.0.0.1 is.
    """
    name = _host_name(host).lower()
    if name in loopback_names(bound):
        return True
    return _ipv4_loopback(name) and (bound is None or _ipv4_loopback(bound.strip("[]")) or bound == "localhost")


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
    bound
        The loopback address the server listens on (127.0.0.1 when not given).
    """

    def __init__(self, app, keys: Keys, loopback_only: bool = True, bound: str | None = None):
        self.app = app
        self.keys = keys
        self.loopback_only = loopback_only
        self.bound = bound

    async def __call__(self, scope, receive, send):
        if scope["type"] == "lifespan":  # the server's start and stop: no request, nothing to check
            await self.app(scope, receive, send)
            return
        if scope["type"] != "http":  # a WebSocket (refused before its handshake) or an unknown kind
            if scope["type"] == "websocket":
                await send({"type": "websocket.close", "code": 1008})
            return
        headers = _headers(scope)
        method = scope["method"]
        if self.loopback_only and not host_allowed(headers.get("host", ""), self.bound):
            extra = loopback_names(self.bound)[len(LOOPBACK_NAMES) :]
            names = "localhost, 127.0.0.1, [::1]" + "".join(f", {n}" for n in extra)
            await _deny(scope, send, 403, f"this dashboard answers only to {names}")
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
            problem = self._cross_site(headers, by_header=not given and _header_token(headers) is not None)
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
        token = _header_token(headers)
        if token is not None:
            return self.keys.token_ok(token)
        cookie = self._cookie(headers)
        return cookie is not None and self.keys.cookie_ok(cookie)

    def _cross_site(self, headers: dict, by_header: bool = False) -> str | None:
        """Why a request that changes something is not the dashboard's own, or None.

        A request authenticated by its ``Authorization`` header (``by_header``)
        needs no CSRF value: browsers send no such header across sites unasked.
        """
        site = headers.get("sec-fetch-site")
        if site is not None and site not in ("same-origin", "none"):
            return f"Sec-Fetch-Site is {site}"
        origin = headers.get("origin")
        if origin is not None and origin.split("://", 1)[-1].lower() != headers.get("host", "").lower():
            return f"Origin {origin} is not this dashboard"
        if not by_header and not self.keys.csrf_ok(headers.get(CSRF_HEADER, "")):
            return "missing or wrong X-JFR-CSRF header (reload the page)"
        return None

    async def _redirect_with_cookie(self, scope, send, rest: list) -> None:
        # never `//host/...` nor a backslash after the first slash: a browser reads either as another site
        path = "/" + quote(scope["path"].lstrip("/\\"), safe="/")
        where = (path + (f"?{urlencode(rest)}" if rest else "")).encode("ascii")
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
