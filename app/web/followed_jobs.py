"""Jobs that an imitated API (AUTOMATIC1111's, OpenAI's) waits on: submitted to the engine like any other
job, followed on the event bus (no polling) until their terminal message, with their latest step and ETA.

The request that submitted such a job answers only when the job has ended (both APIs block), but the job
is a normal one meanwhile: queued with the others, live in the studio and on /ws, kept in the gallery.
"""
from __future__ import annotations

import asyncio
import base64
from pathlib import Path

from pydantic import ValidationError

from ..engine import Engine
from ..protocol import (
    TERMINAL_EVENTS,
    GenerationComplete,
    GenerationProgress,
    GenerationStarted,
    SessionEvent,
)


class FollowedJob:
    """One submitted job, followed on the bus from the moment it was queued."""

    def __init__(self, engine: Engine, session_id: str) -> None:
        self.engine = engine
        self.session_id = session_id
        self.started = False
        self.step = 0
        self.total_steps = 0
        self.eta_seconds: float | None = None
        self._end: asyncio.Future[SessionEvent] = asyncio.get_running_loop().create_future()
        # Attached in the same loop turn as the submit, so no message of the job can be missed.
        engine.events.add_listener(session_id, self._on_event)

    @property
    def ended(self) -> bool:
        return self._end.done()

    @property
    def outcome(self) -> SessionEvent | None:
        """The terminal message once the job has ended."""
        return self._end.result() if self._end.done() else None

    async def wait(self) -> SessionEvent:
        """Until the job ends: its `generation_complete`, `generation_error` or `generation_cancelled`."""
        try:
            return await asyncio.shield(self._end)
        finally:
            if self._end.done():
                self.close()

    def close(self) -> None:
        self.engine.events.remove_listener(self.session_id, self._on_event)

    def _on_event(self, event: SessionEvent, _text: str) -> None:
        if isinstance(event, GenerationStarted):
            self.started, self.total_steps = True, event.total_steps
        elif isinstance(event, GenerationProgress):
            self.started, self.step, self.total_steps = True, event.step, event.total_steps
            self.eta_seconds = event.eta_seconds
        elif isinstance(event, TERMINAL_EVENTS) and not self._end.done():
            self._end.set_result(event)
            self.close()


def image_files(outcome: GenerationComplete) -> list[Path]:
    return [Path(path) for path in outcome.image_paths]


async def read_base64(paths: list[Path]) -> list[str]:
    """The files' bytes as base64 (no `data:` prefix), read off the event loop."""

    def read() -> list[str]:
        return [base64.b64encode(path.read_bytes()).decode("ascii") for path in paths]

    return await asyncio.to_thread(read)


def renamed_problems(error: ValidationError, names: dict[str, str]) -> list[tuple[str, str]]:
    """(field, message) for each problem of a `GenerateRequest`, named as the imitated API names the field."""
    problems = []
    for item in error.errors():
        field = str(item["loc"][0]) if item["loc"] else ""
        problems.append((names.get(field, field), item["msg"]))
    return problems
