"""The one gate every request and WebSocket passes first (an ASGI middleware around NiceGUI's app).

In this order: the origin (app/web/origins.py: another web page is refused, 403), the key
(app/web/auth.py: 401 with `WWW-Authenticate`, a browser asking for a page goes to the sign-in page, a
WebSocket is refused at the handshake with 403), open WebSockets per address (429 at the handshake) and
the request body's size (413). It covers everything NiceGUI serves too: its pages, its socket.io, uploads
and image URLs. Refusals of WebSockets happen before `accept`, as an HTTP answer to the handshake.
"""
from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any
from urllib.parse import quote

from .auth import A1111_PREFIX, SESSION_COOKIE, SIGN_IN_PATH, Keys, authorized, query_token, session_token
from .limits import BodyTooLarge, ConnectionCounter, declared_length, read_bounded
from .origins import OriginPolicy

log = logging.getLogger(__name__)

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

OPEN_PATHS = frozenset({"/api/health", SIGN_IN_PATH})
API_PREFIXES = ("/api/", "/sdapi/", "/v1/", "/ws", "/_nicegui")


def session_cookie(key: str, secure: bool) -> str:
    """The studio's sign-in cookie: for this browser session only, not readable by scripts."""
    return f"{SESSION_COOKIE}={session_token(key)}; Path=/; HttpOnly; SameSite=Lax" + ("; Secure" if secure else "")


def _headers(scope: Scope) -> dict[str, str]:
    return {name.decode("latin-1").lower(): value.decode("latin-1") for name, value in scope.get("headers", ())}


def _unauthorized_body(path: str) -> tuple[dict[str, Any], str]:
    message = "an API key is required: send `Authorization: Bearer KEY`"
    if path.startswith(A1111_PREFIX):
        return {"error": "Unauthorized", "detail": message + " or HTTP Basic with the key as password"}, \
            'Basic realm="AI Artist"'
    if path.startswith("/v1/"):
        return {"error": {"message": message, "type": "invalid_request_error", "param": None,
                          "code": "invalid_api_key"}}, 'Bearer realm="AI Artist"'
    return {"detail": message}, 'Bearer realm="AI Artist"'


class SecurityGate:
    def __init__(self, app: ASGIApp, keys: Keys, origins: OriginPolicy, max_body_bytes: int,
                 connections: ConnectionCounter) -> None:
        self.app = app
        self.keys = keys
        self.origins = origins
        self.max_body_bytes = max_body_bytes
        self.connections = connections

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            await self._http(scope, receive, send)
        elif scope["type"] == "websocket":
            await self._websocket(scope, receive, send)
        else:
            await self.app(scope, receive, send)

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        headers, method, path = _headers(scope), scope["method"], scope["path"]
        refusal = self.origins.refusal(headers, method, websocket=False)
        if refusal is not None:
            return await _send_json(send, 403, {"detail": refusal})
        preflight = method == "OPTIONS" and "access-control-request-method" in headers
        needs_key = self.keys and path not in OPEN_PATHS and not preflight
        if needs_key and not authorized(self.keys, headers, path, b"", websocket=False):
            token = query_token(scope.get("query_string", b"")) if method == "GET" else None
            if not self.keys.accepts(token):
                return await self._ask_for_key(send, headers, method, path, scope)
            send = _adding_cookie(send, session_cookie(token, scope.get("scheme") == "https"))
        length = declared_length(headers)
        if length is not None and length > self.max_body_bytes:
            return await _send_json(send, 413, {"detail": str(BodyTooLarge(self.max_body_bytes))})
        if length is None and "chunked" in headers.get("transfer-encoding", "").lower():
            try:
                receive = await read_bounded(receive, self.max_body_bytes)
            except BodyTooLarge as error:
                return await _send_json(send, 413, {"detail": str(error)})
        await self.app(scope, receive, send)

    async def _ask_for_key(self, send: Send, headers: dict[str, str], method: str, path: str, scope: Scope) -> None:
        wants_page = method == "GET" and "text/html" in headers.get("accept", "") and not path.startswith(API_PREFIXES)
        if wants_page:
            target = path + ("?" + scope["query_string"].decode("latin-1") if scope.get("query_string") else "")
            location = f"{SIGN_IN_PATH}?next={quote(target, safe='')}"
            return await _send(send, 303, b"", [(b"location", location.encode())], "text/plain")
        body, challenge = _unauthorized_body(path)
        await _send_json(send, 401, body, [(b"www-authenticate", challenge.encode())])

    async def _websocket(self, scope: Scope, receive: Receive, send: Send) -> None:
        headers, path = _headers(scope), scope["path"]
        refusal = self.origins.refusal(headers, "GET", websocket=True)
        if refusal is None and self.keys and not authorized(self.keys, headers, path, scope.get("query_string", b""),
                                                            websocket=True):
            refusal = "an API key is required: connect to /ws?token=KEY (or send `Authorization: Bearer KEY`)"
        if refusal is not None:
            return await _deny(scope, receive, send, 403, refusal)
        address = scope["client"][0] if scope.get("client") else "unknown"
        if not self.connections.try_open(address):
            return await _deny(scope, receive, send, 429, self.connections.refusal())
        try:
            await self.app(scope, receive, send)
        finally:
            self.connections.close(address)


def _adding_cookie(send: Send, cookie: str) -> Send:
    async def send_with_cookie(message: Message) -> None:
        if message["type"] == "http.response.start":
            message["headers"] = [*message.get("headers", []), (b"set-cookie", cookie.encode())]
        await send(message)

    return send_with_cookie


async def _send(send: Send, status: int, body: bytes, headers: list[tuple[bytes, bytes]], media: str) -> None:
    head = [(b"content-type", media.encode()), (b"content-length", str(len(body)).encode()), *headers]
    await send({"type": "http.response.start", "status": status, "headers": head})
    await send({"type": "http.response.body", "body": body})


async def _send_json(send: Send, status: int, body: Any, headers: list[tuple[bytes, bytes]] | None = None) -> None:
    await _send(send, status, json.dumps(body).encode(), headers or [], "application/json")


async def _deny(scope: Scope, receive: Receive, send: Send, status: int, reason: str) -> None:
    """Refuse a WebSocket handshake with an HTTP answer (403/429 and why), before any accept."""
    message = await receive()
    if message["type"] != "websocket.connect":
        return
    log.info("WebSocket %s refused (%d): %s", scope["path"], status, reason)
    if "websocket.http.response" in scope.get("extensions", {}):
        body = json.dumps({"detail": reason}).encode()
        await send({"type": "websocket.http.response.start", "status": status,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
        await send({"type": "websocket.http.response.body", "body": body})
    else:
        await send({"type": "websocket.close", "code": 1008, "reason": reason[:120]})
