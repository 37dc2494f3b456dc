"""Optional token protection for every page, API and event stream of the dashboard.

Without a token configured, nothing is checked (the default bind is 127.0.0.1). With
one, a request needs ``Authorization: Bearer <token>`` or the session cookie; ``?token=``
is accepted once: it sets the cookie (HttpOnly, SameSite=Strict) and a page request is
redirected to the same URL without the token, so it stays out of history and logs.
The cookie holds a hash of the token, not the token itself.
"""
from __future__ import annotations

import hashlib
import hmac
from typing import Awaitable, Callable

from aiohttp import web

COOKIE = "ledgerstream_dashboard"
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def cookie_value(token: str) -> str:
    return hashlib.sha256(b"ledgerstream-dashboard-session\x00" + token.encode()).hexdigest()


#: answered without the token: liveness for container health checks, nothing about the ledger
PUBLIC_PATHS = frozenset({"/healthz"})


def token_middleware(token: str | None) -> Callable[[web.Request, Handler], Awaitable[web.StreamResponse]]:
    expected_cookie = cookie_value(token) if token else ""

    @web.middleware
    async def check_token(request: web.Request, handler: Handler) -> web.StreamResponse:
        if not token or request.path in PUBLIC_PATHS:
            return await handler(request)
        supplied = request.query.get("token")
        if supplied is not None:
            if not hmac.compare_digest(supplied.encode(), token.encode()):
                raise _unauthorized()
            if request.method == "GET" and "text/html" in request.headers.get("Accept", ""):
                query = {k: v for k, v in request.query.items() if k != "token"}
                response: web.StreamResponse = web.HTTPSeeOther(request.rel_url.with_query(query))
            else:
                response = await handler(request)
            response.set_cookie(COOKIE, expected_cookie, httponly=True, samesite="Strict", path="/")
            if isinstance(response, web.HTTPException):
                raise response
            return response
        bearer = request.headers.get("Authorization", "")
        if bearer.startswith("Bearer ") and hmac.compare_digest(bearer[7:].encode(), token.encode()):
            return await handler(request)
        cookie = request.cookies.get(COOKIE, "")
        if cookie and hmac.compare_digest(cookie.encode(), expected_cookie.encode()):
            return await handler(request)
        raise _unauthorized()

    return check_token


def host_middleware(bound_host: str, extra: tuple[str, ...]) -> Callable[[web.Request, Handler],
                                                                        Awaitable[web.StreamResponse]]:
    """Accept only requests whose ``Host`` names this server (loopback names, the bound host,
    ``extra``) on the port it listens on: a rebound DNS name (DNS rebinding) gets 403."""
    names = {"127.0.0.1", "localhost", "::1", bound_host.strip("[]").lower(), *(h.lower() for h in extra)}

    @web.middleware
    async def check_host(request: web.Request, handler: Handler) -> web.StreamResponse:
        name, port = _split_host(request.headers.get("Host", ""))
        sockname = request.transport.get_extra_info("sockname") if request.transport else None
        local_port = sockname[1] if sockname else None
        if name not in names or port != local_port:
            raise web.HTTPForbidden(text="403 Forbidden: unexpected Host header (add it with --allowed-host)\n")
        return await handler(request)

    return check_host


def _split_host(header: str) -> tuple[str, int | None]:
    """``name:port`` or ``[v6]:port`` -> (lower-case name, port); no port -> None."""
    header = header.strip().lower()
    if header.startswith("["):
        name, _, rest = header[1:].partition("]")
        port = rest[1:] if rest.startswith(":") else ""
    else:
        name, _, port = header.rpartition(":") if ":" in header else (header, "", "")
    return name, int(port) if port.isdigit() else None


def _unauthorized() -> web.HTTPUnauthorized:
    return web.HTTPUnauthorized(text="401 Unauthorized: this dashboard needs its token "
                                     "(open it once with ?token=..., or send Authorization: Bearer ...)\n",
                                headers={"WWW-Authenticate": 'Bearer realm="ledgerstream-dashboard"'})


@web.middleware
async def security_headers(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Everything is served from here: forbid every other origin, framing and sniffing."""
    try:
        response = await handler(request)
    except web.HTTPException as exc:
        response = exc
        _secure(response)
        raise
    _secure(response)
    return response


def _secure(response: web.StreamResponse) -> None:
    if response.prepared:  # event streams send their headers themselves
        return
    response.headers.setdefault(
        "Content-Security-Policy",
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
        "object-src 'none'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    response.headers.setdefault("Referrer-Policy", "no-referrer")
    response.headers.setdefault("X-Frame-Options", "DENY")
    response.headers.setdefault("Cache-Control", "no-store")
