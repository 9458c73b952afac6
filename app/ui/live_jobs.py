"""Job state the NiceGUI widgets bind to, kept current from the event bus on the event loop.

This is the NiceGUI face of the one event stream that also feeds /ws: a `LiveJob` per session with
bindable fields, so `ui.linear_progress().bind_value_from(job, "progress")` moves as the diffusion
callback reports each step. Fields are only ever set on the event loop (the bus calls listeners there).

`LiveJobs` is the only bridge from bus events to bindable state. Pages never listen to the bus
themselves: they bind to `LiveJob` fields and register hooks here (a new job appeared, a job finished
with images) and remove them when their client goes away. The model's events on the same bus
(`ModelChanged`, and `ModelLoading` during a hub download) keep `StudioStatus` current: the studio is
told, it never polls.
"""
from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from collections.abc import Callable
from typing import Generic, TypeVar

from nicegui import background_tasks, binding

from ..engine import Engine, JobNotFound
from ..engine.events import ModelEvent
from ..pipeline.values import SizeLimits, display_name
from ..protocol import (
    TERMINAL_STATUSES,
    GenerateRequest,
    GenerationCancelled,
    GenerationComplete,
    GenerationError,
    GenerationMetadata,
    GenerationPreview,
    GenerationProgress,
    GenerationQueued,
    GenerationStarted,
    JobView,
    ModelLoading,
    SessionEvent,
)

log = logging.getLogger(__name__)

HookArgument = TypeVar("HookArgument")


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
    image_urls: tuple[str, ...] = ()
    error: str = ""
    num_images: int = 1
    request: GenerateRequest | None = None
    metadata: GenerationMetadata | None = None
    worker: str = ""  # the worker it runs (or ran) on

    @property
    def step_text(self) -> str:
        if not self.total_steps:
            return ""
        return f"step {min(self.step, self.total_steps)}/{self.total_steps}"

    @property
    def finished(self) -> bool:
        return self.status in TERMINAL_STATUSES

    def apply(self, event: SessionEvent) -> None:
        if isinstance(event, GenerationQueued):
            self.status, self.position = "queued", event.position
        elif isinstance(event, GenerationStarted):
            self.position, self.step, self.progress = None, 0, 0.0
            self.total_steps, self.status = event.total_steps, "running"
            self.worker = event.worker
        elif isinstance(event, GenerationProgress):
            self.total_steps, self.step = event.total_steps, event.step
            self.progress = min(event.step / event.total_steps, 1.0) if event.total_steps else 0.0
            self.eta_seconds = event.eta_seconds
            self.status = "running"
        elif isinstance(event, GenerationPreview):
            # Bind the card to the preview's URL, never to its base64 data: NiceGUI would resend the
            # whole data URL with every change of the element and keep it in its replay history.
            url = getattr(event, "image_url", None)
            if url:
                self.preview_url = url
        elif isinstance(event, GenerationComplete):
            self.preview_url = ""  # the server stops serving it now: no tab may ask for it any more
            self.metadata, self.image_urls = event.metadata, tuple(event.image_urls)
            self.progress, self.eta_seconds, self.step = 1.0, 0.0, max(self.step, self.total_steps)
            self.status = "completed"
        elif isinstance(event, GenerationError):
            self.preview_url, self.error, self.status = "", event.error, "failed"
        elif isinstance(event, GenerationCancelled):
            self.preview_url, self.error, self.status = "", "Cancelled", "cancelled"


@binding.bindable_dataclass
class StudioStatus:
    """The model and queue as the header and the model picker show them, set on the loop only: from
    `engine.health()` whenever the bus tells of a change, and from `model_loading` messages."""

    model_id: str = ""  # what the engine was asked to load: an absolute path or a hub id
    model_name: str = ""
    model_state: str = "loading"
    model_error: str = ""
    pending: int = 0
    running: int = 0
    workers_total: int = 0
    workers_busy: int = 0
    schedulers: tuple[str, ...] = ()
    size_limits: SizeLimits | None = None
    downloading: bool = False  # a hub download of the loading model is under way (or just finished)
    downloaded_bytes: int = 0
    download_total: int | None = None  # an estimate; None when the hub did not tell

    @property
    def download_fraction(self) -> float | None:
        """0..1 of the download, None when the total is unknown."""
        if not self.download_total:
            return None
        return min(self.downloaded_bytes / self.download_total, 1.0)

    def apply_download(self, message: ModelLoading) -> None:
        """Take a `model_loading` message about the model now loading (others are stale: ignored)."""
        if message.model != self.model_id or self.model_state != "loading":
            return
        self.downloaded_bytes, self.download_total = message.downloaded_bytes, message.total_bytes
        self.downloading = True


async def next_loop_turn() -> None:
    """Resume only after the loop has served the sockets and timers that became ready meanwhile.

    One `asyncio.sleep(0)` is not enough: asyncio runs what was queued with `call_soon` ahead of the
    timers and sockets that fell due since, so two pages' hooks (a job card each, several milliseconds) could run back
    to back before any of them (bench/bench_ui.py showed two cards in the loop's busiest window)."""
    await asyncio.sleep(0)
    await asyncio.sleep(0)


class Hooks(Generic[HookArgument]):
    """Callbacks of the open pages, run one page at a time by a task that yields between pages.

    A hook may build elements (a job card, a gallery page); run back to back for many tabs inside the
    bus listener, that would stall the loop for all of them at once. One page per loop turn, the loop
    serves sockets and timers in between. One failing page never stops the others or the bus.
    """

    def __init__(self) -> None:
        self._hooks: set[Callable[[HookArgument], None]] = set()

    def __len__(self) -> int:
        return len(self._hooks)

    def add(self, hook: Callable[[HookArgument], None]) -> None:
        self._hooks.add(hook)

    def discard(self, hook: Callable[[HookArgument], None]) -> None:
        self._hooks.discard(hook)

    def call(self, argument: HookArgument) -> None:
        if self._hooks:
            background_tasks.create(self._run_all(tuple(self._hooks), argument), name="page hooks")

    async def _run_all(self, hooks: tuple[Callable[[HookArgument], None], ...], argument: HookArgument) -> None:
        for hook in hooks:
            self.run(hook, argument)
            await next_loop_turn()  # the loop serves sockets and timers before the next page

    def run(self, hook: Callable[[HookArgument], None], argument: HookArgument) -> None:
        if hook not in self._hooks:
            return  # its page went away meanwhile
        try:
            hook(argument)
        except Exception:
            log.exception("a page hook failed")


class LiveJobs:
    """Every job this process knows, as bindable objects, plus hooks the open pages register."""

    def __init__(self, engine: Engine, keep: int = 500) -> None:
        self.engine = engine
        self.keep = keep
        self.jobs: OrderedDict[str, LiveJob] = OrderedDict()
        self.status = StudioStatus()
        self.refresh_status()
        self.job_added_hooks: Hooks[LiveJob] = Hooks()
        self.completion_hooks: Hooks[GenerationComplete] = Hooks()
        engine.events.add_global_listener(self._on_event)
        engine.events.add_model_listener(self._on_model_event)

    async def close(self) -> None:
        """app.on_shutdown: stop listening."""
        self.engine.events.remove_global_listener(self._on_event)
        self.engine.events.remove_model_listener(self._on_model_event)

    def refresh_status(self) -> None:
        health = self.engine.health()
        model_id = health.model.id
        if model_id != self.status.model_id:  # a switch: forget the previous model's download
            self.status.downloading, self.status.downloaded_bytes, self.status.download_total = False, 0, None
        self.status.model_name = display_name(model_id)
        self.status.model_id = model_id  # after the name: what follows the id may show the name
        self.status.schedulers = tuple(getattr(health.model, "schedulers", None) or ())
        self.status.size_limits = self.engine.size_limits
        self.status.model_state = health.model.state
        self.status.model_error = health.model.error or ""
        if health.model.state != "loading":
            self.status.downloading = False
        self.status.pending = health.queue.pending
        self.status.workers_total, self.status.workers_busy = health.workers.total, health.workers.busy
        # The worker forgets its running job only after publishing the terminal event: count our own.
        self.status.running = sum(job.status == "running" for job in self.jobs.values())

    def _on_model_event(self, event: ModelEvent) -> None:
        """The model's state changed, or a hub download progressed (the bus calls this on the loop)."""
        if not isinstance(event, ModelLoading) or event.model != self.status.model_id:
            self.refresh_status()
        if isinstance(event, ModelLoading):
            self.status.apply_download(event)

    # -- jobs -----------------------------------------------------------------------------------

    def get(self, session_id: str) -> LiveJob:
        job = self.jobs.get(session_id)
        if job is None:
            job = self.jobs[session_id] = self._from_store(session_id)
            while len(self.jobs) > self.keep:
                self.jobs.popitem(last=False)
        return job

    def _from_store(self, session_id: str) -> LiveJob:
        try:
            return self.from_view(self.engine.job_view(session_id))
        except JobNotFound:
            return LiveJob(session_id=session_id)

    @staticmethod
    def from_view(view: JobView) -> LiveJob:
        total = view.total_steps
        completed = view.status == "completed"
        return LiveJob(
            session_id=view.session_id,
            prompt=view.request.prompt,
            status=view.status,
            step=max(view.step, total) if completed else view.step,
            total_steps=total,
            progress=1.0 if completed else min(view.step / total, 1.0) if total else 0.0,
            eta_seconds=view.eta_seconds,
            position=view.position,
            image_urls=tuple(view.image_urls),
            error="Cancelled" if view.status == "cancelled" else view.error or "",
            num_images=view.request.num_images,
            request=view.request,
            metadata=view.metadata,
            worker=view.worker or "",
        )

    def unfinished(self) -> list[LiveJob]:
        return [self.get(view.session_id) for view in self.engine.unfinished_jobs()]

    def recent(self, finished_limit: int = 4) -> list[LiveJob]:
        """Jobs a freshly opened page shows, newest first: every unfinished one plus the latest finished."""
        unfinished = self.unfinished()
        newest = self.engine.jobs(offset=0, limit=len(unfinished) + finished_limit).items
        shown = {job.session_id for job in unfinished}
        finished = [self.get(view.session_id) for view in newest if view.session_id not in shown][:finished_limit]
        jobs = [*unfinished, *finished]
        order = {view.session_id: index for index, view in enumerate(newest)}
        return sorted(jobs, key=lambda job: order.get(job.session_id, -1))

    def _on_event(self, event: SessionEvent, _text: str) -> None:
        is_new = event.session_id not in self.jobs
        job = self.get(event.session_id)
        job.apply(event)
        if not isinstance(event, (GenerationProgress, GenerationPreview)):
            self.refresh_status()
        if is_new and isinstance(event, GenerationQueued):
            self.job_added_hooks.call(job)
        if isinstance(event, GenerationComplete):
            self.completion_hooks.call(event)
