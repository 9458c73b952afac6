"""A small /ws test client on the `websockets` library: send JSON, collect messages until a condition."""
from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

import websockets

Message = dict[str, Any]


class WsClient:
    def __init__(self, url: str) -> None:
        self.url = url
        self.connection: Any = None
        self.received: list[Message] = []

    async def __aenter__(self) -> "WsClient":
        self.connection = await websockets.connect(self.url, max_size=None)
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.connection.close()

    async def send(self, message: Message | str) -> None:
        await self.connection.send(message if isinstance(message, str) else json.dumps(message))

    async def recv(self, timeout: float = 60) -> Message:
        message = json.loads(await asyncio.wait_for(self.connection.recv(), timeout))
        self.received.append(message)
        return message

    async def recv_until(self, condition: Callable[[Message], bool], timeout: float = 120) -> list[Message]:
        """Messages received up to and including the first one that satisfies `condition`."""
        collected: list[Message] = []
        async with asyncio.timeout(timeout):
            while True:
                message = await self.recv(timeout)
                collected.append(message)
                if condition(message):
                    return collected

    async def subscribe(self, session_id: str, **options: Any) -> Message:
        await self.send({"type": "subscribe", "session_id": session_id, **options})
        return (await self.recv_until(lambda m: m["type"] in ("subscribed", "error")))[-1]


def is_terminal(message: Message) -> bool:
    return message["type"] in ("generation_complete", "generation_error", "generation_cancelled")


def for_session(session_id: str, condition: Callable[[Message], bool]) -> Callable[[Message], bool]:
    return lambda message: message.get("session_id") == session_id and condition(message)
