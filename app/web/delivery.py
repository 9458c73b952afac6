"""Sending to /ws sockets: one `Connection` per socket, and the `FanOut` that delivers bus events to many.

- A direct answer (pong, subscribed, an error) goes out on the spot when nothing waits before it.
- Bus events are queued in each subscriber's bounded `Outbox`; `FanOut` then sends them a chunk of
  connections per turn of the event loop. Between chunks the loop reads the generation process's
  pipe, so a newer step replaces the older one in the outboxes not yet served (progress and previews
  are coalesced, latest wins; every other message is kept, in order). With 1,000 subscribers a step
  costs the loop tens of milliseconds of sends; without chunks a new step waited behind the whole
  previous fan-out (bench/latency.py; figures in docs/benchmarks.md).
- A send that has to wait (the client stopped reading and the transport paused) hands the rest to the
  connection's own sender task; later messages wait in its outbox. A client so far behind that its
  outbox overflows is closed with code 1013 and a reason rather than silently losing a message.
"""
from __future__ import annotations

import asyncio
import json
from collections import deque
from typing import Any

from fastapi import WebSocket

from ..protocol import GenerationPreview, GenerationProgress, SessionEvent
from .eager import Suspended, start_eagerly

TOO_SLOW_CLOSE_CODE = 1013  # "try again later"
CLOSE_WAIT_SECONDS = 30  # how long the endpoint waits for the close frame to reach a stalled client
CONNECTIONS_PER_TURN = 64  # a couple of milliseconds of sends, then the loop may read a newer step


class Outbox:
    """Messages waiting for one socket: FIFO, coalescing by key, bounded."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._slots: deque[list[Any]] = deque()  # [coalesce_key | None, text]
        self._pending_by_key: dict[str, list[Any]] = {}

    def __len__(self) -> int:
        return len(self._slots)

    def put(self, text: str, coalesce_key: str | None = None) -> bool:
        """Queue a message; False when the outbox is full (the client is too far behind)."""
        if coalesce_key is not None:
            slot = self._pending_by_key.get(coalesce_key)
            if slot is not None:
                slot[1] = text
                return True
        if len(self._slots) >= self.limit:
            return False
        slot = [coalesce_key, text]
        self._slots.append(slot)
        if coalesce_key is not None:
            self._pending_by_key[coalesce_key] = slot
        return True

    def pop(self) -> str:
        key, text = self._slots.popleft()
        if key is not None:
            self._pending_by_key.pop(key, None)
        return text


class FanOut:
    """Sends what waits in the outboxes of the connections handed to it, a chunk per loop turn."""

    def __init__(self, connections_per_turn: int = CONNECTIONS_PER_TURN) -> None:
        self.connections_per_turn = connections_per_turn
        self._waiting: dict[Connection, None] = {}  # insertion-ordered: first queued, first served
        self._task: asyncio.Task[None] | None = None

    def __len__(self) -> int:
        return len(self._waiting)

    def schedule(self, connection: Connection) -> None:
        self._waiting[connection] = None
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._send_waiting())

    def discard(self, connection: Connection) -> None:
        self._waiting.pop(connection, None)

    async def _send_waiting(self) -> None:
        try:
            while self._waiting:
                for _ in range(min(self.connections_per_turn, len(self._waiting))):
                    connection = next(iter(self._waiting))
                    del self._waiting[connection]
                    connection.flush()
                await asyncio.sleep(0)  # one loop turn: pipe messages, other sockets, timers
        finally:
            self._task = None


class Connection:
    """One open /ws socket and the messages on their way to it."""

    def __init__(self, websocket: WebSocket, outbox_limit: int, fan_out: FanOut | None = None) -> None:
        self.websocket = websocket
        self.outbox = Outbox(outbox_limit)
        self.fan_out = fan_out if fan_out is not None else FanOut()
        self.sessions: set[str] = set()
        self.preview_sessions: set[str] = set()
        self.closed = False
        self._closing: asyncio.Task[None] | None = None
        self._sender: asyncio.Task[None] | None = None  # alive only while a send waits

    def send(self, payload: dict[str, Any] | str, coalesce_key: str | None = None) -> None:
        """Send now if nothing waits before this message, else queue it behind what does."""
        if self.closed:
            return
        text = payload if isinstance(payload, str) else json.dumps(payload, default=str)
        if self._sender is None and not self.outbox:
            self._send_now(text)
        else:
            self._queue(text, coalesce_key)

    def on_event(self, event: SessionEvent, text: str) -> None:
        """Bus listener: queue the event for the fan-out if this connection follows the session."""
        if self.closed:
            return
        if isinstance(event, GenerationPreview):
            if event.session_id in self.preview_sessions:
                self._queue(text, coalesce_key=f"preview:{event.session_id}")
        elif isinstance(event, GenerationProgress):
            self._queue(text, coalesce_key=f"progress:{event.session_id}")
        else:
            self._queue(text)

    def flush(self) -> None:
        """Send what waits in the outbox, on the spot, until a send has to wait (FanOut calls this)."""
        while self.outbox and self._sender is None and not self.closed:
            self._send_now(self.outbox.pop())

    def _queue(self, text: str, coalesce_key: str | None = None) -> None:
        if not self.outbox.put(text, coalesce_key):
            self.close_too_slow()
        elif self._sender is None:  # a waiting sender drains the outbox itself
            self.fan_out.schedule(self)

    def _send_now(self, text: str) -> None:
        try:
            rest = start_eagerly(self.websocket.send_text(text))
        except Exception:  # the socket went away; the receive loop will notice and disconnect
            self.closed = True
            return
        if rest is not None:
            self._sender = asyncio.get_running_loop().create_task(self._drain(rest))

    async def _drain(self, waiting_send: Suspended[None]) -> None:
        try:
            await waiting_send
            while self.outbox:
                await self.websocket.send_text(self.outbox.pop())
        except asyncio.CancelledError:
            raise
        except Exception:  # the socket went away; the receive loop will notice and disconnect
            self.closed = True
        self._sender = None

    def close_too_slow(self) -> None:
        self.closed = True
        self.fan_out.discard(self)
        reason = f"client too slow: more than {self.outbox.limit} messages waiting"
        self._closing = asyncio.get_running_loop().create_task(self._close(TOO_SLOW_CLOSE_CODE, reason))

    def close_for(self, code: int, reason: str) -> None:
        """Close the socket with `code` and `reason` (a limit passed); `wait_closing` lets it reach the client."""
        self.stop()
        self._closing = asyncio.get_running_loop().create_task(self._close(code, reason))

    async def wait_closing(self, timeout: float = CLOSE_WAIT_SECONDS) -> None:
        """Let a close we started reach the client (it waits behind what the socket still holds)."""
        if self._closing is not None and not self._closing.done():
            try:
                await asyncio.wait_for(asyncio.shield(self._closing), timeout)
            except (asyncio.TimeoutError, Exception):
                pass

    async def _close(self, code: int, reason: str) -> None:
        self._stop_sender()
        try:
            await self.websocket.close(code=code, reason=reason)
        except Exception:  # already gone
            pass

    def _stop_sender(self) -> None:
        if self._sender is not None:
            self._sender.cancel()
            self._sender = None

    def stop(self) -> None:
        self.closed = True
        self.fan_out.discard(self)
        self._stop_sender()
