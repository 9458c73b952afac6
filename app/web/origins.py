"""Which browser requests come from another web page, and which Host names a local studio answers.

A browser says where a request comes from: `Origin` (on every POST, on cross-origin fetches and on every
WebSocket handshake) and `Sec-Fetch-Site`. A request from a page of another origin is refused unless that
origin matches `server.cors_origins`; `Origin: null` (sandboxed frames, file: pages, some redirects) and
`Sec-Fetch-Site: cross-site` are refused the same way. A request with no Origin (curl, scripts, other
servers) is left to the key check. Without keys on a loopback host, only loopback Host names are answered,
so a page on a name rebound to 127.0.0.1 (DNS rebinding) is not served.
"""
from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from urllib.parse import urlsplit

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "::1", "[::1]"})


def is_loopback(host: str) -> bool:
    """Whether `host` (a name or address, IPv6 with or without brackets) is this machine only."""
    name = host.strip("[]").lower()
    if name in LOOPBACK_NAMES or name.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def host_name(host_header: str) -> str:
    """`Host` without its port: `127.0.0.1:8000` -> `127.0.0.1`, `[::1]:8000` -> `::1`."""
    if host_header.startswith("["):
        return host_header[1:].partition("]")[0]
    return host_header.rpartition(":")[0] if host_header.count(":") == 1 else host_header


def same_origin(origin: str, host_header: str | None) -> bool:
    if not host_header:
        return False
    try:
        netloc = urlsplit(origin).netloc
    except ValueError:
        return False
    return netloc.lower() == host_header.lower()


class OriginPolicy:
    """`refusal(...)` says why a request is refused, or None when its origin is fine."""

    def __init__(self, allowed_origins: str, local_only_hosts: bool, extra_hosts: list[str] | None = None) -> None:
        self.allowed = re.compile(allowed_origins) if allowed_origins else None
        self.local_only_hosts = local_only_hosts
        self.extra_hosts = {host.lower() for host in extra_hosts or []}

    def host_served(self, host: str) -> bool:
        name = host_name(host)
        return not self.local_only_hosts or is_loopback(name) or name.lower() in self.extra_hosts

    def origin_allowed(self, origin: str) -> bool:
        return self.allowed is not None and self.allowed.fullmatch(origin) is not None

    def refusal(self, headers: Mapping[str, str], method: str, websocket: bool) -> str | None:
        host = headers.get("host")
        if host is not None and not self.host_served(host):
            return (f"Host {host!r} is not served: without an API key this studio answers loopback names only "
                    "(and server.allowed_hosts)")
        origin = headers.get("origin")
        if origin is not None:
            if origin.strip().lower() == "null":
                return "requests from an opaque origin (Origin: null) are refused"
            if self.origin_allowed(origin) or same_origin(origin, host):
                return None
            return f"origin {origin!r} is not allowed (add it to server.cors_origins to allow it)"
        if (websocket or method not in SAFE_METHODS) and headers.get("sec-fetch-site") == "cross-site":
            return "cross-site requests are refused (Sec-Fetch-Site: cross-site)"
        return None
