"""The local workers: one generation process each (`workers.local`, or one per `workers.devices` entry),
all taking jobs from the one queue, and the model they hold, switched together.

A model switch goes to every worker at once: an idle one closes its process and loads the new model
now, a busy one after its job (its slot waits for that worker's `not_running`). The model the server
reports is the first worker's (the others load the same one), with the state of all of them: loading
while any loads, error when one failed.
"""
from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path

from ..config import Settings
from ..pipeline.client import PipelineProcess
from ..protocol import KnownModel, ModelHealth, WorkersHealth, WorkerView
from .batching import BatchTaker
from .errors import ModelBusy
from .events import EventBus
from .inputs import InputStore
from .journal import JobJournal
from .loras import LoraLibrary
from .model_slot import ModelSlot
from .queue import JobQueue
from .store import Store
from .worker import JobWorker


def summary(views: list[WorkerView]) -> WorkersHealth:
    count = {state: sum(view.state == state for view in views) for state in ("idle", "busy", "loading", "gone")}
    return WorkersHealth(total=len(views), **count)


class WorkerPool:
    def __init__(
        self, settings: Settings, events: EventBus, data_dir: Path, queue: JobQueue, lora_dir: Path
    ) -> None:
        self.settings = settings
        self.queue = queue
        self.job_epochs: dict[str, int] = {}
        self.workers: list[JobWorker] = []
        devices = settings.workers.local_devices(settings.model.device) or [settings.model.device]
        self.slots = [
            ModelSlot(
                settings.model, events, data_dir, not_running=self._not_running_on(index), lora_dir=lora_dir,
                device=device, job_epochs=self.job_epochs, on_settled=queue.notify,
            )
            for index, device in enumerate(devices)
        ]
        # With no local worker (remote workers only) the one slot only describes the model; it never loads.
        self.local_count = len(settings.workers.local_devices(settings.model.device))

    def _not_running_on(self, index: int) -> Callable[[], Awaitable[None]]:
        async def not_running() -> None:
            if index < len(self.workers):
                await self.workers[index].not_running.wait()

        return not_running

    @property
    def primary(self) -> ModelSlot:
        return self.slots[0]

    @property
    def pipeline(self) -> PipelineProcess:
        """The current model (as the first worker holds it): what requests are checked against."""
        return self.primary.pipeline

    # -- lifecycle ------------------------------------------------------------------------------

    def start(
        self,
        store: Store,
        journal: JobJournal,
        images_dir: str,
        inputs: InputStore,
        loras: LoraLibrary,
        previews_watched: Callable[[str], bool],
        batches: BatchTaker | None,
    ) -> list[asyncio.Task[None]]:
        """Start the workers; `batches` (shared by them, so fairness and passed-over jobs are the queue's):
        dynamic batching, None for one job at a time."""
        self.workers = [
            JobWorker(
                store, journal, self.queue, slot, images_dir, self.settings.previews, inputs, loras,
                name=f"local-{index}",
            )
            for index, slot in enumerate(self.slots[: self.local_count], start=1)
        ]
        for worker in self.workers:
            worker.previews_watched, worker.batches = previews_watched, batches
        loop = asyncio.get_running_loop()
        for slot in self.slots[: self.local_count]:
            slot.start()
        return [loop.create_task(worker.run_forever(), name=worker.name) for worker in self.workers]

    async def stop(self) -> list[str]:
        """Close every generation process; returns the jobs that were running (to requeue)."""
        interrupted = [session_id for worker in self.workers for session_id in worker.running_ids]
        await asyncio.gather(*(slot.stop() for slot in self.slots[: self.local_count]))
        return interrupted

    # -- jobs -----------------------------------------------------------------------------------

    def is_idle(self) -> bool:
        return all(worker.idle.is_set() for worker in self.workers)

    async def wait_until_idle(self) -> None:
        for worker in self.workers:
            await worker.idle.wait()

    def running_ids(self) -> list[str]:
        return [session_id for worker in self.workers for session_id in worker.running_ids]

    def cancel_running(self, session_id: str) -> bool:
        return any(worker.cancel_running(session_id) for worker in self.workers)

    def set_previews(self, session_id: str, watched: bool) -> None:
        for worker in self.workers:
            worker.set_previews(session_id, watched)

    def announce_positions(self) -> None:
        if self.workers:
            self.workers[0].announce_positions()

    def views(self) -> list[WorkerView]:
        return [worker.view() for worker in self.workers]

    def health(self) -> WorkersHealth:
        return summary(self.views())

    # -- the model ------------------------------------------------------------------------------

    def remember_job(self, session_id: str) -> None:
        self.primary.remember_job(session_id)

    def forget_job(self, session_id: str) -> None:
        self.primary.forget_job(session_id)

    def switched_away_from(self, session_id: str, queued_for: str) -> str | None:
        """Why a job queued for `queued_for` may not run now (the model was switched), or None."""
        return self.primary.switched_away_from(session_id, queued_for)

    def switch(self, reference: str) -> PipelineProcess:
        """Every worker switches (idle ones now, busy ones after their job); returns the previous model."""
        loading = [slot for slot in self.slots[: self.local_count] if slot.loading]
        if loading:
            raise ModelBusy(
                f"model {loading[0].pipeline.model_id!r} is still loading; wait until GET /api/health "
                "shows ready or error, then switch"
            )
        previous = self.primary.switch(reference, load=self.local_count > 0)  # ModelUnavailable: nothing changed
        for slot in self.slots[1 : self.local_count]:
            slot.switch(self.primary.pipeline.model_id)
        return previous

    async def wait_until_settled(self) -> str | None:
        """Until every local worker's model is ready (None) or one failed to load (its error)."""
        errors = [await slot.wait_until_settled() for slot in self.slots[: self.local_count]]
        return next((error for error in errors if error is not None), None)

    def model_health(self) -> ModelHealth:
        health = self.primary.health()
        states = [slot.current.state for slot in self.slots[: self.local_count]]
        if "loading" in states:
            health.state = "loading"
        elif "error" in states:
            failed = next(slot for slot in self.slots if slot.current.state == "error")
            health.state, health.error = "error", failed.current.error
        return health

    def known_models(self) -> list[KnownModel]:
        return self.primary.known_models()
