"""Where webhooks may go: no loopback, private, link-local, CGNAT, unique-local, multicast or
v4-mapped addresses, unless the operator allows them.

A webhook URL is chosen by whoever holds an API key, and the server then makes requests to it:
without this guard a caller could make the server probe its own network (``127.0.0.1``, the
cloud metadata address ``169.254.169.254``, ``10.…``).

Two checks, one rule (:meth:`WebhookGuard.refusal`):

- at create/PATCH time, :meth:`WebhookGuard.check_url` refuses a URL whose host is such an
  address or resolves to one (``422 WEBHOOK_URL_FORBIDDEN``), so the caller hears at once;
- at delivery time, :class:`GuardedBackend` resolves the host *once*, checks every address and
  connects to the checked address itself. A name that resolved to a public address when the URL
  was set and to ``127.0.0.1`` now (DNS rebinding) is refused there, because the address that is
  checked is the one connected to.

``WATUI_WEBHOOK_ALLOW_PRIVATE=true`` turns the guard off; ``WATUI_WEBHOOK_ALLOWED_HOSTS`` lists
host names, addresses or networks (``hooks.internal``, ``10.0.0.5``, ``192.168.1.0/24``) that
are allowed anyway, for a receiver on the operator's own network.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Iterable
from typing import Any

import httpcore
import httpx

from watui.errors import WatuiError

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
RESOLVE_TIMEOUT = 3.0
"""How long the create/PATCH check waits for DNS; a name that does not resolve in time is
accepted then and checked again on every delivery."""


class WebhookUrlForbidden(WatuiError):
    status = 422
    code = "WEBHOOK_URL_FORBIDDEN"


class ForbiddenAddress(Exception):
    """Raised instead of connecting. Not an httpcore error, so httpx passes it through as is
    (the dispatcher records it as a final failure, not as a network error to retry)."""


def refusal_for_address(address: IPAddress) -> str | None:
    """Why ``address`` is not a public unicast address, or ``None`` if it is."""
    if isinstance(address, ipaddress.IPv6Address):
        mapped = address.ipv4_mapped or address.sixtofour or (address.teredo[1] if address.teredo else None)
        if address.ipv4_mapped is not None:
            return "an IPv4-mapped IPv6 address"
        if mapped is not None and refusal_for_address(mapped):
            return "an IPv6 address that embeds a non-public IPv4 address"
    for kind in ("loopback", "link_local", "multicast", "unspecified", "private", "reserved"):
        if getattr(address, f"is_{kind}"):
            return f"a {kind.replace('_', '-')} address"
    if not address.is_global:  # CGNAT (100.64.0.0/10) and the other non-global special ranges
        return "not a public address"
    return None


def _parse_address(host: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return None


class WebhookGuard:
    """The operator's rule for webhook targets (from :class:`watui.config.Settings`)."""

    def __init__(self, *, allow_private: bool = False, allowed_hosts: Iterable[str] = ()) -> None:
        self.allow_private = allow_private
        self._hosts: set[str] = set()
        self._networks: list[ipaddress.IPv4Network | ipaddress.IPv6Network] = []
        for entry in allowed_hosts:
            entry = entry.strip().lower()
            if not entry:
                continue
            try:
                self._networks.append(ipaddress.ip_network(entry.strip("[]"), strict=False))
            except ValueError:
                self._hosts.add(entry.rstrip("."))

    @classmethod
    def from_settings(cls, settings: Any) -> WebhookGuard:
        return cls(allow_private=settings.webhook_allow_private, allowed_hosts=settings.webhook_allowed_hosts)

    @property
    def active(self) -> bool:
        return not self.allow_private

    def host_allowed(self, host: str) -> bool:
        """An allowed host name skips the address check altogether."""
        return self.allow_private or host.lower().rstrip(".").strip("[]") in self._hosts

    def refusal(self, host: str, address: IPAddress) -> str | None:
        """Why connecting to ``address`` (for ``host``) is refused, or ``None``."""
        if self.host_allowed(host) or any(address in net for net in self._networks):
            return None
        why = refusal_for_address(address)
        return f"{address} ({why})" if why else None

    async def resolve(self, host: str, port: int, timeout: float | None = None) -> list[IPAddress]:
        """Every address ``host`` resolves to (a literal address is itself)."""
        literal = _parse_address(host)
        if literal is not None:
            return [literal]
        loop = asyncio.get_running_loop()
        lookup = loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        infos = await (asyncio.wait_for(lookup, timeout) if timeout else lookup)
        out: list[IPAddress] = []
        for info in infos:
            address = ipaddress.ip_address(str(info[4][0]).split("%", 1)[0])
            if address not in out:
                out.append(address)
        return out

    async def check_url(self, url: str | None) -> None:
        """Refuse (``422 WEBHOOK_URL_FORBIDDEN``) a URL that points at a forbidden address.

        A host that does not resolve now is let through: it is checked again, on the address
        actually connected to, at every delivery.
        """
        if url is None or not self.active:
            return
        parts = httpx.URL(url)
        host = parts.host
        if self.host_allowed(host):
            return
        try:
            addresses = await self.resolve(host, parts.port or (443 if parts.scheme == "https" else 80),
                                           timeout=RESOLVE_TIMEOUT)
        except (OSError, TimeoutError, UnicodeError):
            return
        for address in addresses:
            why = self.refusal(host, address)
            if why is not None:
                raise WebhookUrlForbidden(
                    f"webhook_url may not point at {why}; an operator can allow it with "
                    "WATUI_WEBHOOK_ALLOWED_HOSTS or WATUI_WEBHOOK_ALLOW_PRIVATE",
                    details={"host": host, "address": str(address)},
                )


class GuardedBackend(httpcore.AsyncNetworkBackend):
    """httpcore's network backend, resolving once and connecting only to checked addresses."""

    def __init__(self, guard: WebhookGuard) -> None:
        self.guard = guard
        self._inner = httpcore.AnyIOBackend()

    async def connect_tcp(
        self, host: str, port: int, timeout: float | None = None, local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        if self.guard.host_allowed(host):
            return await self._inner.connect_tcp(host, port, timeout, local_address, socket_options)
        try:
            addresses = await self.guard.resolve(host, port, timeout)
        except (OSError, UnicodeError) as exc:
            raise httpcore.ConnectError(f"cannot resolve {host}: {exc}") from exc
        allowed = []
        for address in addresses:
            why = self.guard.refusal(host, address)
            if why is not None:  # one bad address is enough: rebinding tricks mix them
                raise ForbiddenAddress(f"forbidden address: {why}")
            allowed.append(address)
        last: Exception | None = None
        for address in allowed:
            try:
                return await self._inner.connect_tcp(str(address), port, timeout, local_address, socket_options)
            except httpcore.ConnectError as exc:
                last = exc
        raise last or httpcore.ConnectError(f"{host} has no address")

    async def connect_unix_socket(self, *args: Any, **kwargs: Any) -> httpcore.AsyncNetworkStream:
        raise ForbiddenAddress("forbidden address: unix sockets")

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


def guarded_transport(guard: WebhookGuard, *, max_connections: int) -> httpx.AsyncHTTPTransport:
    """An httpx transport whose connections go through :class:`GuardedBackend`.

    httpx does not take a network backend as a parameter, so its pool is replaced by one built
    with the same limits and the guarded backend (tests cover that this keeps working).
    """
    transport = httpx.AsyncHTTPTransport(
        limits=httpx.Limits(max_connections=max_connections, max_keepalive_connections=max_connections)
    )
    transport._pool = httpcore.AsyncConnectionPool(
        ssl_context=transport._pool._ssl_context,
        max_connections=max_connections,
        max_keepalive_connections=max_connections,
        keepalive_expiry=5.0,
        network_backend=GuardedBackend(guard),
    )
    return transport
