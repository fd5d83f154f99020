"""What a connection may reach on the network: the address check of HTTP sources (docs/SECURITY.md, item 4).

An ``http`` connection is a URL anyone may type, fetched from inside the platform's network. By default it
may reach only public addresses: every address its host RESOLVES to (all of them, IPv4-mapped and
6to4/NAT64-embedded IPv4 unwrapped) must be outside loopback, private, link-local, CGNAT, multicast,
unspecified and reserved ranges, and never a cloud metadata address. ``AIETL_HTTP_ALLOW_NETWORKS`` (CIDRs or
host names, comma-separated) opens intranet APIs; the metadata addresses stay closed whatever it says.

The check runs again when the socket is opened (:class:`_PinnedBackend` connects to the very address that
was checked, so a DNS answer that changes between the check and the connect is not followed), and on every
redirect hop: :func:`fetch` follows redirects itself. Credentials go only to the connection's own
scheme://host:port; responses are bounded in bytes and in wall time.
"""
from __future__ import annotations

import ipaddress
import socket
import time
from dataclasses import dataclass, field
from typing import Callable, Iterable, Optional, Union
from urllib.parse import urlsplit

from services.connectors.registry import ConnectionError_

IP = Union[ipaddress.IPv4Address, ipaddress.IPv6Address]
Resolver = Callable[[str, int], list[str]]  # (host, port) -> every address it resolves to

MAX_RESPONSE_BYTES = 64 * 1024 * 1024
MAX_REDIRECTS = 5
DEFAULT_TIMEOUT_S = 10.0
DEFAULT_DEADLINE_S = 60.0

METADATA_ADDRESSES = frozenset(ipaddress.ip_address(a) for a in (
    "169.254.169.254", "169.254.170.2", "100.100.100.200", "fd00:ec2::254", "192.0.0.192"))
METADATA_HOSTS = frozenset({"metadata.google.internal", "metadata.goog", "metadata", "instance-data",
                            "instance-data.ec2.internal", "metadata.azure.com"})
# (network, reason class) in the order they are tested; the first match names the reason.
BLOCKED_NETWORKS = tuple((ipaddress.ip_network(n), why) for n, why in (
    ("127.0.0.0/8", "loopback"), ("::1/128", "loopback"),
    ("0.0.0.0/8", "unspecified"), ("::/128", "unspecified"),
    ("10.0.0.0/8", "private"), ("172.16.0.0/12", "private"), ("192.168.0.0/16", "private"),
    ("fc00::/7", "private"), ("192.0.0.0/24", "private"), ("198.18.0.0/15", "private"),
    ("100.64.0.0/10", "cgnat"),
    ("169.254.0.0/16", "link-local"), ("fe80::/10", "link-local"),
    ("224.0.0.0/4", "multicast"), ("ff00::/8", "multicast"),
    ("240.0.0.0/4", "reserved"), ("255.255.255.255/32", "reserved"), ("192.0.2.0/24", "reserved"),
    ("198.51.100.0/24", "reserved"), ("203.0.113.0/24", "reserved"), ("2001:db8::/32", "reserved"),
    ("64:ff9b:1::/48", "private"), ("100::/64", "reserved"),
))
_NAT64 = ipaddress.ip_network("64:ff9b::/96")


class BlockedAddress(ConnectionError_):
    """The URL's host resolves to an address a connection may not reach; ``reason`` is its class."""

    status, title = 422, "Address not allowed"

    def __init__(self, message: str, reason: str = "error"):
        super().__init__(message)
        self.reason = reason


class ResponseTooLarge(ConnectionError_):
    status, title = 502, "Response too large"


def _unwrap(ip: IP) -> IP:
    """The IPv4 address an IPv6 one carries (::ffff:a.b.c.d, 6to4 2002::/16, NAT64 64:ff9b::/96)."""
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return ip.ipv4_mapped
        if ip.sixtofour is not None:
            return ip.sixtofour
        if ip in _NAT64:
            return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
        if int(ip) >> 32 == 0 and int(ip) > 1:  # deprecated IPv4-compatible ::a.b.c.d
            return ipaddress.IPv4Address(int(ip))
    return ip


def address_class(ip: IP) -> Optional[str]:
    """The reason class an address is blocked for by default (None: a public address)."""
    inner = _unwrap(ip)
    if ip in METADATA_ADDRESSES or inner in METADATA_ADDRESSES:
        return "metadata"
    for candidate in dict.fromkeys((ip, inner)):
        for net, why in BLOCKED_NETWORKS:
            if candidate.version == net.version and candidate in net:
                return why
    return None


def system_resolver(host: str, port: int) -> list[str]:
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(i[4][0].split("%")[0] for i in infos))


@dataclass(frozen=True)
class EgressPolicy:
    """Which addresses HTTP sources may reach. ``allow`` opens networks and host names (never metadata);
    ``denied`` is the platform's own (address, port) endpoints, closed even when their network is allowed."""

    allow_networks: tuple = ()
    allow_hosts: frozenset = frozenset()
    denied: frozenset = frozenset()  # {(ip string or "loopback", port)}
    resolver: Resolver = field(default=system_resolver, compare=False)

    @classmethod
    def parse(cls, allow: Optional[str], denied: Iterable = (), resolver: Resolver = system_resolver
              ) -> "EgressPolicy":
        nets, hosts = [], set()
        for item in filter(None, (s.strip() for s in (allow or "").split(","))):
            try:
                nets.append(ipaddress.ip_network(item, strict=False))
            except ValueError:
                hosts.add(item.lower().rstrip("."))
        return cls(tuple(nets), frozenset(hosts), frozenset(denied), resolver)

    @classmethod
    def of(cls, settings, resolver: Resolver = system_resolver) -> "EgressPolicy":
        from services.connectors.guards import PlatformStores, _addresses

        denied = {(a, p) for h, p in PlatformStores.of(settings).endpoints for a in _addresses(h)}
        return cls.parse(getattr(settings, "http_allow_networks", None), denied, resolver)

    def check(self, host: str, port: int) -> list[str]:
        """Every address ``host`` resolves to, when all of them may be reached; else BlockedAddress."""
        name = (host or "").lower().rstrip(".").strip("[]")
        if not name:
            raise BlockedAddress("the URL has no host", "invalid-url")
        if name in METADATA_HOSTS:
            raise BlockedAddress(f"{host} is a cloud metadata service", "metadata")
        try:
            addresses = [ipaddress.ip_address(name)]
        except ValueError:
            try:
                addresses = [ipaddress.ip_address(a) for a in self.resolver(name, port)]
            except (OSError, ValueError, UnicodeError):
                raise BlockedAddress(f"{host} does not resolve", "dns") from None
        if not addresses:
            raise BlockedAddress(f"{host} does not resolve", "dns")
        for ip in addresses:
            self._check_ip(host, ip, port, name in self.allow_hosts)
        return [str(ip) for ip in addresses]

    def _check_ip(self, host: str, ip: IP, port: int, host_allowed: bool) -> None:
        why = address_class(ip)
        if why == "metadata":  # never opened by the allow-list
            raise BlockedAddress(f"{host} resolves to a cloud metadata address", "metadata")
        key = "loopback" if why in ("loopback", "unspecified") else str(_unwrap(ip))
        if (key, port) in self.denied or (str(ip), port) in self.denied:
            raise BlockedAddress(f"{host}:{port} is one of the platform's own servers", "platform")
        if why is None or host_allowed:
            return
        inner = _unwrap(ip)
        if any(c.version == n.version and c in n for n in self.allow_networks for c in (ip, inner)):
            return
        raise BlockedAddress(f"{host} resolves to a {why} address; an admin can allow it with "
                             "AIETL_HTTP_ALLOW_NETWORKS", why)


def default_policy() -> EgressPolicy:
    """The policy of the current settings (read on each call: tests and operators change the env)."""
    from services.core.settings import load_settings

    return EgressPolicy.of(load_settings())


def check_url(url: str, policy: Optional[EgressPolicy] = None) -> list[str]:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https"):
        raise BlockedAddress(f"only http and https URLs are fetched, not {parts.scheme or 'a bare path'}",
                             "invalid-url")
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        raise BlockedAddress("the URL's port is not a number", "invalid-url") from None
    return (policy or default_policy()).check(parts.hostname or "", port)


def origin(url: str) -> tuple:
    parts = urlsplit(url)
    try:
        port = parts.port
    except ValueError:
        port = None
    return parts.scheme, (parts.hostname or "").lower(), port or (443 if parts.scheme == "https" else 80)


# ---------------------------------------------------------------- fetching


class _PinnedBackend:
    """httpcore network backend that re-checks the host when the socket opens and connects to the checked
    address itself (no second DNS answer can slip in); TLS still verifies the original host name."""

    def __init__(self, policy: EgressPolicy):
        import httpcore

        self._inner, self._policy = httpcore.SyncBackend(), policy

    def connect_tcp(self, host, port, timeout=None, local_address=None, socket_options=None):
        address = self._policy.check(host, port)[0]
        return self._inner.connect_tcp(address, port, timeout=timeout, local_address=local_address,
                                       socket_options=socket_options)

    def connect_unix_socket(self, *args, **kwargs):
        raise BlockedAddress("unix sockets are not reachable from a connection", "invalid-url")

    def sleep(self, seconds):
        self._inner.sleep(seconds)


def client(policy: Optional[EgressPolicy] = None, timeout_s: float = DEFAULT_TIMEOUT_S):
    """An httpx client that connects only where ``policy`` allows, never follows redirects on its own and
    ignores proxy variables (a proxy would resolve the host for us, out of the check's sight)."""
    import httpx

    transport = httpx.HTTPTransport(retries=0)
    pool = transport._pool  # httpx has no public hook for the network backend; fail loudly if it moves
    if not hasattr(pool, "_network_backend"):
        raise RuntimeError("httpx/httpcore changed: cannot pin HTTP connections to checked addresses")
    pool._network_backend = _PinnedBackend(policy or default_policy())
    return httpx.Client(transport=transport, timeout=timeout_s, follow_redirects=False, trust_env=False)


@dataclass
class Fetched:
    status_code: int
    url: object  # httpx.URL of the last hop (``.join`` resolves a next link)
    headers: dict
    content: bytes
    links: dict

    def json(self):
        import json

        return json.loads(self.content) if self.content else None

    def raise_for_status(self) -> None:
        if self.status_code >= 400:
            raise FetchError(f"HTTP {self.status_code} from {origin(str(self.url))[1]}", "http-status")


class FetchError(ConnectionError_):
    status, title = 502, "Source request failed"

    def __init__(self, message: str, reason: str = "error"):
        super().__init__(message)
        self.reason = reason


def fetch(http, url: str, *, base_url: str, credentials: dict, params: Optional[dict] = None,
          policy: Optional[EgressPolicy] = None, max_bytes: int = MAX_RESPONSE_BYTES,
          deadline_s: float = DEFAULT_DEADLINE_S, max_redirects: int = MAX_REDIRECTS) -> Fetched:
    """GET ``url`` through ``http`` (a :func:`client`), following redirects here: each hop's address is
    checked, and ``credentials`` (headers) are sent only while the hop is on ``base_url``'s origin."""
    policy = policy or default_policy()
    home, started = origin(base_url), time.monotonic()
    for hop in range(max_redirects + 1):
        check_url(url, policy)
        headers = credentials if origin(url) == home else {}
        with http.stream("GET", url, params=params or None, headers=headers) as resp:
            if resp.is_redirect and "location" in resp.headers:
                url, params = str(resp.url.join(resp.headers["location"])), None
                continue
            body = bytearray()
            declared = resp.headers.get("content-length")
            if declared and declared.isdigit() and int(declared) > max_bytes:
                raise ResponseTooLarge(f"the response of {resp.url.host} is larger than {max_bytes} bytes")
            for chunk in resp.iter_bytes():
                body += chunk
                if len(body) > max_bytes:
                    raise ResponseTooLarge(f"the response of {resp.url.host} is larger than {max_bytes} bytes")
                if time.monotonic() - started > deadline_s:
                    raise FetchError(f"{resp.url.host} took longer than {deadline_s:.0f} s", "timeout")
            return Fetched(resp.status_code, resp.url, dict(resp.headers), bytes(body), dict(resp.links))
    raise FetchError(f"more than {max_redirects} redirects", "redirects")


__all__ = ["BlockedAddress", "EgressPolicy", "FetchError", "Fetched", "ResponseTooLarge", "address_class",
           "check_url", "client", "default_policy", "fetch", "origin", "system_resolver"]
