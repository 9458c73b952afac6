"""The connection manager of the websocket guide and the /ws endpoint of the documented protocol.

How messages reach each socket (outboxes, coalescing, the chunked fan-out, closing a client too far
behind) is in app/web/delivery.py; this module tracks the sockets and speaks the protocol.
"""
from __future__ import annotations

import json
import logging
from typing import Any

from fastapi import APIRouter, WebSocket, WebSocketDisconnect
from pydantic import ValidationError

from ..engine import Engine, JobAlreadyFinished, JobNotFound
from ..engine.events import EventBus, ModelEvent, bus
from ..protocol import (
    CancelMessage,
    ErrorMessage,
    ModelLoading,
    PingMessage,
    PongMessage,
    SubscribedMessage,
    SubscribeMessage,
    UnsubscribedMessage,
    UnsubscribeMessage,
    client_message_adapter,
    client_message_types,
)
from .delivery import Connection, FanOut

log = logging.getLogger(__name__)

CLIENT_TYPES = client_message_types()


class ConnectionManager:
    """Tracks open sockets: `connect`, `disconnect`, `broadcast`, and delivery to a session's subscribers."""

    def __init__(self, outbox_limit: int = 1000) -> None:
        self.outbox_limit = outbox_limit
        self.max_message_bytes = 65_536  # server.ws_max_message_bytes, set by bind_engine
        self.max_subscriptions = 256  # server.max_subscriptions_per_connection
        self.connections: dict[WebSocket, Connection] = {}
        self.fan_out = FanOut()
        self._engine: Engine | None = None

    def bind_engine(self, engine: Engine | None) -> None:
        if self._engine is not None:
            self._engine.events.remove_model_listener(self.broadcast_model_loading)
        self._engine = engine
        if engine is not None:
            engine.events.add_model_listener(self.broadcast_model_loading)
            self.max_message_bytes = engine.settings.server.ws_max_message_bytes
            self.max_subscriptions = engine.settings.server.max_subscriptions_per_connection

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
        connection = Connection(websocket, self.outbox_limit, self.fan_out)
        self.connections[websocket] = connection
        return connection

    def disconnect(self, websocket: WebSocket) -> None:
        connection = self.connections.pop(websocket, None)
        if connection is None:
            return
        for session_id in connection.sessions:
            self.events.remove_listener(session_id, connection.on_event)
        if self._engine is not None:
            self._engine.stop_watching(connection)
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

    def broadcast_model_loading(self, message: ModelEvent) -> None:
        """`model_loading` goes to every client (a model listener of the bus, called on the event loop)."""
        if not isinstance(message, ModelLoading):
            return
        text = message.model_dump_json()
        for connection in tuple(self.connections.values()):
            connection.send(text, coalesce_key="model_loading")

    # -- the documented protocol ----------------------------------------------------------------

    def handle(self, connection: Connection, raw: str) -> None:
        try:
            data = json.loads(raw)
        except ValueError as error:
            connection.send(ErrorMessage(error=f"malformed JSON: {error}").model_dump_json())
            return
        except RecursionError:  # deep nesting (found by tests/test_fuzz.py): an answer, not a dropped socket
            connection.send(ErrorMessage(error="malformed JSON: nested too deeply").model_dump_json())
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
            if self._engine is not None:
                self._engine.unwatch_previews(message.session_id, connection)
            connection.send(UnsubscribedMessage(session_id=message.session_id).model_dump_json())
        elif isinstance(message, CancelMessage):
            self._cancel(connection, message.session_id)

    def _subscribe(self, connection: Connection, message: SubscribeMessage) -> None:
        session_id = message.session_id
        if session_id not in connection.sessions and len(connection.sessions) >= self.max_subscriptions:
            connection.send(ErrorMessage(
                error=f"too many subscriptions on this connection (server.max_subscriptions_per_connection = "
                f"{self.max_subscriptions}); unsubscribe from finished jobs first", session_id=session_id,
            ).model_dump_json())
            return
        try:
            status = self.engine.ensure_session(session_id)
        except JobNotFound as error:
            connection.send(ErrorMessage(error=str(error), session_id=session_id).model_dump_json())
            return
        events = self.events
        connection.sessions.add(session_id)
        if message.previews:
            connection.preview_sessions.add(session_id)
            self.engine.watch_previews(session_id, connection)  # previews are rendered only while watched
        # Replay and attach without an await in between: no message can fall in the gap.
        connection.send(
            SubscribedMessage(
                session_id=session_id, status=status, last_seq=events.last_seq(session_id)
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
            message = await websocket.receive()
            if message["type"] == "websocket.disconnect":
                break
            raw = message.get("text")
            if raw is None:  # a binary frame: the protocol is JSON text
                raw = (message.get("bytes") or b"").decode("utf-8", "replace")
            if len(raw) > manager.max_message_bytes or len(raw.encode()) > manager.max_message_bytes:
                connection.close_for(1009, f"message over server.ws_max_message_bytes ({manager.max_message_bytes})")
                break
            manager.handle(connection, raw)
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
