"""The connection manager of the websocket guide and the /ws endpoint of the documented protocol.

A message goes out on the spot while its socket keeps up; once a socket's send has to wait, later
messages wait in that connection's bounded outbox, drained by its own sender task, so a slow client
never delays the generation or other clients. Progress and preview messages for a session are coalesced
(latest wins) while they wait; every other message is kept. A client so far behind that its outbox
overflows is closed with a reason rather than silently losing a message.
"""
from __future__ import annotations

import asyncio
import json
import logging
from collections import deque
from typing import Any

from fastapi import APIRouter, WebSocket, WebSocketDisconnect
from pydantic import ValidationError

from .eager import Suspended, start_eagerly
from .engine import Engine, JobAlreadyFinished, JobNotFound
from .events import EventBus, bus
from .model_loading import model_events
from .protocol import (
    CancelMessage,
    ErrorMessage,
    GenerationPreview,
    GenerationProgress,
    ModelLoading,
    PingMessage,
    PongMessage,
    SessionEvent,
    SubscribedMessage,
    SubscribeMessage,
    UnsubscribedMessage,
    UnsubscribeMessage,
    client_message_adapter,
)

log = logging.getLogger(__name__)

CLIENT_TYPES = ("ping", "subscribe", "unsubscribe", "cancel")
TOO_SLOW_CLOSE_CODE = 1013  # "try again later"
CLOSE_WAIT_SECONDS = 30  # how long the endpoint waits for the close frame to reach a stalled client


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


class Connection:
    """One open /ws socket. A message is sent on the spot while the socket keeps up; once a send has to
    wait (the client stopped reading and the transport paused), later ones queue in the outbox and a
    sender task drains it, so the caller (the event bus, mid fan-out) never waits."""

    def __init__(self, websocket: WebSocket, outbox_limit: int) -> None:
        self.websocket = websocket
        self.outbox = Outbox(outbox_limit)
        self.sessions: set[str] = set()
        self.preview_sessions: set[str] = set()
        self.closed = False
        self._closing: asyncio.Task[None] | None = None
        self._sender: asyncio.Task[None] | None = None  # alive only while a send waits

    def send(self, payload: dict[str, Any] | str, coalesce_key: str | None = None) -> None:
        if self.closed:
            return
        text = payload if isinstance(payload, str) else json.dumps(payload, default=str)
        if self._sender is None:
            self._send_now(text)
        elif not self.outbox.put(text, coalesce_key):
            self.close_too_slow()

    def on_event(self, event: SessionEvent, text: str) -> None:
        """Bus listener: send the event if this connection follows the session."""
        if isinstance(event, GenerationPreview):
            if event.session_id in self.preview_sessions:
                self.send(text, coalesce_key=f"preview:{event.session_id}")
        elif isinstance(event, GenerationProgress):
            self.send(text, coalesce_key=f"progress:{event.session_id}")
        else:
            self.send(text)

    def close_too_slow(self) -> None:
        self.closed = True
        reason = f"client too slow: more than {self.outbox.limit} messages waiting"
        self._closing = asyncio.get_running_loop().create_task(self._close(TOO_SLOW_CLOSE_CODE, reason))

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

    def _stop_sender(self) -> None:
        if self._sender is not None:
            self._sender.cancel()
            self._sender = None

    def stop(self) -> None:
        self.closed = True
        self._stop_sender()


class ConnectionManager:
    """Tracks open sockets: `connect`, `disconnect`, `broadcast`, and delivery to a session's subscribers."""

    def __init__(self, outbox_limit: int = 1000) -> None:
        self.outbox_limit = outbox_limit
        self.connections: dict[WebSocket, Connection] = {}
        self._engine: Engine | None = None

    def bind_engine(self, engine: Engine | None) -> None:
        self._engine = engine
        model_events.add_listener(self.broadcast_model_loading)

    @property
    def events(self) -> EventBus:
        return self._engine.events if self._engine is not None else bus

    @property
    def engine(self) -> Engine:
        if self._engine is None:
            raise RuntimeError("the connection manager is not bound to a running engine")
        return self._engine

    async def connect(self, websocket: WebSocket) -> Connection:
        await websocket.accept()
        connection = Connection(websocket, self.outbox_limit)
        self.connections[websocket] = connection
        return connection

    def disconnect(self, websocket: WebSocket) -> None:
        connection = self.connections.pop(websocket, None)
        if connection is None:
            return
        for session_id in connection.sessions:
            self.events.remove_listener(session_id, connection.on_event)
        connection.stop()

    async def broadcast(self, message: dict[str, Any]) -> None:
        text = json.dumps(message, default=str)
        for connection in tuple(self.connections.values()):
            connection.send(text)

    async def send_to_session(self, session_id: str, message: dict[str, Any]) -> int:
        """Send a message to every connection subscribed to `session_id`; returns how many."""
        text = json.dumps(message, default=str)
        receivers = [c for c in self.connections.values() if session_id in c.sessions]
        for connection in receivers:
            connection.send(text)
        return len(receivers)

    def broadcast_model_loading(self, message: ModelLoading) -> None:
        """`model_loading` goes to every client (a model_events listener, called on the event loop)."""
        text = message.model_dump_json()
        for connection in tuple(self.connections.values()):
            connection.send(text, coalesce_key="model_loading")

    async def send_personal(self, websocket: WebSocket, message: dict[str, Any]) -> None:
        connection = self.connections.get(websocket)
        if connection is not None:
            connection.send(message)

    # -- the documented protocol ----------------------------------------------------------------

    def handle(self, connection: Connection, raw: str) -> None:
        try:
            data = json.loads(raw)
        except ValueError as error:
            connection.send(ErrorMessage(error=f"malformed JSON: {error}").model_dump_json())
            return
        if not isinstance(data, dict) or data.get("type") not in CLIENT_TYPES:
            kind = data.get("type") if isinstance(data, dict) else None
            connection.send(
                ErrorMessage(
                    error=f"unknown message type {kind!r}; expected one of {', '.join(CLIENT_TYPES)}"
                ).model_dump_json()
            )
            return
        try:
            message = client_message_adapter.validate_python(data)
        except ValidationError as error:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in e['loc'][1:]) or 'message'}: {e['msg']}" for e in error.errors()
            )
            connection.send(ErrorMessage(error=f"invalid {data['type']} message: {problems}").model_dump_json())
            return
        if isinstance(message, PingMessage):
            connection.send(PongMessage().model_dump_json())
        elif isinstance(message, SubscribeMessage):
            self._subscribe(connection, message)
        elif isinstance(message, UnsubscribeMessage):
            self.events.remove_listener(message.session_id, connection.on_event)
            connection.sessions.discard(message.session_id)
            connection.preview_sessions.discard(message.session_id)
            connection.send(UnsubscribedMessage(session_id=message.session_id).model_dump_json())
        elif isinstance(message, CancelMessage):
            self._cancel(connection, message.session_id)

    def _subscribe(self, connection: Connection, message: SubscribeMessage) -> None:
        session_id = message.session_id
        try:
            record = self.engine.ensure_session(session_id)
        except JobNotFound as error:
            connection.send(ErrorMessage(error=str(error), session_id=session_id).model_dump_json())
            return
        events = self.events
        connection.sessions.add(session_id)
        if message.previews:
            connection.preview_sessions.add(session_id)
        # Replay and attach without an await in between: no message can fall in the gap.
        connection.send(
            SubscribedMessage(
                session_id=session_id, status=record.status, last_seq=events.last_seq(session_id)
            ).model_dump_json()
        )
        for event in events.replay(session_id, message.after_seq):
            connection.on_event(event, event.model_dump_json())
        events.add_listener(session_id, connection.on_event)

    def _cancel(self, connection: Connection, session_id: str) -> None:
        try:
            self.engine.cancel(session_id)
        except (JobNotFound, JobAlreadyFinished) as error:
            connection.send(ErrorMessage(error=str(error), session_id=session_id).model_dump_json())


manager = ConnectionManager()
router = APIRouter()


@router.websocket("/ws")
async def websocket_endpoint(websocket: WebSocket) -> None:
    connection = await manager.connect(websocket)
    try:
        while True:
            manager.handle(connection, await websocket.receive_text())
    except WebSocketDisconnect:
        pass
    except RuntimeError:  # Starlette's WebSocketDisconnected: we closed it (client too slow)
        if not connection.closed:
            raise
    finally:
        manager.disconnect(websocket)
        # Returning ends the ASGI call and uvicorn closes the transport: keep the 1013 frame from being
        # dropped while it still waits behind the bytes the stalled client hasn't read.
        await connection.wait_closing()
