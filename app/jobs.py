"""The job queue and the worker that runs one generation at a time on the model.

The queue holds session ids in FIFO order (the store holds the jobs themselves). The worker is an
asyncio task that sends each job to the generation process (app/pipeline_client.py) and turns what the
process reports (steps, previews, the outcome) into store updates and events, on the event loop.
"""
from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable
from pathlib import Path

from .config import PreviewSettings
from .events import EventBus
from .generator import random_seed
from .image_files import image_url
from .job_previews import PreviewStore, preview_event
from .pipeline_client import PipelineProcess, PipelineStopped
from .pipeline_messages import JobCancelled, JobFailed, JobSpec, PreviewReady, StepDone
from .protocol import (
    GenerationCancelled as CancelledEvent,
    GenerationComplete,
    GenerationError,
    GenerationProgress,
    GenerationQueued,
    GenerationStarted,
    progress_text,
)
from .store import JobRecord, Store

log = logging.getLogger(__name__)


class QueueFull(Exception):
    pass


class JobQueue:
    """A bounded FIFO of session ids waiting to run."""

    def __init__(self, max_pending: int) -> None:
        self.max_pending = max_pending
        self._ids: deque[str] = deque()
        self._available = asyncio.Event()

    def __len__(self) -> int:
        return len(self._ids)

    def put(self, session_id: str, *, force: bool = False) -> int:
        """Append and return the 1-based position; `force` ignores the bound (restart recovery)."""
        if not force and len(self._ids) >= self.max_pending:
            raise QueueFull(f"the queue is full ({self.max_pending} jobs waiting); try again later")
        self._ids.append(session_id)
        self._available.set()
        return len(self._ids)

    async def get(self) -> str:
        while not self._ids:
            self._available.clear()
            await self._available.wait()
        return self._ids.popleft()

    def remove(self, session_id: str) -> bool:
        try:
            self._ids.remove(session_id)
        except ValueError:
            return False
        return True

    def position(self, session_id: str) -> int | None:
        try:
            return self._ids.index(session_id) + 1
        except ValueError:
            return None

    def waiting(self) -> list[str]:
        return list(self._ids)


class StepClock:
    """Turns step callbacks into an ETA from the average time per step so far."""

    def __init__(self) -> None:
        self.started = time.perf_counter()

    def eta(self, step: int, total: int) -> float | None:
        if step <= 0:
            return None
        per_step = (time.perf_counter() - self.started) / step
        return round(per_step * max(total - step, 0), 2)


class JobWorker:
    """Takes jobs from the queue one at a time and runs each on the generation process; everything it
    does (store, events, previews) happens on the event loop as the process's messages arrive."""

    def __init__(
        self,
        store: Store,
        events: EventBus,
        queue: JobQueue,
        pipeline: Callable[[], PipelineProcess],
        images_dir: Path,
        wait_for_model: Callable[[], Awaitable[str | None]],
        previews: PreviewSettings | None = None,
        preview_store: PreviewStore | None = None,
        job_blocker: Callable[[JobRecord], str | None] | None = None,
    ) -> None:
        self.store = store
        self.events = events
        self.queue = queue
        self.pipeline = pipeline
        self.images_dir = images_dir
        self.wait_for_model = wait_for_model
        self.previews = previews or PreviewSettings(enabled=False)
        self.preview_store = preview_store or PreviewStore()
        self.job_blocker = job_blocker  # a reason the job cannot run on the current model, or None
        self.running_id: str | None = None
        self._running_on: PipelineProcess | None = None  # after a model switch, not the current one
        self.not_running = asyncio.Event()
        self.not_running.set()
        self.idle = asyncio.Event()

    def cancel_running(self, session_id: str) -> bool:
        running_on = self._running_on
        return self.running_id == session_id and running_on is not None and running_on.cancel(session_id)

    async def run_forever(self) -> None:
        while True:
            self.idle.set()
            model_error = await self.wait_for_model()  # jobs keep their place in the queue meanwhile
            session_id = await self.queue.get()
            self.idle.clear()
            record = self.store.get_job(session_id)
            if record is None or record.status != "queued":
                self.announce_positions()
                continue
            model_error = await self.wait_for_model()  # a model switch may have begun meanwhile
            record = self.store.get_job(session_id)
            if record is None or record.status != "queued":
                self.announce_positions()
                continue
            blocked = self.job_blocker(record) if self.job_blocker is not None else None
            if blocked is not None:
                self._fail(record, blocked)
                self.announce_positions()
                continue
            if model_error is not None:
                self._fail(record, f"the model could not be loaded: {model_error}")
                self.announce_positions()
                continue
            try:
                await self._run(record)
            except Exception:  # never let one job stop the worker
                log.exception("job %s crashed the worker step", session_id)
                self._fail(record, "internal error while running the job; see the server log")

    def announce_positions(self) -> None:
        for position, waiting_id in enumerate(self.queue.waiting(), start=1):
            self.events.publish(GenerationQueued(session_id=waiting_id, position=position))

    def _job_spec(self, record: JobRecord, pipeline: PipelineProcess) -> JobSpec:
        request = record.request
        return JobSpec(
            session_id=record.id,
            prompt=request.prompt,
            negative_prompt=request.negative_prompt,
            num_inference_steps=request.num_inference_steps,
            guidance_scale=request.guidance_scale,
            num_images=request.num_images,
            seed=request.seed if request.seed is not None else random_seed(),
            width=request.width or pipeline.size_limits.default_width,
            height=request.height or pipeline.size_limits.default_height,
            scheduler=request.scheduler,
            previews=self.previews,
            images_dir=str(self.images_dir),
        )

    async def _run(self, record: JobRecord) -> None:
        pipeline = self.pipeline()
        job = self._job_spec(record, pipeline)
        self.running_id, self._running_on = record.id, pipeline
        self.not_running.clear()
        self.store.mark_running(record.id, job.seed, job.num_inference_steps)
        self.events.publish(
            GenerationStarted(session_id=record.id, total_steps=job.num_inference_steps, model=pipeline.model_name)
        )
        clock = StepClock()

        def on_step(message: StepDone) -> None:
            self.store.update_step(record.id, message.step)
            self.events.publish(
                GenerationProgress(
                    session_id=record.id,
                    step=message.step,
                    total_steps=message.total_steps,
                    message=progress_text(message.step, message.total_steps),
                    eta_seconds=clock.eta(message.step, message.total_steps),
                )
            )

        def on_preview(message: PreviewReady) -> None:
            self.preview_store.put(record.id, message.jpeg, message.step)
            self.events.publish(preview_event(record.id, message.step, message.jpeg, message.width, message.height))

        try:
            running = pipeline.run(job, on_step, on_preview)
            self.announce_positions()  # the waiting jobs moved up; told while the generation already runs
            outcome = await running
        except PipelineStopped as error:
            self._fail(record, f"{error}; the model is being loaded again, the next job will run on it")
            return
        finally:
            self.preview_store.retire(record.id)
            self.running_id, self._running_on = None, None
            self.not_running.set()
        if isinstance(outcome, JobCancelled):
            self.store.finish(record.id, "cancelled", error="cancelled by request")
            self.events.publish(CancelledEvent(session_id=record.id))
        elif isinstance(outcome, JobFailed):
            log.warning("job %s failed: %s", record.id, outcome.error)
            self._fail(record, outcome.error)
        else:
            names = list(outcome.image_names)
            self.store.add_to_gallery(record.id, names, outcome.metadata)
            self.store.finish(record.id, "completed", image_names=names, metadata=outcome.metadata)
            self.events.publish(
                GenerationComplete(
                    session_id=record.id,
                    image_paths=[str(self.images_dir / name) for name in names],
                    image_urls=[image_url(name) for name in names],
                    metadata=outcome.metadata,
                )
            )

    def _fail(self, record: JobRecord, message: str) -> None:
        self.store.finish(record.id, "failed", error=message)
        self.events.publish(GenerationError(session_id=record.id, error=message))
