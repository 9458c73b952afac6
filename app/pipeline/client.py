"""The server's handle on its generation process (app/pipeline/process.py): start it and load the model,
run one job (or a batch of compatible jobs) at a time on it with step and preview callbacks on the event
loop, cancel, stop.

Messages arrive through `loop.add_reader` on the pipe, so no server thread waits on the process and
every callback runs on the event loop. If the process dies (killed for memory, a crash in native code),
the running job fails with the reason and `alive` turns false; the engine then starts a new one.
"""
from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from . import entry
from .messages import (
    CancelJob,
    DownloadProgress,
    JobCancelled,
    JobFailed,
    JobFinished,
    JobOutcome,
    JobSpec,
    LoadFailed,
    ModelLoaded,
    ModelSpec,
    PreviewReady,
    RunBatch,
    RunJob,
    SetPreviews,
    Shutdown,
    StepDone,
)
from .spawning import describe_exit, process_context
from .values import (
    SCHEDULER_NAMES,
    SizeLimits,
    display_name,
    family_of_folder,
    inspect_size_limits,
    schedulers_for_family,
)

log = logging.getLogger(__name__)


class PipelineStopped(RuntimeError):
    """The generation process is gone; the message says how it ended."""


class ModelLoadFailed(RuntimeError):
    """The process could not load its model; the message is what GET /api/health reports."""


def latest_progress_only(messages: list[Any]) -> list[Any]:
    """`messages` in order, without any StepDone or PreviewReady that a later one of its job replaces."""
    last: dict[tuple[type, str], int] = {}
    for index, message in enumerate(messages):
        if isinstance(message, (StepDone, PreviewReady)):
            last[(type(message), message.session_id)] = index
    return [
        message for index, message in enumerate(messages)
        if not isinstance(message, (StepDone, PreviewReady)) or last[(type(message), message.session_id)] == index
    ]


JobWithCallbacks = tuple[JobSpec, Callable[[StepDone], None], Callable[[PreviewReady], None]]


@dataclass
class RunningJob:
    session_id: str
    on_step: Callable[[StepDone], None]
    on_preview: Callable[[PreviewReady], None]
    outcome: asyncio.Future[JobOutcome]


class PipelineProcess:
    def __init__(
        self,
        spec: ModelSpec,
        on_download: Callable[[DownloadProgress], None] | None = None,
        on_exit: Callable[[PipelineProcess], None] | None = None,
    ) -> None:
        self.spec = spec
        self.model_id = spec.model_id
        self.on_download = on_download
        self.on_exit = on_exit  # called on the loop when the process died on its own (not by close)
        self.family: str | None = family_of_folder(Path(spec.model_id))
        self.size_limits: SizeLimits = inspect_size_limits(spec.model_id)  # until the process reports its own
        self._device: str | None = None if spec.device == "auto" else spec.device
        self._schedulers: tuple[str, ...] | None = None
        # What the loaded model can do (None: not known until it has loaded): modes, LoRAs and their layers.
        self.modes: tuple[str, ...] | None = None
        self.supports_lora: bool | None = None
        self.lora_layers: dict[str, int] = {}
        self._process: Any = None
        self._starting: asyncio.Future[None] | None = None
        self._connection: Connection | None = None
        self._loaded: asyncio.Future[ModelLoaded] | None = None
        self._jobs: dict[str, RunningJob] = {}  # the job running, or the jobs of a batch
        self._gone = False
        self._closing = False
        self.exit_reason: str | None = None

    @property
    def model_name(self) -> str:
        return display_name(self.model_id)

    @property
    def device(self) -> str:
        return self._device or self.spec.device

    @property
    def alive(self) -> bool:
        return self._process is not None and not self._gone

    @property
    def process_id(self) -> int | None:
        return self._process.pid if self.alive else None

    def supported_schedulers(self) -> tuple[str, ...]:
        if self._schedulers is not None:
            return self._schedulers
        return schedulers_for_family(self.family) if self.family is not None else SCHEDULER_NAMES

    # -- lifecycle ------------------------------------------------------------------------------

    async def load(self) -> None:
        """Start the process and wait until its model is loaded; raises ModelLoadFailed or PipelineStopped."""
        loop = asyncio.get_running_loop()
        context = process_context(self.spec.log_file)
        ours, theirs = context.Pipe()
        self._loaded = loop.create_future()
        self._process = context.Process(target=entry.main, args=(theirs, self.spec), name="ai-artist-pipeline", daemon=True)
        self._connection = ours
        # The fork server's first start imports torch (seconds); a close() meanwhile waits for it.
        self._starting = asyncio.ensure_future(asyncio.to_thread(self._process.start))
        self._starting.add_done_callback(lambda _: theirs.close())  # only once the process has its copy
        await asyncio.shield(self._starting)
        loop.add_reader(ours.fileno(), self._on_readable)
        loaded = await self._loaded
        self._device = loaded.device
        self.family = loaded.family
        self.size_limits = loaded.size_limits
        self._schedulers = loaded.schedulers
        self.modes, self.supports_lora, self.lora_layers = loaded.modes, loaded.supports_lora, loaded.lora_layers
        log.info("generation process %d loaded %s on %s in %.1f s", self._process.pid, self.model_id,
                 loaded.device, loaded.seconds)

    async def close(self, timeout: float = 10) -> None:
        """Stop the running job at its next step, let the process exit (killed after `timeout`)."""
        self._closing = True
        if self._starting is not None and not self._starting.done():
            await asyncio.wait([self._starting], timeout=timeout)
        process = self._process
        if process is None or process.pid is None:  # never started
            self._stop_reading()
            self._gone = True
            self._fail_waiters(PipelineStopped("the generation process was stopped before it started"))
            return
        if self.alive and self._connection is not None:
            try:
                self._connection.send(Shutdown())
            except OSError:
                pass
        await asyncio.to_thread(process.join, timeout)
        if process.is_alive():
            log.warning("the generation process did not stop within %.0f s; killing it", timeout)
            process.kill()
            await asyncio.to_thread(process.join, 5)
        self._stop_reading()
        self._gone = True
        self._fail_waiters(PipelineStopped("the generation process was stopped"))

    # -- jobs -----------------------------------------------------------------------------------

    def run(
        self, job: JobSpec, on_step: Callable[[StepDone], None], on_preview: Callable[[PreviewReady], None]
    ) -> asyncio.Future[JobOutcome]:
        """Send one job at once and return its outcome to await; the callbacks run on the event loop as
        its messages arrive. Raises PipelineStopped when the process is gone."""
        return self._send_jobs(RunJob(job), [(job, on_step, on_preview)])[0]

    def run_batch(self, jobs: list[JobWithCallbacks]) -> list[asyncio.Future[JobOutcome]]:
        """Send compatible jobs as one pipeline call (app/pipeline/batch_run.py); each has its own callbacks
        and outcome, in order. Raises PipelineStopped when the process is gone."""
        return self._send_jobs(RunBatch(tuple(job for job, _, _ in jobs)), jobs)

    def _send_jobs(self, message: RunJob | RunBatch, jobs: list[JobWithCallbacks]) -> list[asyncio.Future[JobOutcome]]:
        if not self.alive or self._connection is None:
            raise PipelineStopped(f"the generation process {self.exit_reason or 'is not running'}")
        outcomes = []
        for job, on_step, on_preview in jobs:
            outcome: asyncio.Future[JobOutcome] = asyncio.get_running_loop().create_future()
            running = self._jobs[job.session_id] = RunningJob(job.session_id, on_step, on_preview, outcome)
            outcome.add_done_callback(lambda _, running=running: self._forget(running))
            outcomes.append(outcome)
        try:
            self._connection.send(message)
        except OSError as error:
            for job, _, _ in jobs:
                self._jobs.pop(job.session_id, None)
            raise PipelineStopped(f"the generation process is gone ({error})") from error
        return outcomes

    def _forget(self, job: RunningJob) -> None:
        if self._jobs.get(job.session_id) is job:
            del self._jobs[job.session_id]

    def cancel(self, session_id: str) -> bool:
        """Ask the running job to stop at its next step; False when `session_id` is not the one running."""
        if session_id not in self._jobs or self._connection is None:
            return False
        try:
            self._connection.send(CancelJob(session_id))
        except OSError:
            return False
        return True

    def set_previews(self, session_id: str, watched: bool) -> bool:
        """Tell the running job to render previews from its next step on, or to stop; False when it does not run."""
        if session_id not in self._jobs or self._connection is None:
            return False
        try:
            self._connection.send(SetPreviews(session_id, watched))
        except OSError:
            return False
        return True

    # -- messages -------------------------------------------------------------------------------

    def _on_readable(self) -> None:
        """Everything that arrived, with progress coalesced: when the loop fell behind the process (a
        thousand subscribers on two cores), the steps it has not published yet are replaced by the
        latest one, so it catches up at once instead of publishing a backlog."""
        connection = self._connection
        if connection is None:
            return
        try:
            arrived = [connection.recv()]
            while connection.poll():
                arrived.append(connection.recv())
            for message in latest_progress_only(arrived):
                self._dispatch(message)
        except (EOFError, OSError):
            self._stop_reading()
            self._gone = True
            if not self._closing:
                asyncio.get_running_loop().create_task(self._report_exit())

    def _dispatch(self, message: Any) -> None:
        job = self._jobs.get(getattr(message, "session_id", ""))
        if isinstance(message, (StepDone, PreviewReady)):
            if job is not None:
                handler = job.on_step if isinstance(message, StepDone) else job.on_preview
                try:
                    handler(message)  # type: ignore[arg-type]
                except Exception:
                    log.exception("handling %s of job %s failed", type(message).__name__, message.session_id)
        elif isinstance(message, (JobFinished, JobCancelled, JobFailed)):
            if job is not None and not job.outcome.done():
                job.outcome.set_result(message)
        elif isinstance(message, ModelLoaded):
            if self._loaded is not None and not self._loaded.done():
                self._loaded.set_result(message)
        elif isinstance(message, LoadFailed):
            if self._loaded is not None and not self._loaded.done():
                self._loaded.set_exception(ModelLoadFailed(message.error))
        elif isinstance(message, DownloadProgress):
            if self.on_download is not None:
                self.on_download(message)

    async def _report_exit(self) -> None:
        await asyncio.to_thread(self._process.join, 5)
        self.exit_reason = describe_exit(self._process.exitcode)
        log.error("the generation process %d %s", self._process.pid, self.exit_reason)
        self._fail_waiters(PipelineStopped(f"the generation process {self.exit_reason}"))
        if self.on_exit is not None and not self._closing:
            self.on_exit(self)

    def _fail_waiters(self, error: Exception) -> None:
        for future in (self._loaded, *(job.outcome for job in list(self._jobs.values()))):
            if future is not None and not future.done():
                future.set_exception(error)
                future.exception()  # whoever awaits it still gets the error; nobody waiting is no error

    def _stop_reading(self) -> None:
        if self._connection is not None:
            try:
                asyncio.get_running_loop().remove_reader(self._connection.fileno())
            except (RuntimeError, ValueError, OSError):
                pass
            self._connection.close()
            self._connection = None
