"""The model one local worker runs jobs on: its generation process, loading, switching and crash reload.

Each local worker (`workers.local`, `workers.devices`) has its own slot and process; the engine switches
them all together, so one model is current at a time and every slot has the same epoch. A switch starts loading the new model in a new generation process once
the job running on the previous one has finished and that process has been closed (so its memory is
returned first). Every job remembers the epoch of the model it was queued for; a job queued before a
switch never runs on the new model. If the generation process dies, the model is loaded again in a new
one with the same epoch (waiting jobs keep their places). Every change of state is told on the bus as
`ModelChanged`; a hub download's progress as `ModelLoading`.
"""
from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

from ..config import ModelSettings, log_file_in
from ..pipeline.client import ModelLoadFailed, PipelineProcess
from ..pipeline.messages import DownloadProgress, ModelSpec
from ..pipeline.sources import PROJECT_ROOT, known_local_models, resolve_source
from ..pipeline.values import ModelOptions
from ..protocol import KnownModel, ModelHealth, ModelLoading, ModelState
from .errors import ModelBusy
from .events import EventBus, ModelChanged

log = logging.getLogger(__name__)


@dataclass
class LoadedModel:
    pipeline: PipelineProcess
    state: ModelState = "loading"
    error: str | None = None
    epoch: int = 0  # grows with every switch; a job runs only on the model it was queued for


class ModelSlot:
    def __init__(
        self,
        settings: ModelSettings,
        events: EventBus,
        data_dir: Path,
        not_running: Callable[[], Awaitable[object]],
        lora_dir: Path | None = None,
        device: str | None = None,
        job_epochs: dict[str, int] | None = None,
        on_settled: Callable[[], None] | None = None,
    ) -> None:
        self.settings = settings
        self.device = device or settings.device  # workers.devices: this worker's own device
        self.events = events
        self.data_dir = data_dir
        self.lora_dir = lora_dir or data_dir / "loras"
        self.not_running = not_running  # waits until no job runs on the current process
        self.current = LoadedModel(self._new_pipeline(settings.base_model))
        self._settled = asyncio.Event()
        self._retiring: set[PipelineProcess] = set()  # a switch's previous model, until it is closed
        self._job_epochs: dict[str, int] = {} if job_epochs is None else job_epochs  # job -> model epoch (shared)
        self._on_settled = on_settled  # the queue looks again: this worker may take jobs of its model now
        self._tasks: list[asyncio.Task[None]] = []

    @property
    def pipeline(self) -> PipelineProcess:
        return self.current.pipeline

    @property
    def loading(self) -> bool:
        return self.current.state == "loading"

    # -- lifecycle ------------------------------------------------------------------------------

    def start(self) -> None:
        self._settled = asyncio.Event()  # bound to the running loop
        self._load_in_background(previous=None)

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for pipeline in (*self._retiring, self.current.pipeline):
            await pipeline.close()
        self._retiring.clear()

    def _new_pipeline(self, model_id: str) -> PipelineProcess:
        options = self.settings
        log_file = log_file_in(self.data_dir)

        def download_progress(message: DownloadProgress) -> None:
            self.events.publish_model(
                ModelLoading(model=model_id, downloaded_bytes=message.downloaded_bytes, total_bytes=message.total_bytes)
            )

        spec = ModelSpec(
            model_id,
            device=self.device,
            dtype=options.dtype,
            cpu_threads=options.cpu_threads,
            options=ModelOptions(
                attention_slicing=options.attention_slicing,
                vae_tiling=options.vae_tiling,
                cpu_offload=options.cpu_offload,
                compile=options.compile,
                single_file_config=str(options.single_file_config) if options.single_file_config else None,
            ),
            log_file=str(log_file) if log_file.parent.is_dir() else None,
            lora_dir=str(self.lora_dir),
        )
        return PipelineProcess(spec, on_download=download_progress, on_exit=self._pipeline_exited)

    def _load_in_background(self, previous: PipelineProcess | None) -> None:
        self._settled.clear()
        self._announce()
        self._tasks = [task for task in self._tasks if not task.done()]
        self._tasks.append(asyncio.get_running_loop().create_task(self._load(previous)))

    async def _load(self, previous: PipelineProcess | None) -> None:
        """Load the current model in its new process (after the previous one is closed)."""
        loaded = self.current
        await self.not_running()  # a job started on the previous model finishes on it first
        if previous is not None:
            await previous.close()  # its memory goes back before the next model takes its own
            self._retiring.discard(previous)
        try:
            await loaded.pipeline.load()
        except ModelLoadFailed as error:
            loaded.state, loaded.error = "error", str(error)
        except Exception as error:
            log.exception("loading %s failed", loaded.pipeline.model_id)
            loaded.state, loaded.error = "error", f"{type(error).__name__}: {error}"
        else:
            loaded.state = "ready"
        if loaded is self.current:
            self._settled.set()
            self._announce()
            if self._on_settled is not None:
                self._on_settled()

    def _announce(self) -> None:
        self.events.publish_model(ModelChanged(model=self.current.pipeline.model_id, state=self.current.state))

    # -- switching and crashes ------------------------------------------------------------------

    def switch(self, reference: str, load: bool = True) -> PipelineProcess:
        """Begin loading another model; returns the previous model's process (still closing). With `load`
        false (no local worker: remote workers only) the slot only describes the new model."""
        if self.current.state == "loading" and load:
            raise ModelBusy(
                f"model {self.pipeline.model_id!r} is still loading; wait until GET /api/health "
                "shows ready or error, then switch"
            )
        source = resolve_source(reference, self.settings.single_file_config)  # ModelUnavailable names what is missing
        previous = self.pipeline
        self.current = LoadedModel(self._new_pipeline(source.location), "loading", epoch=self.current.epoch + 1)
        if load:
            self._retiring.add(previous)
            self._load_in_background(previous)
        log.info("switching model %s -> %s", previous.model_id, self.pipeline.model_id)
        return previous

    def _pipeline_exited(self, pipeline: PipelineProcess) -> None:
        if pipeline is self.pipeline and self.current.state == "ready":
            self._reload_after_crash()

    def _reload_after_crash(self) -> None:
        """The generation process died (its job already failed with the reason): start a new one on the
        same model; waiting jobs keep their places."""
        crashed = self.pipeline
        log.warning("generation process %s; starting a new one for %s", crashed.exit_reason, crashed.model_id)
        self.current = LoadedModel(self._new_pipeline(crashed.model_id), "loading", epoch=self.current.epoch)
        self._load_in_background(crashed)

    async def wait_until_settled(self) -> str | None:
        """Wait until the current model is ready (None) or failed to load (the error)."""
        await self._settled.wait()
        if self.current.state == "ready" and not self.pipeline.alive:
            self._reload_after_crash()
            await self._settled.wait()
        return self.current.error if self.current.state == "error" else None

    # -- which model a job was queued for -------------------------------------------------------

    def remember_job(self, session_id: str) -> None:
        self._job_epochs[session_id] = self.current.epoch

    def forget_job(self, session_id: str) -> None:
        self._job_epochs.pop(session_id, None)

    def switched_away_from(self, session_id: str, queued_for: str) -> str | None:
        """Why a job taken from the queue must not run on the current model (None: it may)."""
        epoch = self._job_epochs.pop(session_id, self.current.epoch)
        if epoch == self.current.epoch:
            return None
        return (
            f"the server switched to model {self.pipeline.model_name!r} after this job was queued for "
            f"{queued_for!r}; submit it again"
        )

    # -- what the faces show --------------------------------------------------------------------

    def health(self) -> ModelHealth:
        pipeline = self.pipeline
        return ModelHealth(
            id=pipeline.model_id,
            state=self.current.state,
            device=pipeline.device,
            error=self.current.error,
            family=pipeline.family,
            schedulers=list(pipeline.supported_schedulers()),
            process_id=pipeline.process_id,
            modes=list(pipeline.modes or ()),
        )

    def known_models(self) -> list[KnownModel]:
        """Local models under assets/models and <data_dir>/models, the current one first if it is elsewhere."""
        known = known_local_models(PROJECT_ROOT / "assets" / "models", self.data_dir / "models")
        current = self.pipeline.model_id
        if current not in {item.model for item in known}:
            path = Path(current)
            kind = "hub" if not path.exists() else ("folder" if path.is_dir() else "single_file")
            known.insert(0, KnownModel(model=current, name=self.pipeline.model_name, kind=kind))
        return known
