"""A local worker: takes queued jobs one at a time and runs each on its own generation process.

The engine runs one per `workers.local` (or `workers.devices` entry), all taking from the one queue: the
first free worker takes the next job it can run (`_take_next`). Each is an asyncio task with no thread
of its own. It sends a job to the generation process
(app/pipeline/client.py) and turns what the process reports (steps, previews, the outcome) into
journal entries, on the event loop, as the messages arrive.
"""
from __future__ import annotations

import asyncio
import logging
import socket
import time
from collections.abc import Callable
from datetime import datetime, timezone

from ..config import PreviewSettings
from ..pipeline.client import PipelineProcess, PipelineStopped
from ..pipeline.messages import JobCancelled, JobFailed, JobOutcome, JobSpec, PreviewReady, StepDone
from ..pipeline.values import denoising_steps
from ..protocol import TERMINAL_STATUSES, WorkerState, WorkerView
from .batch_jobs import run_batch
from .batching import BatchTaker
from .inputs import InputProblem, InputStore
from .journal import JobJournal
from .loras import LoraLibrary
from .model_slot import ModelSlot
from .queue import JobQueue, QueuedJob
from .specs import job_spec
from .store import JobRecord, Store

log = logging.getLogger(__name__)


class StepClock:
    """The ETA of a running job: the average time per step so far, times the steps left. Computed once per
    step, here; REST, /ws and the studio all report the value of the latest step."""

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
        journal: JobJournal,
        queue: JobQueue,
        model: ModelSlot,
        images_dir: str,
        previews: PreviewSettings,
        inputs: InputStore,
        loras: LoraLibrary,
        name: str = "local-1",
    ) -> None:
        self.name = name
        self.jobs_done = 0
        self.last_seen = datetime.now(timezone.utc)
        self.store = store
        self.journal = journal
        self.queue = queue
        self.model = model
        self.images_dir = images_dir
        self.previews = previews
        self.inputs = inputs
        self.loras = loras
        self.running_ids: tuple[str, ...] = ()  # the running job, or the jobs of a batch
        self._running_on: PipelineProcess | None = None  # after a model switch, not the current one
        self.not_running = asyncio.Event()
        self.not_running.set()
        self.idle = asyncio.Event()
        self.previews_watched: Callable[[str], bool] = lambda _session_id: True  # the engine sets its own
        self.batches: BatchTaker | None = None  # dynamic batching (app/engine/batching.py); None: one at a time

    @property
    def running_id(self) -> str | None:
        return self.running_ids[0] if self.running_ids else None

    def set_previews(self, session_id: str, watched: bool) -> None:
        """Someone began or stopped watching a job's previews: tell the process if the job runs there."""
        running_on = self._running_on
        if running_on is not None and session_id in self.running_ids:
            running_on.set_previews(session_id, watched)

    def cancel_running(self, session_id: str) -> bool:
        running_on = self._running_on
        return session_id in self.running_ids and running_on is not None and running_on.cancel(session_id)

    @property
    def state(self) -> WorkerState:
        if self.running_id is not None:
            return "busy"
        return "loading" if self.model.loading else "idle"

    def view(self) -> WorkerView:
        if self.state != "busy":
            self.last_seen = datetime.now(timezone.utc)  # a local worker is seen as long as the server runs
        holding = self._running_on or self.model.pipeline  # a busy worker finishes on the model it started on
        return WorkerView(
            id=self.name, name=self.name, host=socket.gethostname(), device=holding.device,
            model=holding.model_id, state=self.state, session_id=self.running_id,
            jobs_done=self.jobs_done, last_seen=self.last_seen,
        )

    def accepts(self, job: QueuedJob) -> bool:
        """Model routing: only a job for the model this worker holds, once it has loaded (or failed to)."""
        return not self.model.loading and job.model in (None, self.model.pipeline.model_id)

    async def _take_next(self) -> str:
        """The next job for this worker (fair order, routed by model): the one place a job is taken."""
        return (await self.queue.take(self.accepts)).session_id

    async def run_forever(self) -> None:
        while True:
            self.idle.set()
            await self.model.wait_until_settled()  # jobs keep their place in the queue meanwhile
            if self.batches is not None:
                await self.queue.wait_for_job(self.accepts)
                self.idle.clear()
                await self.batches.gather()  # after a batch: its clients' next jobs may be on their way
            session_id = await self._take_next()
            self.idle.clear()
            model_error = await self.model.wait_until_settled()  # a switch may have begun meanwhile
            record = self.store.get_job(session_id)
            if record is None or record.status != "queued":
                self.announce_positions()
                continue
            reason = self.model.switched_away_from(record.id, record.model)
            if reason is None and model_error is not None:
                reason = f"the model could not be loaded: {model_error}"
            if reason is not None:
                self.journal.failed(record.id, reason)
                self.announce_positions()
                continue
            batch, began = [record], time.perf_counter()
            try:
                if self.batches is not None:
                    batch = self.batches.take(record, self.model.pipeline.size_limits)
                await (run_batch(self, batch) if len(batch) > 1 else self._run(record))
                if self.batches is not None:
                    self.batches.ran(len(batch), time.perf_counter() - began)
            except Exception:  # never let one job stop the worker
                log.exception("job %s crashed the worker step", session_id)
                for each in batch:  # the jobs of a batch that had not ended yet
                    current = self.store.get_job(each.id)
                    if current is not None and current.status not in TERMINAL_STATUSES:
                        self.journal.failed(each.id, "internal error while running the job; see the server log")

    def announce_positions(self) -> None:
        for position, waiting_id in enumerate(self.queue.waiting(), start=1):
            self.journal.queued(waiting_id, position)

    def job_spec(self, record: JobRecord, pipeline: PipelineProcess) -> JobSpec:
        return job_spec(
            record, pipeline.size_limits, self.previews, self.images_dir, self.inputs, self.loras,
            previews_watched=self.previews_watched(record.id),
        )

    async def _run(self, record: JobRecord) -> None:
        pipeline = self.model.pipeline
        try:
            job = self.job_spec(record, pipeline)
        except InputProblem as problem:
            self.journal.failed(record.id, str(problem))
            return
        self.running_ids, self._running_on = (record.id,), pipeline
        self.not_running.clear()
        total_steps = denoising_steps(job.num_inference_steps, job.strength if job.init_image is not None else None)
        self.journal.started(record.id, job.seed, total_steps, pipeline.model_name, self.name)
        on_step, on_preview = self.job_callbacks(record.id)
        try:
            running = pipeline.run(job, on_step, on_preview)
            self.announce_positions()  # the waiting jobs moved up; told while the generation already runs
            outcome = await running
        except PipelineStopped as error:
            self.journal.failed(record.id, f"{error}; the model is being loaded again, the next job will run on it")
            return
        finally:
            self.running_ids, self._running_on = (), None
            self.jobs_done += 1
            self.last_seen = datetime.now(timezone.utc)
            self.not_running.set()
        self.record_outcome(record.id, outcome)

    def job_callbacks(
        self, session_id: str
    ) -> tuple[Callable[[StepDone], None], Callable[[PreviewReady], None]]:
        """What a running job's steps and previews become (journal entries, with the ETA), alone or in a batch."""
        clock = StepClock()

        def on_step(message: StepDone) -> None:
            eta = clock.eta(message.step, message.total_steps)
            self.journal.progressed(session_id, message.step, message.total_steps, eta)

        def on_preview(message: PreviewReady) -> None:
            self.journal.previewed(session_id, message.step, message.jpeg, message.width, message.height)

        return on_step, on_preview

    def record_outcome(self, session_id: str, outcome: JobOutcome) -> None:
        if isinstance(outcome, JobCancelled):
            self.journal.cancelled(session_id)
        elif isinstance(outcome, JobFailed):
            log.warning("job %s failed: %s", session_id, outcome.error)
            self.journal.failed(session_id, outcome.error)
        else:
            self.journal.completed(session_id, list(outcome.image_names), outcome.metadata)
