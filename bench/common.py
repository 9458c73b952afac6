"""Shared pieces of the benchmarks: the model, a real server subprocess, a lean /ws client, statistics.

The /ws client here is a plain asyncio protocol (no library): it stamps `time.perf_counter()` the
moment bytes arrive and parses frames in place, so a thousand of them in one process cost little and
the client adds as little as possible to what is measured. It can offer permessage-deflate the way
browsers and the `websockets` library do (`deflate=True`).

`python -m bench.common --hooked <app flags>` runs the real app (`app.__main__.main`) with bench-only
hooks that record, per progress message, the `perf_counter` at which the diffusion callback fired (in
the generation process; its messages carry the time), and, per job, when the pipeline was entered and
left and when the terminal message was published;
`GET /bench/stamps` returns them. The protocol and the app's files are unchanged. On Linux
`perf_counter` is CLOCK_MONOTONIC, one clock for every process of the machine.
"""
from __future__ import annotations

import asyncio
import base64
import json
import os
import platform
import resource
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

PROJECT_ROOT = Path(__file__).resolve().parent.parent
EMBEDDED_MODEL = PROJECT_ROOT / "assets" / "models" / "ai-artist-tiny"
WORK_ROOT = Path(tempfile.gettempdir()) / "ai-artist-bench"
PROMPT = "A serene mountain landscape at sunset"
TERMINAL_TYPES = ("generation_complete", "generation_error", "generation_cancelled")


@dataclass
class Row:
    bench: str
    metric: str
    value: float | str | None
    unit: str = ""
    target: str = ""
    met: bool | None = None
    note: str = ""


@dataclass
class Context:
    model: Path
    smoke: bool
    work: Path
    notes: dict[str, list[str]] = field(default_factory=dict)

    def note(self, bench: str, text: str) -> None:
        self.notes.setdefault(bench, []).append(text)


# --------------------------------------------------------------------------- model and machine


def default_model(work: Path = WORK_ROOT) -> Path:
    """The embedded model when it is there, else a tiny random SD pipeline built once into `work`."""
    if (EMBEDDED_MODEL / "model_index.json").is_file():
        return EMBEDDED_MODEL
    path = work / "tiny-sd"
    if not (path / "model_index.json").is_file():
        from app.tiny_models import build_tiny_pipeline

        build_tiny_pipeline("sd", path)
    return path


def model_label(model: Path) -> str:
    if model.resolve() == EMBEDDED_MODEL.resolve():
        return "assets/models/ai-artist-tiny (embedded)"
    if model.name == "tiny-sd" and model.parent == WORK_ROOT:
        return "tiny random SD pipeline (`build_tiny_pipeline('sd')`; the embedded model was not present)"
    return str(model)


def machine() -> dict[str, str]:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    versions = {"python": platform.python_version()}
    for name in ("torch", "diffusers", "nicegui", "uvicorn", "websockets"):
        try:
            from importlib.metadata import version

            versions[name] = version(name)
        except Exception:
            versions[name] = "?"
    return {
        "cpu": cpu,
        "cores": str(os.cpu_count()),
        "os": f"{platform.system()} {platform.release()}",
        "versions": ", ".join(f"{k} {v}" for k, v in versions.items()),
        "clock": time.get_clock_info("perf_counter").implementation,
    }


def raise_open_files(needed: int) -> tuple[int, int]:
    """Raise this process's soft RLIMIT_NOFILE to `needed` (or the hard limit); returns (soft, hard)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < needed:
        target = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)


# --------------------------------------------------------------------------- statistics


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


# --------------------------------------------------------------------------- the server


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Server:
    """`python -m app` (or the hooked variant) on a free loopback port, one thread for torch."""

    def __init__(self, model: Path, data_dir: Path, hooked: bool = False, env: dict[str, str] | None = None) -> None:
        self.model, self.data_dir, self.hooked = model, data_dir, hooked
        self.env = env or {}
        self.port = 0
        self.process: subprocess.Popen[bytes] | None = None
        self.started_at = 0.0

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, wait: str | None = "model", timeout: float = 120) -> "Server":
        self.port = free_port()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        inherited = {k: v for k, v in os.environ.items() if k != "PYTEST_CURRENT_TEST"}
        env = {**inherited, "AI_ARTIST_MODEL__CPU_THREADS": "1", "PYTHONUNBUFFERED": "1", **self.env}
        flags = ["--port", str(self.port), "--data-dir", str(self.data_dir), "--model", str(self.model)]
        command = [sys.executable, "-m", "bench.common", "--hooked", *flags] if self.hooked else [
            sys.executable, "-m", "app", *flags]
        log = (self.data_dir / "server-output.log").open("ab")
        self.started_at = time.perf_counter()
        self.process = subprocess.Popen(command, cwd=PROJECT_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
        if wait == "model":
            self.wait_until(lambda h: h["model"]["state"] != "loading", timeout)
        return self

    def health(self) -> dict[str, Any] | None:
        import httpx

        try:
            return httpx.get(f"{self.base_url}/api/health", timeout=2).json()
        except (httpx.HTTPError, ValueError):
            return None

    def wait_until(self, condition, timeout: float = 120) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                raise RuntimeError(f"server exited with {self.process.returncode}:\n{self.output()}")
            health = self.health()
            if health is not None and condition(health):
                if health["model"]["state"] == "error":
                    raise RuntimeError(f"model failed to load: {health['model']['error']}")
                return health
            time.sleep(0.05)
        raise TimeoutError(f"server not ready in {timeout}s:\n{self.output()}")

    def wait_idle(self, timeout: float = 120) -> None:
        self.wait_until(lambda h: h["queue"]["pending"] == 0 and h["queue"]["running"] == 0, timeout)

    def output(self) -> str:
        path = self.data_dir / "server-output.log"
        return path.read_text(errors="replace")[-4000:] if path.exists() else ""

    def rss_kb(self) -> int:
        assert self.process is not None
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        raise RuntimeError("no VmRSS")

    def cpu_wait_ms(self) -> dict[str, tuple[float, float]]:
        """Per thread: (ms on a CPU, ms runnable but waiting for a CPU) so far (/proc schedstat), for the
        server's threads ("event loop" is its main thread) and the generation process's ("pipeline:"...;
        "pipeline" is its main thread, the one that runs the pipeline)."""
        assert self.process is not None
        result: dict[str, tuple[float, float]] = {}
        health = self.health() or {}
        generation_pid = (health.get("model") or {}).get("process_id")
        processes = [(self.process.pid, "event loop", "")]
        if generation_pid:
            processes.append((generation_pid, "pipeline", "pipeline: "))
        for pid, main_name, prefix in processes:
            for task in Path(f"/proc/{pid}/task").iterdir():
                try:
                    name = prefix + (task / "comm").read_text().strip()
                    ran, waited, _ = (task / "schedstat").read_text().split()
                except (OSError, ValueError):
                    continue
                if task.name == str(pid):
                    name = main_name
                old = result.get(name, (0.0, 0.0))
                result[name] = (old[0] + int(ran) / 1e6, old[1] + int(waited) / 1e6)
        return result

    def stamps(self) -> dict[str, Any]:
        import httpx

        return httpx.get(f"{self.base_url}/bench/stamps", timeout=30).json()

    def runtime(self) -> dict[str, Any]:
        import httpx

        return httpx.get(f"{self.base_url}/bench/runtime", timeout=30).json()

    def outboxes(self) -> list[dict[str, Any]]:
        import httpx

        return httpx.get(f"{self.base_url}/bench/outboxes", timeout=30).json()

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)

    def __enter__(self) -> "Server":
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def job_body(steps: int, seed: int = 1234, **extra: Any) -> dict[str, Any]:
    return {"prompt": PROMPT, "num_inference_steps": steps, "guidance_scale": 7.5, "seed": seed, **extra}


# --------------------------------------------------------------------------- a lean /ws client


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


async def post_job(base_url: str, body: dict[str, Any]) -> str:
    import httpx

    async with httpx.AsyncClient(base_url=base_url, timeout=30) as http:
        response = await http.post("/api/generate", json=body)
        response.raise_for_status()
        return response.json()["session_id"]


# --------------------------------------------------------------------------- the hooked server


def _hooked_main(argv: list[str]) -> None:
    from nicegui import app as web_app

    from app.events import EventBus
    from app.pipeline_client import PipelineProcess
    from app.pipeline_messages import JobCancelled, JobFailed, JobFinished, StepDone
    from app.protocol import TERMINAL_EVENTS, GenerationProgress, GenerationStarted

    callback_time: dict[tuple[str, int], float] = {}
    stamps: dict[str, list[Any]] = {"progress": [], "terminal": [], "generate": [], "started": [], "gc": []}

    original_dispatch = PipelineProcess._dispatch

    def dispatch(self: PipelineProcess, message: Any) -> None:
        """Note when the generation process's callback fired and when its pipeline call ran."""
        if isinstance(message, StepDone):
            callback_time[(message.session_id, message.step)] = message.at
        elif isinstance(message, (JobFinished, JobCancelled, JobFailed)):
            stamps["generate"].append([message.entered_at, message.left_at])
        original_dispatch(self, message)

    original_publish = EventBus.publish

    def publish(self: EventBus, event: Any) -> Any:
        fired = callback_time.pop((event.session_id, event.step), None) if isinstance(event, GenerationProgress) else None
        published = time.perf_counter()
        result = original_publish(self, event)
        if fired is not None:
            stamps["progress"].append([event.session_id, event.seq, event.step, fired, published])
        elif isinstance(event, TERMINAL_EVENTS):
            stamps["terminal"].append([event.session_id, event.seq, event.type, published])
        elif isinstance(event, GenerationStarted):
            stamps["started"].append([event.session_id, published])
        return result

    collection_began = [0.0]

    def on_gc(phase: str, info: dict[str, Any]) -> None:
        """Note every garbage collection over 1 ms: the whole interpreter (the loop) pauses."""
        now = time.perf_counter()
        if phase == "start":
            collection_began[0] = now

        elif now - collection_began[0] > 0.001:
            stamps["gc"].append([collection_began[0], (now - collection_began[0]) * 1000, info["generation"]])

    import gc

    gc.callbacks.append(on_gc)
    PipelineProcess._dispatch = dispatch  # type: ignore[method-assign]
    EventBus.publish = publish  # type: ignore[method-assign]

    @web_app.get("/bench/stamps", include_in_schema=False)
    def bench_stamps() -> dict[str, list[Any]]:
        return stamps

    @web_app.get("/bench/outboxes", include_in_schema=False)
    def bench_outboxes() -> list[dict[str, Any]]:
        """Each open connection's waiting messages (read-only look at app.websocket's state)."""
        from app.websocket import manager

        return [
            {"pending": len(c.outbox), "closed": c.closed, "sessions": sorted(c.sessions)}
            for c in tuple(manager.connections.values())
        ]

    @web_app.get("/bench/runtime", include_in_schema=False)
    def bench_runtime() -> dict[str, Any]:
        """How many of uvicorn's open connections each protocol class serves (which websocket library),
        and the garbage collector's thresholds (app/idle_gc.py raises the last one)."""
        from collections import Counter

        from nicegui.server import Server

        return {
            "protocols": dict(Counter(type(c).__name__ for c in Server.instance.server_state.connections)),
            "gc_threshold": gc.get_threshold(),
        }

    from app.__main__ import main

    main(argv)


if __name__ == "__main__":
    if sys.argv[1:2] == ["--hooked"]:
        _hooked_main(sys.argv[2:])
    else:
        sys.exit("usage: python -m bench.common --hooked <python -m app flags>")
