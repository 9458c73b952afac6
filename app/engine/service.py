"""`Engine`: the one public face of the engine. The REST routes, /ws and the studio call these methods
(and listen on `engine.events`); none of them reaches into the store, the queue or the worker.

Longer than 300 lines: it is the whole public surface (jobs, uploads, previews' watchers, workers, the
model), each method a short delegate to the module that does the work.
"""
from __future__ import annotations

import asyncio
import logging
import uuid
from pathlib import Path
from typing import TYPE_CHECKING

from ..config import Settings
from ..pipeline.values import SizeLimits
from ..pipeline.values import display_name as model_name
from ..protocol import (
    TERMINAL_EVENTS,
    TERMINAL_STATUSES,
    GalleryPage,
    GenerateRequest,
    Health,
    JobPage,
    JobStatus,
    JobView,
    LoraList,
    ModelList,
    ModelSwitchResponse,
    PreviewHealth,
    QueueHealth,
    SessionEvent,
    UploadResponse,
    WorkerView,
)
from .batching import BatchTaker
from .errors import InvalidRequest, JobAlreadyFinished, JobNotFound, QueueFull, QueueUnavailable
from .events import EventBus
from .inputs import InputStore
from .journal import JobJournal
from .loras import LoraLibrary
from .pool import WorkerPool, summary
from .previews import PreviewStore, StoredPreview
from .queue import JobQueue
from .recovery import recover_unfinished_jobs
from .requests import PreparedRequest, check, prepare
from .store import JobRecord, Store
from .views import gallery_item, job_view, stored_events, upload_url
from .watchers import PreviewWatchers

if TYPE_CHECKING:
    from .remote import RemoteWorkers

log = logging.getLogger(__name__)


class Engine:
    def __init__(self, settings: Settings, events: EventBus) -> None:
        self.settings = settings
        self.data_dir = Path(settings.storage.data_dir).resolve()
        self.images_dir = self.data_dir / "images"
        self.images_dir.mkdir(parents=True, exist_ok=True)
        self._store = Store(self.data_dir / "ai-artist.sqlite3")
        self.events = events
        self.events.set_seq_store(self._store)
        self._queue = JobQueue(settings.queue.max_pending)
        self._previews = PreviewStore()
        self._watchers = PreviewWatchers(on_change=self._previews_watched_changed)
        events.add_global_listener(self._forget_watchers_of_ended_jobs)
        self._journal = JobJournal(self._store, events, self._previews, self.images_dir)
        self.inputs = InputStore(
            self.data_dir / "inputs", self.images_dir, settings.uploads.max_bytes, settings.uploads.max_side
        )
        self.loras = LoraLibrary(settings.lora_folder())
        if settings.model.lora_dir is None:
            self.loras.folder.mkdir(parents=True, exist_ok=True)  # so the artist sees where LoRAs go
        self._model = WorkerPool(settings, events, self.data_dir, self._queue, self.loras.folder)
        self._worker_tasks: list[asyncio.Task[None]] = []
        self._batches: BatchTaker | None = None
        self._remote: RemoteWorkers | None = None
        if settings.queue.backend == "redis":
            from .remote import RemoteWorkers  # the redis client is imported only when it is used

            self._remote = RemoteWorkers(
                settings, self._store, self._journal, self._queue, self.images_dir, self.inputs, self.loras,
                size_limits=lambda: self._model.pipeline.size_limits, current_model=lambda: self._model.pipeline.model_id,
            )
        self._lora_scan: asyncio.Future[None] | None = None

    # -- lifecycle ------------------------------------------------------------------------------

    async def start(self) -> None:
        self.events.attach_loop(asyncio.get_running_loop())
        held = await self._remote.start() if self._remote is not None else set()
        recover_unfinished_jobs(
            self._store, self._queue, self._journal, self.settings.queue.max_attempts, frozenset(held)
        )
        max_batch = self.settings.queue.max_batch
        self._batches = BatchTaker(max_batch, self._queue, self._store, self._rejected) if max_batch > 1 else None
        self._worker_tasks = self._model.start(
            self._store, self._journal, str(self.images_dir), self.inputs, self.loras,
            previews_watched=self._watchers.watched, batches=self._batches,
        )
        self._lora_scan = asyncio.ensure_future(asyncio.to_thread(self.loras.warm))  # hashes read before jobs ask

    async def stop(self) -> None:
        """Orderly shut-down: running jobs go back to the queue without using up one of their attempts."""
        for task in self._worker_tasks:
            task.cancel()
        for interrupted in await self._model.stop():
            self._store.requeue(interrupted, refund_attempt=True)
        if self._remote is not None:
            await self._remote.stop()  # jobs on remote workers go on; their outcome is read after a restart
        self._store.close()

    def is_idle(self) -> bool:
        """No job runs (every worker waits for one, or for its model)."""
        return self._model.is_idle()

    async def wait_until_idle(self) -> None:
        """Until no job runs (every worker waits for one, or for its model)."""
        assert self._worker_tasks, "the engine is not started"
        await self._model.wait_until_idle()

    async def wait_for_model(self) -> str | None:
        """Until the current model is ready (None) or failed to load (its error)."""
        return await self._model.wait_until_settled()

    # -- jobs -----------------------------------------------------------------------------------

    @property
    def size_limits(self) -> SizeLimits:
        return self._model.pipeline.size_limits

    def prepare(self, request: GenerateRequest) -> PreparedRequest:
        """Store the request's input images and gather its LoRAs (safe in any thread; decoding a large
        image is slow, so a face may call this in a worker thread and pass the result to `submit`)."""
        return prepare(request, self.inputs)

    def submit(self, request: GenerateRequest | PreparedRequest, client: str = "") -> tuple[str, int]:
        """Validate `request` against the current model and queue it; returns (session_id, position).

        Raises InvalidRequest naming each bad field (a mode the model cannot do, an input that is not an
        image, an unknown LoRA or one that does not fit...), QueueFull. The stored request names its
        inputs by their stored names (`GET /api/uploads/{name}`), its prompt without `<lora:...>` tags.
        `client` says who asks (each face names its callers: an address, a browser session, an API key's
        name); it is stored with the job for per-client limits and fair scheduling."""
        prepared = request if isinstance(request, PreparedRequest) else self.prepare(request)
        pipeline = self._model.pipeline
        queued, problems = check(prepared, pipeline, self.loras)
        if problems:
            raise InvalidRequest(problems)
        self._queue.check_room()
        self._check_client_room(client)
        if self._remote is not None and not self._remote.available:
            raise QueueUnavailable(self._remote.problem)
        session_id = str(uuid.uuid4())
        self._store.create_job(session_id, queued, pipeline.model_name, client)
        self._model.remember_job(session_id)
        position = self._queue.put(session_id, client=client, model=pipeline.model_id)
        self._journal.queued(session_id, position)
        return session_id, position

    def _check_client_room(self, client: str) -> None:
        limit = self.settings.queue.max_pending_per_client
        if client and self._store.queued_count(client) >= limit:
            raise QueueFull(f"too many jobs waiting from this client ({limit} queued; "
                            f"queue.max_pending_per_client = {limit}); try again when some have run")

    def upload(self, data: bytes) -> UploadResponse:
        """Keep an input image (PNG, JPEG or WebP) under a name any job can use as `init_image` or
        `mask_image`. Raises InputTooLarge (over uploads.max_bytes) or InputProblem (not an image, over
        uploads.max_side). Safe in any thread."""
        stored = self.inputs.store_upload(data)
        return UploadResponse(name=stored.name, width=stored.width, height=stored.height, url=upload_url(stored.name))

    def upload_file(self, name: str) -> Path | None:
        """The stored input image called `name` (an upload, or an input a job was sent with)."""
        return self.inputs.path(name)

    def lora_list(self) -> LoraList:
        """The LoRA files and whether each fits the loaded model (hashes new files: call off the loop)."""
        pipeline = self._model.pipeline
        return self.loras.listing(pipeline.family, pipeline.lora_layers, pipeline.supports_lora is not False)

    def cancel(self, session_id: str) -> str:
        """Cancel a queued job at once ("cancelled"), or ask a running one to stop at its next step ("cancelling")."""
        record = self._record(session_id)
        if record.status in TERMINAL_STATUSES:
            raise JobAlreadyFinished(f"job {session_id} already {record.status}")
        if self._queue.remove(session_id):
            self._model.forget_job(session_id)
            self._journal.cancelled(session_id)
            self._model.announce_positions()
            return "cancelled"
        if self._model.cancel_running(session_id) or (self._remote is not None and self._remote.cancel(session_id)):
            return "cancelling"
        raise JobAlreadyFinished(f"job {session_id} is {record.status} and cannot be cancelled now")

    def _record(self, session_id: str) -> JobRecord:
        record = self._store.get_job(session_id)
        if record is None:
            raise JobNotFound(f"unknown session {session_id!r}")
        return record

    def _view(self, record: JobRecord) -> JobView:
        return job_view(record, self.images_dir, self._queue.position(record.id))

    def job_view(self, session_id: str) -> JobView:
        return self._view(self._record(session_id))

    def jobs(self, status: JobStatus | None = None, offset: int = 0, limit: int = 50) -> JobPage:
        """Jobs, newest first, optionally only those with one status."""
        records, total = self._store.list_jobs(status, offset, limit)
        return JobPage(items=[self._view(record) for record in records], total=total, offset=offset, limit=limit)

    def unfinished_jobs(self) -> list[JobView]:
        """Queued and running jobs, oldest first."""
        return [self._view(record) for record in self._store.unfinished_jobs()]

    def gallery(self, offset: int = 0, limit: int = 50) -> GalleryPage:
        """Every generated image, newest first."""
        records, total = self._store.gallery(offset, limit)
        items = [gallery_item(record, self.images_dir) for record in records]
        return GalleryPage(items=items, total=total, offset=offset, limit=limit)

    def image_file(self, name: str) -> Path | None:
        """The generated image called `name`; None unless it is a plain file name inside the images folder."""
        candidate = (self.images_dir / name).resolve()
        if Path(name).name != name or candidate.parent != self.images_dir or not candidate.is_file():
            return None
        return candidate

    def preview(self, session_id: str) -> StoredPreview | None:
        """The latest live preview of a job (kept a while after it ends)."""
        return self._previews.get(session_id)

    # -- who watches previews ---------------------------------------------------------------------

    def watch_previews(self, session_id: str, watcher: object) -> None:
        """`watcher` (a socket, a page...) shows this job's live previews: they are rendered while anyone does.
        A finished or unknown job is ignored."""
        record = self._store.get_job(session_id)
        if record is not None and record.status not in TERMINAL_STATUSES:
            self._watchers.watch(session_id, watcher)

    def unwatch_previews(self, session_id: str, watcher: object) -> None:
        self._watchers.unwatch(session_id, watcher)

    def stop_watching(self, watcher: object) -> None:
        """`watcher` went away: it watches no job any more."""
        self._watchers.drop(watcher)

    def run_in_order(self, session_ids: list[str]) -> None:
        """These queued jobs run one after another, never together in one batch (A1111's batch count)."""
        if self._batches is not None:
            self._batches.run_in_order(session_ids)

    def _rejected(self, record: JobRecord) -> bool:
        """Whether a job taken from the queue to join a batch must not run (then it has failed, saying why)."""
        reason = self._model.switched_away_from(record.id, record.model)
        if reason is not None:
            self._journal.failed(record.id, reason)
        return reason is not None

    def _previews_watched_changed(self, session_id: str, watched: bool) -> None:
        self._model.set_previews(session_id, watched)

    def _forget_watchers_of_ended_jobs(self, event: SessionEvent, _text: str) -> None:
        if isinstance(event, TERMINAL_EVENTS):
            self._watchers.forget(event.session_id)

    def ensure_session(self, session_id: str) -> JobStatus:
        """Make sure the bus can replay a session (re-created from the store after a restart); its status."""
        record = self._record(session_id)
        if not self.events.known(session_id):
            position = self._queue.position(record.id)
            self.events.restore(session_id, stored_events(record, self.images_dir, position), record.last_seq)
        return record.status

    # -- the model ------------------------------------------------------------------------------

    def switch_model(self, reference: str) -> ModelSwitchResponse:
        """Start loading another model in the background.

        Jobs still waiting for the previous model fail at once with a reason (they were validated
        against it); a job already running finishes on it, then the new model loads.
        """
        previous = self._model.switch(reference)  # ModelBusy / ModelUnavailable: nothing changed
        current = self._model.pipeline
        failed = []
        for session_id in self._queue.waiting():
            if self._queue.remove(session_id):
                self._model.forget_job(session_id)
                self._journal.failed(
                    session_id,
                    f"the server switched from model {previous.model_name!r} to {current.model_name!r} before "
                    f"this job started; submit it again to run it on {current.model_name!r}",
                )
                failed.append(session_id)
        log.info("model switch failed %d waiting jobs", len(failed))
        return ModelSwitchResponse(model=current.model_id, state="loading", failed_jobs=failed)

    def models(self) -> ModelList:
        return ModelList(current=self._model.model_health(), models=self._model.known_models())

    def health(self) -> Health:
        remote = self._remote.views() if self._remote is not None else []
        workers = self._model.views() + remote
        running = len(self._model.running_ids()) + sum(view.state == "busy" for view in remote)  # a batch: each job
        model = self._model.model_health()
        if self._model.local_count == 0:  # remote workers only: ready while one holds the model
            holding = [view for view in workers if view.model == model_name(model.id) and view.state != "gone"]
            model.state = "ready" if any(view.state != "loading" for view in holding) else "loading"
        return Health(
            model=model,
            queue=QueueHealth(pending=len(self._queue), running=running),
            workers=summary(workers),
            previews=PreviewHealth(rendered=self._previews.received, watched_jobs=self._watchers.watched_jobs()),
        )

    def workers(self) -> list[WorkerView]:
        """Every worker: the local generation processes, and remote ones over Redis."""
        return self._model.views() + (self._remote.views() if self._remote is not None else [])
