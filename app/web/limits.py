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


async def read_bounded(receive: Receive, limit: int) -> Receive:
    """Read a body of undeclared length (chunked) up to `limit` bytes, raising BodyTooLarge past it; returns a
    `receive` that hands the app the body read, then what the client sends next (a disconnect).

    A declared Content-Length is checked before anything is read, and the server holds the client to it; a
    chunked body has to be counted as it comes. Counting inside the app's own reads would not do: FastAPI turns
    an error raised there into a 400."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            break
        chunks.append(message.get("body", b""))
        size += len(chunks[-1])
        if size > limit:
            raise BodyTooLarge(limit)
        if not message.get("more_body", False):
            break
    body = b"".join(chunks)
    handed = False

    async def replay() -> Message:
        nonlocal handed
        if not handed:
            handed = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


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
