"""The real app (`app.__main__.main`) with bench-only hooks: `python -m bench.hooked_server <app flags>`.

The hooks record, per progress message, the `perf_counter` at which the diffusion callback fired (in
the generation process; its messages carry the time), and, per job, when the pipeline was entered and
left and when the terminal message was published; `GET /bench/stamps` returns them. The protocol and
the app's files are unchanged. On Linux `perf_counter` is CLOCK_MONOTONIC, one clock for every process
of the machine.
"""
from __future__ import annotations

import sys
import time
from typing import Any


def main(argv: list[str]) -> None:
    from nicegui import app as web_app

    from app.engine.events import EventBus
    from app.pipeline.client import PipelineProcess
    from app.pipeline.messages import JobCancelled, JobFailed, JobFinished, StepDone
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

    from app.engine.remote import RemoteWorkers

    original_handle = RemoteWorkers._handle

    async def handle(self: RemoteWorkers, event: Any) -> None:
        """The same for a remote worker's step (queue.backend redis): its event carries the callback's time."""
        if event.kind == "step" and "at" in event.data:
            callback_time[(event.session_id, event.data["step"])] = event.data["at"]
        await original_handle(self, event)

    RemoteWorkers._handle = handle  # type: ignore[method-assign]

    import gc

    gc.callbacks.append(on_gc)
    PipelineProcess._dispatch = dispatch  # type: ignore[method-assign]
    EventBus.publish = publish  # type: ignore[method-assign]

    @web_app.get("/bench/stamps", include_in_schema=False)
    def bench_stamps() -> dict[str, list[Any]]:
        return stamps

    @web_app.get("/bench/outboxes", include_in_schema=False)
    def bench_outboxes() -> list[dict[str, Any]]:
        """Each open connection's waiting messages (read-only look at app.web.websocket's state)."""
        from app.web.websocket import manager

        return [
            {"pending": len(c.outbox), "closed": c.closed, "sessions": sorted(c.sessions)}
            for c in tuple(manager.connections.values())
        ]

    @web_app.get("/bench/runtime", include_in_schema=False)
    def bench_runtime() -> dict[str, Any]:
        """How many of uvicorn's open connections each protocol class serves (which websocket library),
        and the garbage collector's thresholds (app/web/idle_gc.py raises the last one)."""
        from collections import Counter

        from nicegui.server import Server

        return {
            "protocols": dict(Counter(type(c).__name__ for c in Server.instance.server_state.connections)),
            "gc_threshold": gc.get_threshold(),
        }

    from app.__main__ import main as app_main

    app_main(argv)


if __name__ == "__main__":
    main(sys.argv[1:])
