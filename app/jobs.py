"""The job queue and the worker that runs one generation at a time on the model's device.

The queue holds session ids in FIFO order (the store holds the jobs themselves). The worker is an
asyncio task that hands each job to a single dedicated thread, so the pipeline always runs on the same
thread and the event loop never blocks; step callbacks cross back with `bus.publish_threadsafe`.
"""
from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import deque
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from .config import PreviewSettings
from .events import EventBus
from .failures import describe_failure
from .generator import ArtworkGenerator, GenerationCancelled, random_seed
from .image_files import image_url, save_png
from .job_previews import JobPreviewer, PreviewStore
from .protocol import (
    GenerationCancelled as CancelledEvent,
    GenerationComplete,
    GenerationError,
    GenerationMetadata,
    GenerationProgress,
    GenerationQueued,
    GenerationStarted,
    progress_text,
)
from .store import JobRecord, Store, utcnow

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
    def __init__(
        self,
        store: Store,
        events: EventBus,
        queue: JobQueue,
        generator: Callable[[], ArtworkGenerator],
        images_dir: Path,
        wait_for_model: Callable[[], Awaitable[str | None]],
        previews: PreviewSettings | None = None,
        preview_store: PreviewStore | None = None,
        job_blocker: Callable[[JobRecord], str | None] | None = None,
    ) -> None:
        self.store = store
        self.events = events
        self.queue = queue
        self.generator = generator
        self.images_dir = images_dir
        self.wait_for_model = wait_for_model
        self.previews = previews or PreviewSettings(enabled=False)
        self.preview_store = preview_store or PreviewStore()
        self.job_blocker = job_blocker  # a reason the job cannot run on the current model, or None
        self.running_id: str | None = None
        self.not_running = asyncio.Event()
        self.not_running.set()
        self._cancel_flags: dict[str, threading.Event] = {}
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="generation")
        self.idle = asyncio.Event()

    async def close(self, timeout: float = 10) -> None:
        """Stop the running generation at its next step and wait (a while) for the thread to let go."""
        for flag in self._cancel_flags.values():
            flag.set()
        try:
            await asyncio.wait_for(asyncio.to_thread(self._thread.shutdown, True, cancel_futures=True), timeout)
        except TimeoutError:
            log.warning("the generation thread did not stop within %.0f s", timeout)

    def cancel_running(self, session_id: str) -> bool:
        flag = self._cancel_flags.get(session_id)
        if flag is None:
            return False
        flag.set()
        return True

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

    async def _run(self, record: JobRecord) -> None:
        loop = asyncio.get_running_loop()
        request = record.request
        generator = self.generator()
        seed = request.seed if request.seed is not None else random_seed()
        width = request.width or generator.size_limits.default_width
        height = request.height or generator.size_limits.default_height
        total = request.num_inference_steps
        cancel = self._cancel_flags[record.id] = threading.Event()
        self.running_id = record.id
        self.not_running.clear()
        self.store.mark_running(record.id, seed, total)
        self.events.publish(GenerationStarted(session_id=record.id, total_steps=total, model=generator.model_name))
        clock = StepClock()
        previewer = JobPreviewer(
            self.previews, generator, self.preview_store, record.id, width, height, self.events.publish_threadsafe
        )

        def on_step(step: int, total_steps: int, latents: Any) -> None:
            self.store.update_step(record.id, step)
            self.events.publish_threadsafe(
                GenerationProgress(
                    session_id=record.id,
                    step=step,
                    total_steps=total_steps,
                    message=progress_text(step, total_steps),
                    eta_seconds=clock.eta(step, total_steps),
                )
            )
            previewer.on_step(step, total_steps, latents)

        def generate_and_save() -> tuple[list[str], GenerationMetadata]:
            images = generator.generate(
                prompt=request.prompt,
                negative_prompt=request.negative_prompt,
                num_inference_steps=total,
                guidance_scale=request.guidance_scale,
                num_images=request.num_images,
                seed=seed,
                width=width,
                height=height,
                scheduler=request.scheduler,
                on_step=on_step,
                should_stop=cancel.is_set,
            )
            metadata = GenerationMetadata(
                prompt=request.prompt,
                negative_prompt=request.negative_prompt,
                seed=seed,
                num_inference_steps=total,
                guidance_scale=request.guidance_scale,
                model=generator.model_name,
                width=images[0].width,
                height=images[0].height,
                scheduler=request.scheduler or "default",
                created_at=utcnow(),
                duration_seconds=round(time.perf_counter() - clock.started, 3),
            )
            stamp = metadata.created_at.strftime("%Y%m%d-%H%M%S")
            names = [f"{stamp}-{record.id[:8]}-{index}.png" for index in range(len(images))]
            for name, image in zip(names, images):
                save_png(image, self.images_dir / name, metadata)
            return names, metadata

        running = loop.run_in_executor(self._thread, generate_and_save)
        self.announce_positions()  # the waiting jobs moved up; told while the generation already runs
        try:
            names, metadata = await running
        except GenerationCancelled:
            self.store.finish(record.id, "cancelled", error="cancelled by request")
            self.events.publish(CancelledEvent(session_id=record.id))
        except Exception as error:  # the model's failure is the job's failure, not the worker's
            log.warning("job %s failed: %r", record.id, error)
            self._fail(record, describe_failure(error))
        else:
            self.store.add_to_gallery(record.id, names, metadata)
            self.store.finish(record.id, "completed", image_names=names, metadata=metadata)
            self.events.publish(
                GenerationComplete(
                    session_id=record.id,
                    image_paths=[str(self.images_dir / name) for name in names],
                    image_urls=[image_url(name) for name in names],
                    metadata=metadata,
                )
            )
        finally:
            log.info("job %s: %s", record.id, previewer.summary())
            self.preview_store.retire(record.id)
            self.running_id = None
            self._cancel_flags.pop(record.id, None)
            self.not_running.set()

    def _fail(self, record: JobRecord, message: str) -> None:
        self.store.finish(record.id, "failed", error=message)
        self.events.publish(GenerationError(session_id=record.id, error=message))
