"""Bounds on what one client can make the server hold: request bodies and open WebSockets per address.

The other limits live where they apply: a /ws message's size and a connection's subscriptions in
app/web/websocket.py, queued jobs per client in the engine (`queue.max_pending_per_client`).
"""
from __future__ import annotations

from collections import Counter
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]


class BodyTooLarge(Exception):
    """The request body passed `server.max_body_bytes`."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"the request body is larger than server.max_body_bytes ({limit} bytes)")
        self.limit = limit


def declared_length(headers: MutableMapping[str, str] | dict[str, str]) -> int | None:
    try:
        return int(headers["content-length"])
    except (KeyError, ValueError):
        return None


def bounded_receive(receive: Receive, limit: int) -> Receive:
    """`receive` that raises BodyTooLarge once more than `limit` body bytes arrived (chunked bodies too)."""
    seen = 0

    async def receive_bounded() -> Message:
        nonlocal seen
        message = await receive()
        if message["type"] == "http.request":
            seen += len(message.get("body", b""))
            if seen > limit:
                raise BodyTooLarge(limit)
        return message

    return receive_bounded


class ConnectionCounter:
    """Open WebSockets per client address, against `server.max_connections_per_client`."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.open: Counter[str] = Counter()

    def try_open(self, address: str) -> bool:
        if self.open[address] >= self.limit:
            return False
        self.open[address] += 1
        return True

    def close(self, address: str) -> None:
        self.open[address] -= 1
        if self.open[address] <= 0:
            del self.open[address]

    def refusal(self) -> str:
        return f"too many open WebSockets from this address (server.max_connections_per_client = {self.limit})"
