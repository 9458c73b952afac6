"""The engine: store, event bus, queue, worker and model wired together behind one public face.

API routes, the /ws endpoint and the NiceGUI pages all call these methods; nothing here imports them.
"""
from __future__ import annotations

import asyncio
import logging
import uuid
from dataclasses import dataclass
from pathlib import Path

from .config import Settings
from .events import EventBus
from .generator import ModelOptions, SizeLimits
from .job_previews import PreviewStore
from .jobs import JobQueue, JobWorker, QueueFull
from .model_loading import ModelUnavailable, known_local_models, model_events, resolve_source
from .pipeline_client import ModelLoadFailed, PipelineProcess
from .pipeline_messages import DownloadProgress, ModelSpec
from .protocol import (
    TERMINAL_STATUSES,
    GenerateRequest,
    GenerationCancelled,
    GenerationComplete,
    GenerationError,
    GenerationQueued,
    GenerationStarted,
    Health,
    JobView,
    KnownModel,
    ModelHealth,
    ModelList,
    ModelLoading,
    ModelState,
    ModelSwitchResponse,
    QueueHealth,
    SessionEvent,
)
from .image_files import image_url
from .store import JobRecord, Store, utcnow

log = logging.getLogger(__name__)

__all__ = [
    "Engine", "JobNotFound", "InvalidRequest", "QueueFull", "JobAlreadyFinished", "ModelBusy", "ModelUnavailable",
]


class JobNotFound(LookupError):
    pass


class InvalidRequest(ValueError):
    def __init__(self, problems: list[tuple[str, str]]) -> None:
        super().__init__("; ".join(message for _, message in problems))
        self.problems = problems


class JobAlreadyFinished(Exception):
    pass


class ModelBusy(Exception):
    """A model switch was asked for while another model is still loading."""


@dataclass
class ModelSlot:
    pipeline: PipelineProcess
    state: ModelState = "loading"
    error: str | None = None
    epoch: int = 0  # grows with every switch; a job runs only on the model it was queued for


class Engine:
    def __init__(self, settings: Settings, events: EventBus) -> None:
        self.settings = settings
        self.data_dir = Path(settings.storage.data_dir).resolve()
        self.images_dir = self.data_dir / "images"
        self.images_dir.mkdir(parents=True, exist_ok=True)
        self.store = Store(self.data_dir / "ai-artist.sqlite3")
        self.events = events
        self.events.set_seq_store(self.store)
        self.queue = JobQueue(settings.queue.max_pending)
        self.previews = PreviewStore()
        self.model = ModelSlot(self._new_pipeline(settings.model.base_model))
        self._job_epochs: dict[str, int] = {}  # jobs submitted in this process -> model epoch
        self._model_settled: asyncio.Event | None = None
        self.worker: JobWorker | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._retiring: set[PipelineProcess] = set()  # a switch's previous model, until it is closed

    # -- lifecycle ------------------------------------------------------------------------------

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self.events.attach_loop(loop)
        self._model_settled = asyncio.Event()
        self.worker = JobWorker(
            self.store,
            self.events,
            self.queue,
            pipeline=lambda: self.model.pipeline,
            images_dir=self.images_dir,
            wait_for_model=self._wait_for_model,
            previews=self.settings.previews,
            preview_store=self.previews,
            job_blocker=self._switched_away_from,
        )
        model_events.attach_loop(loop)
        self._recover_unfinished_jobs()
        self._tasks = [loop.create_task(self._load_model()), loop.create_task(self.worker.run_forever())]

    async def stop(self) -> None:
        """Orderly shut-down: a running job goes back to the queue without using up one of its attempts."""
        interrupted = self.worker.running_id if self.worker is not None else None
        for task in self._tasks:
            task.cancel()
        for pipeline in (*self._retiring, self.model.pipeline):
            await pipeline.close()
        self._retiring.clear()
        if interrupted is not None:
            self.store.requeue(interrupted, refund_attempt=True)
        self.store.close()

    def is_idle(self) -> bool:
        """No job runs (the worker waits for one, or for the model)."""
        return self.worker is not None and self.worker.idle.is_set()

    def _new_pipeline(self, model_id: str) -> PipelineProcess:
        options = self.settings.model
        single_file_config = options.single_file_config
        log_file = self.data_dir / "logs" / "ai-artist.log"

        def download_progress(message: DownloadProgress) -> None:
            model_events.publish_threadsafe(
                ModelLoading(model=model_id, downloaded_bytes=message.downloaded_bytes, total_bytes=message.total_bytes)
            )

        spec = ModelSpec(
            model_id,
            device=options.device,
            dtype=options.dtype,
            cpu_threads=options.cpu_threads,
            options=ModelOptions(
                attention_slicing=options.attention_slicing,
                vae_tiling=options.vae_tiling,
                cpu_offload=options.cpu_offload,
                compile=options.compile,
                single_file_config=str(single_file_config) if single_file_config else None,
            ),
            log_file=str(log_file) if log_file.parent.is_dir() else None,
        )
        return PipelineProcess(spec, on_download=download_progress, on_exit=self._pipeline_exited)

    def _pipeline_exited(self, pipeline: PipelineProcess) -> None:
        if pipeline is self.model.pipeline and self.model.state == "ready":
            self._reload_after_crash()

    async def _load_model(self, previous: PipelineProcess | None = None) -> None:
        """Load the current slot's model in a new generation process (after closing `previous`'s)."""
        assert self._model_settled is not None
        slot = self.model
        if self.worker is not None:
            await self.worker.not_running.wait()  # a job started on the old model finishes on it first
        if previous is not None:
            await previous.close()  # its memory goes back before the next model takes its own
            self._retiring.discard(previous)
        try:
            await slot.pipeline.load()
        except ModelLoadFailed as error:
            slot.state, slot.error = "error", str(error)
        except Exception as error:
            log.exception("loading %s failed", slot.pipeline.model_id)
            slot.state, slot.error = "error", f"{type(error).__name__}: {error}"
        else:
            slot.state = "ready"
        if slot is self.model:
            self._model_settled.set()

    # -- model switching ------------------------------------------------------------------------

    def switch_model(self, reference: str) -> ModelSwitchResponse:
        """Start loading another model in the background.

        Jobs still waiting for the previous model fail at once with a reason (they were validated
        against it); a job already running finishes on it, then the new model loads.
        """
        if self.model.state == "loading":
            raise ModelBusy(
                f"model {self.model.pipeline.model_id!r} is still loading; wait until GET /api/health "
                "shows ready or error, then switch"
            )
        options = self.settings.model
        source = resolve_source(reference, options.single_file_config)  # ModelUnavailable names what is missing
        previous = self.model.pipeline
        self._retiring.add(previous)
        pipeline = self._new_pipeline(source.location)
        failed = []
        for session_id in self.queue.waiting():
            if self.queue.remove(session_id):
                self._fail_job(
                    session_id,
                    f"the server switched from model {previous.model_name!r} to {pipeline.model_name!r} before "
                    f"this job started; submit it again to run it on {pipeline.model_name!r}",
                )
                failed.append(session_id)
        self.model = ModelSlot(pipeline, "loading", epoch=self.model.epoch + 1)
        assert self._model_settled is not None, "the engine is not started"
        self._model_settled.clear()
        self._tasks.append(asyncio.get_running_loop().create_task(self._load_model(previous)))
        log.info("switching model %s -> %s; failed %d waiting jobs", previous.model_id, pipeline.model_id, len(failed))
        return ModelSwitchResponse(model=pipeline.model_id, state="loading", failed_jobs=failed)

    def _fail_job(self, session_id: str, message: str) -> None:
        self.store.finish(session_id, "failed", error=message)
        self.events.publish(GenerationError(session_id=session_id, error=message))
        self._job_epochs.pop(session_id, None)

    def _switched_away_from(self, record: JobRecord) -> str | None:
        """Why a job taken from the queue must not run on the current model (None: it may)."""
        epoch = self._job_epochs.pop(record.id, self.model.epoch)
        if epoch == self.model.epoch:
            return None
        return (
            f"the server switched to model {self.model.pipeline.model_name!r} after this job was queued for "
            f"{record.model!r}; submit it again"
        )

    def models(self) -> ModelList:
        roots = [Path(__file__).resolve().parent.parent / "assets" / "models", self.data_dir / "models"]
        known = known_local_models(*roots)
        current = self.model.pipeline.model_id
        if current not in {item.model for item in known}:
            path = Path(current)
            kind = "hub" if not path.exists() else ("folder" if path.is_dir() else "single_file")
            known.insert(0, KnownModel(model=current, name=self.model.pipeline.model_name, kind=kind))
        return ModelList(current=self.health().model, models=known)

    async def _wait_for_model(self) -> str | None:
        assert self._model_settled is not None
        await self._model_settled.wait()
        if self.model.state == "ready" and not self.model.pipeline.alive:
            self._reload_after_crash()
            await self._model_settled.wait()
        return self.model.error if self.model.state == "error" else None

    def _reload_after_crash(self) -> None:
        """The generation process died (its job already failed with the reason): start a new one on the
        same model; waiting jobs keep their places."""
        assert self._model_settled is not None
        crashed = self.model.pipeline
        log.warning("generation process %s; starting a new one for %s", crashed.exit_reason, crashed.model_id)
        self.model = ModelSlot(self._new_pipeline(crashed.model_id), "loading", epoch=self.model.epoch)
        self._model_settled.clear()
        self._tasks.append(asyncio.get_running_loop().create_task(self._load_model(crashed)))

    def _recover_unfinished_jobs(self) -> None:
        """After a restart or crash: queued jobs stay queued; an interrupted one runs again, once."""
        for record in self.store.unfinished_jobs():
            if record.status == "running" and record.attempts >= self.settings.queue.max_attempts:
                message = (
                    f"interrupted by a server restart while running (started {record.attempts} times); not retried"
                )
                self.store.finish(record.id, "failed", error=message)
                self.events.publish(GenerationError(session_id=record.id, error=message))
                continue
            if record.status == "running":
                self.store.requeue(record.id)
            position = self.queue.put(record.id, force=True)
            self.events.publish(GenerationQueued(session_id=record.id, position=position))

    # -- jobs -----------------------------------------------------------------------------------

    @property
    def size_limits(self) -> SizeLimits:
        return self.model.pipeline.size_limits

    def submit(self, request: GenerateRequest) -> tuple[str, int]:
        problems = self.size_limits.problems(
            request.width or self.size_limits.default_width, request.height or self.size_limits.default_height
        )
        if request.scheduler is not None:
            name = request.scheduler.strip().lower()
            allowed = self.model.pipeline.supported_schedulers()
            if name in allowed:
                request = request.model_copy(update={"scheduler": name})
            else:
                problems.append(
                    (
                        "scheduler",
                        f"scheduler {request.scheduler!r} is not available for model "
                        f"{self.model.pipeline.model_name!r}; allowed: {', '.join(allowed)}",
                    )
                )
        if problems:
            raise InvalidRequest(problems)
        if len(self.queue) >= self.queue.max_pending:
            raise QueueFull(f"the queue is full ({self.queue.max_pending} jobs waiting); try again later")
        session_id = str(uuid.uuid4())
        self.store.create_job(session_id, request, self.model.pipeline.model_name)
        self._job_epochs[session_id] = self.model.epoch
        position = self.queue.put(session_id)
        self.events.publish(GenerationQueued(session_id=session_id, position=position))
        return session_id, position

    def cancel(self, session_id: str) -> str:
        """Cancel a queued job at once, or ask a running one to stop at its next step."""
        record = self._record(session_id)
        if record.status in TERMINAL_STATUSES:
            raise JobAlreadyFinished(f"job {session_id} already {record.status}")
        if self.queue.remove(session_id):
            self._job_epochs.pop(session_id, None)
            self.store.finish(session_id, "cancelled", error="cancelled by request")
            self.events.publish(GenerationCancelled(session_id=session_id))
            if self.worker is not None:
                self.worker.announce_positions()
            return "cancelled"
        if self.worker is not None and self.worker.cancel_running(session_id):
            return "cancelling"
        raise JobAlreadyFinished(f"job {session_id} is {record.status} and cannot be cancelled now")

    def _record(self, session_id: str) -> JobRecord:
        record = self.store.get_job(session_id)
        if record is None:
            raise JobNotFound(f"unknown session {session_id!r}")
        return record

    def job_view(self, session_id: str) -> JobView:
        return self.view_of(self._record(session_id))

    def view_of(self, record: JobRecord) -> JobView:
        total = record.total_steps or record.request.num_inference_steps
        eta = None
        if record.status == "running" and record.started_at and record.step:
            elapsed = (utcnow() - record.started_at).total_seconds()
            eta = round(elapsed / record.step * (total - record.step), 2)
        return JobView(
            session_id=record.id,
            status=record.status,
            request=record.request,
            model=record.model,
            seed=record.seed,
            step=record.step,
            total_steps=total,
            eta_seconds=eta,
            position=self.queue.position(record.id),
            image_paths=[str(self.images_dir / name) for name in record.image_names],
            image_urls=[image_url(name) for name in record.image_names],
            error=record.error,
            attempts=record.attempts,
            metadata=record.metadata,
            created_at=record.created_at,
            started_at=record.started_at,
            finished_at=record.finished_at,
        )

    def ensure_session(self, session_id: str) -> JobRecord:
        """Make sure the bus can replay a session, re-creating its history from the store if needed."""
        record = self._record(session_id)
        if not self.events.known(session_id):
            self.events.restore(session_id, self._stored_events(record), record.last_seq)
        return record

    def _stored_events(self, record: JobRecord) -> list[SessionEvent]:
        seq = record.last_seq
        if record.status == "completed" and record.metadata is not None:
            view = self.view_of(record)
            return [
                GenerationComplete(
                    session_id=record.id, seq=seq, image_paths=view.image_paths, image_urls=view.image_urls,
                    metadata=record.metadata,
                )
            ]
        if record.status == "failed":
            return [GenerationError(session_id=record.id, seq=seq, error=record.error or "failed")]
        if record.status == "cancelled":
            return [GenerationCancelled(session_id=record.id, seq=seq)]
        if record.status == "running":
            return [GenerationStarted(session_id=record.id, seq=seq, total_steps=record.total_steps, model=record.model)]
        return [GenerationQueued(session_id=record.id, seq=seq, position=self.queue.position(record.id) or 1)]

    def health(self) -> Health:
        running = 1 if self.worker is not None and self.worker.running_id else 0
        pipeline = self.model.pipeline
        return Health(
            model=ModelHealth(
                id=pipeline.model_id,
                state=self.model.state,
                device=pipeline.device,
                error=self.model.error,
                family=pipeline.family,
                schedulers=list(pipeline.supported_schedulers()),
                process_id=pipeline.process_id,
            ),
            queue=QueueHealth(pending=len(self.queue), running=running),
        )
