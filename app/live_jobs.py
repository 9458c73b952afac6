"""Job state the NiceGUI widgets bind to, kept current from the event bus on the event loop.

This is the NiceGUI face of the one event stream that also feeds /ws: a `LiveJob` per session with
bindable fields, so `ui.linear_progress().bind_value_from(job, "progress")` moves as the diffusion
callback reports each step. Fields are only ever set on the event loop (the bus calls listeners there).
"""
from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable

from nicegui import binding

from .engine import Engine
from .protocol import (
    GenerationCancelled,
    GenerationComplete,
    GenerationError,
    GenerationPreview,
    GenerationProgress,
    GenerationQueued,
    GenerationStarted,
    JobView,
    SessionEvent,
)


@binding.bindable_dataclass
class LiveJob:
    session_id: str
    prompt: str = ""
    status: str = "queued"
    step: int = 0
    total_steps: int = 0
    progress: float = 0.0
    eta_seconds: float | None = None
    position: int | None = None
    preview_url: str = ""
    image_urls: list[str] | None = None
    error: str = ""

    @property
    def step_text(self) -> str:
        return f"step {self.step}/{self.total_steps}" if self.total_steps else ""

    @property
    def finished(self) -> bool:
        return self.status in ("completed", "failed", "cancelled")

    def apply(self, event: SessionEvent) -> None:
        if isinstance(event, GenerationQueued):
            self.status, self.position = "queued", event.position
        elif isinstance(event, GenerationStarted):
            self.status, self.position, self.total_steps = "running", None, event.total_steps
        elif isinstance(event, GenerationProgress):
            self.status, self.step, self.total_steps = "running", event.step, event.total_steps
            self.progress = event.step / event.total_steps if event.total_steps else 0.0
            self.eta_seconds = event.eta_seconds
        elif isinstance(event, GenerationPreview):
            self.preview_url = event.image
        elif isinstance(event, GenerationComplete):
            self.status, self.progress, self.image_urls = "completed", 1.0, event.image_urls
            self.eta_seconds = 0
        elif isinstance(event, GenerationError):
            self.status, self.error = "failed", event.error
        elif isinstance(event, GenerationCancelled):
            self.status, self.error = "cancelled", "cancelled"


class LiveJobs:
    """Every job this process knows, as bindable objects, plus hooks for gallery refreshes."""

    def __init__(self, engine: Engine, keep: int = 500) -> None:
        self.engine = engine
        self.keep = keep
        self.jobs: OrderedDict[str, LiveJob] = OrderedDict()
        self.completion_hooks: set[Callable[[GenerationComplete], None]] = set()
        engine.events.add_global_listener(self._on_event)

    def get(self, session_id: str) -> LiveJob:
        job = self.jobs.get(session_id)
        if job is None:
            job = self.jobs[session_id] = self._from_store(session_id)
            while len(self.jobs) > self.keep:
                self.jobs.popitem(last=False)
        return job

    def _from_store(self, session_id: str) -> LiveJob:
        record = self.engine.store.get_job(session_id)
        if record is None:
            return LiveJob(session_id=session_id)
        return self.from_view(self.engine.view_of(record))

    @staticmethod
    def from_view(view: JobView) -> LiveJob:
        total = view.total_steps
        return LiveJob(
            session_id=view.session_id,
            prompt=view.request.prompt,
            status=view.status,
            step=view.step,
            total_steps=total,
            progress=(1.0 if view.status == "completed" else view.step / total if total else 0.0),
            eta_seconds=view.eta_seconds,
            position=view.position,
            image_urls=view.image_urls or None,
            error=view.error or "",
        )

    def unfinished(self) -> list[LiveJob]:
        records = self.engine.store.unfinished_jobs()
        return [self.get(record.id) for record in records]

    def _on_event(self, event: SessionEvent, _text: str) -> None:
        self.get(event.session_id).apply(event)
        if isinstance(event, GenerationComplete):
            for hook in tuple(self.completion_hooks):
                hook(event)
