"""Who may open ``watui web``: the token, the Host and Origin checks, and the tab cap.

The web console is an admin console with an admin key behind it, so every request must show
the per-run token: in the URL ``watui web`` prints (``/?token=…``, as Jupyter does) or in the
cookie that URL sets. The first visit moves the token into the cookie and out of the address
bar.

The token alone does not stop a page in the admin's own browser from using the console
through DNS rebinding (a hostile name that resolves to 127.0.0.1) or a cross-site websocket.
So two more checks apply:

- every request must name, in its ``Host``, an address this server serves;
- a websocket upgrade must come from a page of this server (its ``Origin``).

Each open tab is a console process, so their number is capped (``--max-tabs``).
"""

from __future__ import annotations

import hmac
import ipaddress
import secrets
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from aiohttp import hdrs, web

from watui.console import web_pages

LOOPBACK_NAMES = ("127.0.0.1", "localhost", "[::1]")
WILDCARDS = ("0.0.0.0", "::", "")
TOKEN_PARAM = "token"

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def new_token() -> str:
    """A fresh per-run token (192 random bits, URL-safe)."""
    return secrets.token_urlsafe(24)


def _netloc(host: str, port: int | None, scheme: str = "http") -> str:
    """``host:port`` as a browser puts it in ``Host`` and ``Origin`` (the default port left out)."""
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"  # an IPv6 literal
    default = 443 if scheme == "https" else 80
    return host.lower() if port in (None, default) else f"{host.lower()}:{port}"


def served_hosts(host: str, port: int, public_url: str | None) -> tuple[frozenset[str], bool]:
    """The ``Host`` values this server answers, and whether any IP literal is fine too (the
    server listens on every address and no public URL says which name it goes by)."""
    names: set[str] = set()
    if public_url:
        parts = urlsplit(public_url)
        if parts.hostname:
            names.add(_netloc(parts.hostname, parts.port, parts.scheme or "http"))
    any_ip = False
    if host in WILDCARDS:
        names.update(_netloc(name, port) for name in LOOPBACK_NAMES)
        for name in {socket.gethostname(), socket.getfqdn()}:
            if name:
                names.add(_netloc(name, port))
        any_ip = not public_url
    elif host in ("127.0.0.1", "localhost", "::1"):
        names.update(_netloc(name, port) for name in LOOPBACK_NAMES)
    else:
        names.add(_netloc(host, port))
    return frozenset(names), any_ip


def _is_ip_literal(netloc: str) -> bool:
    host = urlsplit(f"//{netloc}").hostname or ""
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


@dataclass
class WebAccess:
    """The checks, as aiohttp middleware (:meth:`middleware`), and the open tabs."""

    token: str
    port: int
    hosts: frozenset[str]
    any_ip: bool = False
    max_tabs: int = 8
    secure_cookie: bool = False
    tabs: int = field(default=0, init=False)
    """Websockets (so console processes) open now."""

    @classmethod
    def for_server(cls, token: str, *, host: str, port: int, public_url: str | None, max_tabs: int) -> WebAccess:
        hosts, any_ip = served_hosts(host, port, public_url)
        secure = bool(public_url and public_url.startswith("https:"))
        return cls(token=token, port=port, hosts=hosts, any_ip=any_ip, max_tabs=max_tabs, secure_cookie=secure)

    @property
    def cookie(self) -> str:
        """One cookie name per port: cookies ignore ports, and two consoles may share a host."""
        return f"watui_web_{self.port}"

    def host_allowed(self, netloc: str) -> bool:
        netloc = netloc.strip().lower()
        if netloc in self.hosts:
            return True
        if not self.any_ip or not _is_ip_literal(netloc):
            return False
        port = urlsplit(f"//{netloc}").port
        return port == self.port or (port is None and self.port == 80)

    def origin_allowed(self, origin: str | None) -> bool:
        """A websocket from a page of this server; none given (not a browser) is let through:
        such a client still needs the token."""
        if origin is None:
            return True
        parts = urlsplit(origin)
        if not parts.hostname or parts.scheme not in ("http", "https"):
            return False
        try:
            port = parts.port
        except ValueError:
            return False
        return self.host_allowed(_netloc(parts.hostname, port, parts.scheme))

    def _matches(self, given: str | None) -> bool:
        return given is not None and hmac.compare_digest(given.encode(), self.token.encode())

    def _with_cookie(self, response: web.StreamResponse) -> web.StreamResponse:
        response.set_cookie(self.cookie, self.token, httponly=True, samesite="Strict", path="/",
                            secure=self.secure_cookie)
        return response

    @web.middleware
    async def middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        websocket = request.headers.get(hdrs.UPGRADE, "").lower() == "websocket"
        if not self.host_allowed(request.host):
            return web_pages.refusal(
                403, "Not served at this address",
                f"This watui console does not answer for {request.host!r}. Open the address "
                "watui web printed, or start it with --public-url naming this one.",
            )
        if websocket and not self.origin_allowed(request.headers.get(hdrs.ORIGIN)):
            return web_pages.refusal(403, "Refused", "A page of another site may not open this console.")
        by_url = self._matches(request.query.get(TOKEN_PARAM))
        if not (by_url or self._matches(request.cookies.get(self.cookie))):
            if websocket:
                return web_pages.refusal(403, "Token needed", "This console needs the token in its URL.")
            return web_pages.refusal(
                401, "Token needed",
                "This watui console needs its token: open the full URL that watui web printed "
                "(http://…/?token=…). Set WATUI_WEB_TOKEN to keep one token across restarts.",
            )
        if by_url and not websocket and request.method == "GET":
            # Into the cookie, out of the address bar (and of the history and Referer).
            query = {k: v for k, v in request.query.items() if k != TOKEN_PARAM}
            return self._with_cookie(web.HTTPSeeOther(request.rel_url.with_query(query)))
        if (websocket or request.path == "/") and self.tabs >= self.max_tabs:
            return web_pages.refusal(
                503, "Too many tabs",
                f"All {self.max_tabs} tabs of this console are open. Close one, or start watui web "
                "with a higher --max-tabs.",
            )
        return await handler(request)
