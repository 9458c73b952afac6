"""A lean /ws client for the benchmarks: a plain asyncio protocol, no library.

It stamps `time.perf_counter()` the moment bytes arrive and parses frames in place, so a thousand of
them in one process cost little and the client adds as little as possible to what is measured. It can
offer permessage-deflate the way browsers and the `websockets` library do (`deflate=True`).
"""
from __future__ import annotations

import asyncio
import base64
import json
import os
import socket
import threading
import time
import zlib
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")
TERMINAL_TYPES = ("generation_complete", "generation_error", "generation_cancelled")


def _mask(payload: bytes, key: bytes) -> bytes:
    n = len(payload)
    repeated = (key * (n // 4 + 1))[:n]
    return (int.from_bytes(payload, "big") ^ int.from_bytes(repeated, "big")).to_bytes(n, "big")


def _frame(opcode: int, payload: bytes) -> bytes:
    n = len(payload)
    head = bytes([0x80 | opcode])
    if n < 126:
        head += bytes([0x80 | n])
    elif n < 65536:
        head += bytes([0x80 | 126]) + n.to_bytes(2, "big")
    else:
        head += bytes([0x80 | 127]) + n.to_bytes(8, "big")
    key = os.urandom(4)
    return head + key + _mask(payload, key)


class WsClient(asyncio.Protocol):
    """One /ws connection. `messages` holds (perf_counter at arrival, text) for every text frame."""

    def __init__(self, deflate: bool = False) -> None:
        self.deflate = deflate
        self.transport: asyncio.Transport | None = None
        self.messages: list[tuple[float, str]] = []
        self.close_code: int | None = None
        self.close_reason = ""
        self.closed = asyncio.get_running_loop().create_future()
        self._opened = asyncio.get_running_loop().create_future()
        self._buffer = bytearray()
        self._handshaken = False
        self._inflater: Any = None
        self._waiters: list[tuple[Any, asyncio.Future[None]]] = []
        self.terminals: set[str] = set()
        self.subscribed = 0
        self.bytes_received = 0

    @classmethod
    async def connect(cls, port: int, deflate: bool = False, rcvbuf: int | None = None) -> "WsClient":
        loop = asyncio.get_running_loop()
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        sock.setblocking(False)
        await loop.sock_connect(sock, ("127.0.0.1", port))
        _, client = await loop.create_connection(lambda: cls(deflate), sock=sock)
        key = base64.b64encode(os.urandom(16)).decode()
        extension = "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n" if deflate else ""
        assert client.transport is not None
        client.transport.write(
            (
                f"GET /ws HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n{extension}\r\n"
            ).encode()
        )
        await asyncio.wait_for(client._opened, 30)
        return client

    # asyncio.Protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def connection_lost(self, exc: Exception | None) -> None:
        if not self._opened.done():
            self._opened.set_exception(ConnectionError("closed during the handshake"))
        if not self.closed.done():
            self.closed.set_result(None)
        self._wake()

    def data_received(self, data: bytes) -> None:
        now = time.perf_counter()
        self.bytes_received += len(data)
        buffer = self._buffer
        buffer += data
        if not self._handshaken:
            end = buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            head = bytes(buffer[:end]).decode("latin-1")
            del buffer[: end + 4]
            if " 101 " not in head.split("\r\n", 1)[0]:
                self._opened.set_exception(ConnectionError(head.split("\r\n", 1)[0]))
                return
            if self.deflate and "permessage-deflate" in head.lower():
                self._inflater = zlib.decompressobj(-15)
            self._handshaken = True
            self._opened.set_result(None)
        position, size = 0, len(buffer)
        woke = False
        while size - position >= 2:
            first, second = buffer[position], buffer[position + 1]
            length, start = second & 0x7F, position + 2
            if length == 126:
                if size - position < 4:
                    break
                length, start = int.from_bytes(buffer[position + 2 : position + 4], "big"), position + 4
            elif length == 127:
                if size - position < 10:
                    break
                length, start = int.from_bytes(buffer[position + 2 : position + 10], "big"), position + 10
            if size - start < length:
                break
            payload = bytes(buffer[start : start + length])
            position = start + length
            opcode = first & 0x0F
            if first & 0x40 and self._inflater is not None:
                payload = self._inflater.decompress(payload + b"\x00\x00\xff\xff")
            if opcode == 1:
                text = payload.decode()
                self.messages.append((now, text))
                if '"subscribed"' in text:
                    self.subscribed += 1
                    woke = True
                elif '"generation_started"' in text:
                    woke = True  # bench/workers.py waits for a job to start again elsewhere
                for kind in TERMINAL_TYPES:
                    if kind in text:
                        self.terminals.add(json.loads(text)["session_id"])
                        woke = True
                        break
            elif opcode == 8:
                self.close_code = int.from_bytes(payload[:2], "big") if len(payload) >= 2 else 1005
                self.close_reason = payload[2:].decode(errors="replace")
                if self.transport is not None:
                    self.transport.write(_frame(8, payload[:2]))
                    self.transport.close()
            elif opcode == 9:
                if self.transport is not None:
                    self.transport.write(_frame(10, payload))
        del buffer[:position]
        if woke:
            self._wake()

    def _wake(self) -> None:
        for condition, future in tuple(self._waiters):
            if not future.done() and (condition() or self.closed.done()):
                future.set_result(None)

    async def wait_for(self, condition, timeout: float) -> None:
        if condition():
            return
        future = asyncio.get_running_loop().create_future()
        entry = (condition, future)
        self._waiters.append(entry)
        try:
            await asyncio.wait_for(future, timeout)
        finally:
            self._waiters.remove(entry)

    # sending
    def send_json(self, message: dict[str, Any]) -> None:
        assert self.transport is not None
        self.transport.write(_frame(1, json.dumps(message).encode()))

    def subscribe(self, session_id: str, **options: Any) -> None:
        self.send_json({"type": "subscribe", "session_id": session_id, **options})

    def pause(self) -> None:
        assert self.transport is not None
        self.transport.pause_reading()

    def resume(self) -> None:
        assert self.transport is not None
        self.transport.resume_reading()

    def close(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            try:
                self.transport.write(_frame(8, (1000).to_bytes(2, "big")))
            finally:
                self.transport.close()

    def parsed(self) -> list[tuple[float, dict[str, Any]]]:
        return [(t, json.loads(text)) for t, text in self.messages]


async def connect_many(port: int, count: int, deflate: bool = False, batch: int = 50) -> list[WsClient]:
    clients: list[WsClient] = []
    for start in range(0, count, batch):
        clients += await asyncio.gather(*(WsClient.connect(port, deflate) for _ in range(min(batch, count - start))))
    return clients


async def subscribe_all(clients: list[WsClient], session_ids: list[str], timeout: float = 120, **options: Any) -> None:
    for client in clients:
        before = client.subscribed
        for session_id in session_ids:
            client.subscribe(session_id, **options)
        client._expected = before + len(session_ids)  # type: ignore[attr-defined]
    await asyncio.gather(
        *(c.wait_for(lambda c=c: c.subscribed >= c._expected, timeout) for c in clients)  # type: ignore[attr-defined]
    )


async def wait_terminals(clients: list[WsClient], session_ids: list[str], timeout: float = 300) -> None:
    wanted = set(session_ids)
    await asyncio.gather(*(c.wait_for(lambda c=c: wanted <= c.terminals, timeout) for c in clients))


async def post_job(base_url: str, body: dict[str, Any], http: Any = None) -> str:
    """Submit a job; `http`: an `httpx.AsyncClient` on `base_url` to reuse (a client sending many jobs keeps
    its connection, as real ones do: a new `AsyncClient` costs the bench's own loop ~10-40 ms of CPU)."""
    import httpx

    if http is not None:
        response = await http.post("/api/generate", json=body)
        response.raise_for_status()
        return response.json()["session_id"]
    async with httpx.AsyncClient(base_url=base_url, timeout=30) as fresh:
        return await post_job(base_url, body, fresh)


class ClientThread:
    """An event loop in a thread of its own, where a bench's /ws clients live; `run` waits for a coroutine there.

    `niceness` > 0 runs that thread (only it: Linux sets priority per thread) below the server and the
    model, so the clients take the CPU those leave, as watchers on other machines would, instead of
    preempting the generation on this machine's two cores. Start subprocesses from another thread:
    a child inherits the niceness of the thread that started it.
    """

    def __init__(self, niceness: int = 0, name: str = "bench clients") -> None:
        self.niceness = niceness
        self.loop = asyncio.new_event_loop()
        ready = threading.Event()

        def serve() -> None:
            if niceness:
                os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), niceness)
            asyncio.set_event_loop(self.loop)
            self.loop.call_soon(ready.set)
            self.loop.run_forever()

        self.thread = threading.Thread(target=serve, name=name, daemon=True)
        self.thread.start()
        ready.wait()

    def run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result()

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join()
        self.loop.close()
