"""Wire the engine into NiceGUI's FastAPI app: REST routes, /ws, pages, start-up and shut-down."""
from __future__ import annotations

import sqlite3
import sys
from collections.abc import Callable
from pathlib import Path

from fastapi.middleware.cors import CORSMiddleware
from nicegui import app as web_app
from nicegui import background_tasks, ui

from ..config import Settings
from ..engine import Engine
from ..engine.events import bus
from ..pipeline.progress_sink import set_session_progress_sink
from ..protocol import GenerationProgress, progress_text
from . import a1111, api, openai_edits, openai_images, websocket
from .auth import Keys
from .console import announce_access, announce_launch, announce_model_changes, configure_logging
from .idle_gc import IdleCollector, exempt_startup_objects
from .launch_checks import LaunchProblem, check_writable, database_problem
from .limits import ConnectionCounter
from .origins import OriginPolicy, is_loopback
from .security import SecurityGate


def collect_garbage_while_idle(engine: Engine) -> Callable[[], None]:
    """A start-up hook: freeze the start-up objects, then keep full garbage collections out of jobs
    (app/web/idle_gc.py)."""

    def start() -> None:
        exempt_startup_objects()
        background_tasks.create(IdleCollector(engine.is_idle).run(), name="idle garbage collection")

    return start


def serve_websockets_with_sansio() -> None:
    """Serve every websocket (/ws and NiceGUI's own) with uvicorn's `websockets-sansio` protocol.

    NiceGUI's `ui.run` pins uvicorn to `ws="wsproto"` (to avoid the deprecated `websockets.legacy`, not
    for speed); uvicorn itself picks `websockets-sansio` by default since 0.50. Its framing costs the
    /ws fan-out about a third less event-loop CPU per delivered message (bench/latency.py; figures in
    docs/benchmarks.md). Runs at start-up, before uvicorn listens: each new connection reads
    `config.ws_protocol_class` when it upgrades.
    """
    from nicegui.server import Server
    from uvicorn.protocols.websockets.websockets_sansio_impl import (
        WebSocketsSansIOProtocol,
    )

    server = getattr(Server, "instance", None)
    if server is not None:  # None under NiceGUI's simulated `User` tests: no uvicorn at all
        server.config.ws_protocol_class = WebSocketsSansIOProtocol


FRAME_FLOOR_BYTES = 2 * 1024 * 1024  # above engine.io's own 1 MB message limit: NiceGUI's socket is unaffected


def bound_websocket_frames(max_message_bytes: int) -> Callable[[], None]:
    """A start-up hook: uvicorn buffers a WebSocket frame whole before anyone sees it (16 MiB by default); keep
    that to max(server.ws_max_message_bytes, 2 MiB). /ws closes anything over its own limit with 1009."""

    def apply() -> None:
        from nicegui.server import Server

        server = getattr(Server, "instance", None)
        if server is not None:
            server.config.ws_max_size = max(max_message_bytes, FRAME_FLOOR_BYTES)

    return apply


def publish_library_progress(session_id: str, step: int, total_steps: int) -> None:
    """The progress sink of `ArtworkGenerator.generate(..., session_id=...)` inside the server's process."""
    bus.publish_threadsafe(
        GenerationProgress(
            session_id=session_id, step=step, total_steps=total_steps, message=progress_text(step, total_steps)
        )
    )


def build(settings: Settings) -> Engine:
    """Create the engine and attach every face of it to NiceGUI's app. Call once, before `ui.run`."""
    engine = Engine(settings, bus)
    web_app.state.engine = engine
    web_app.add_middleware(
        CORSMiddleware,
        allow_origin_regex=settings.server.cors_origins,
        allow_methods=["GET", "POST"],
        allow_headers=["Content-Type", "Authorization"],
    )
    server = settings.server
    keys = Keys(server.api_keys)
    web_app.add_middleware(  # added last: outermost, before CORS and everything of NiceGUI's
        SecurityGate,
        keys=keys,
        origins=OriginPolicy(server.cors_origins, local_only_hosts=not keys and is_loopback(server.host),
                             extra_hosts=server.allowed_hosts),
        max_body_bytes=server.max_body_bytes,
        connections=ConnectionCounter(server.max_connections_per_client),
    )
    websocket.manager.bind_engine(engine)
    set_session_progress_sink(publish_library_progress)
    web_app.include_router(api.router)
    web_app.include_router(websocket.router)
    web_app.state.a1111 = a1111.A1111Api(engine)
    web_app.include_router(a1111.router)
    web_app.include_router(openai_images.router)
    web_app.include_router(openai_edits.router)
    web_app.on_startup(serve_websockets_with_sansio)
    web_app.on_startup(bound_websocket_frames(server.ws_max_message_bytes))
    web_app.on_startup(engine.start)
    web_app.on_startup(collect_garbage_while_idle(engine))
    web_app.on_shutdown(engine.stop)
    from ..ui import pages, signin

    signin.register(web_app, keys)
    pages.register(engine)
    return engine


def run(settings: Settings) -> None:
    data_dir = Path(settings.storage.data_dir).resolve()
    try:
        check_writable(data_dir)
    except LaunchProblem as problem:
        sys.exit(f"ai-artist: {problem}")
    log_file = configure_logging(data_dir)
    generated_key = announce_access(settings)  # before build: a generated key is one of the keys
    try:
        engine = build(settings)
    except sqlite3.DatabaseError as error:
        sys.exit(f"ai-artist: {database_problem(data_dir, error)}")
    announce_launch(settings, log_file, generated_key)
    announce_model_changes(engine)
    ui.run(
        host=settings.server.host,
        port=settings.server.port,
        title=settings.server.title,
        reload=False,
        show=False,
        dark=None,
        fastapi_docs=True,
        show_welcome_message=False,
        favicon="🎨",
        # permessage-deflate keeps zlib state per socket and adds to progress latency (docs/benchmarks.md).
        ws_per_message_deflate=False,
    )
