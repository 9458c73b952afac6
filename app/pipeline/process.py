"""The generation process: where the model lives and every job's pipeline runs.

The server starts it (app/pipeline/client.py) so that the diffusers pipeline, which holds the GIL
for much of each step with small models, never competes with the server's event loop: many /ws
subscribers do not slow a generation, and the studio's pages stay responsive while it runs.
It loads the model once, then answers each `RunJob` with a `StepDone` per step (and `PreviewReady`
when a preview was rendered) and one outcome; PNGs are written here, before `JobFinished`.
Messages: app/pipeline/messages.py.
"""
from __future__ import annotations

import logging
import sys
import threading
import time
from collections import deque
from collections.abc import Sequence
from multiprocessing.connection import Connection
from typing import Any

from . import entry
from .batch_run import run_batch
from .failures import describe_failure
from .generator import ArtworkGenerator, GenerationCancelledError
from .image_modes import decoded
from .job_output import JobReporter, finished
from .lora_adapters import supports_lora
from .messages import (
    CancelJob,
    DownloadProgress,
    JobCancelled,
    JobFailed,
    JobOutcome,
    JobSpec,
    LoadFailed,
    ModelLoaded,
    ModelSpec,
    RunBatch,
    RunJob,
    SetPreviews,
    Shutdown,
)
from .sources import ModelUnavailable

log = logging.getLogger(__name__)


class Channel:
    """The process's end of the pipe: sends from any thread; notices cancels and preview watchers while
    jobs run (one job, or the jobs of a batch)."""

    def __init__(self, connection: Connection) -> None:
        self.connection = connection
        self.stopping = False  # Shutdown received, or the server went away
        self._send_lock = threading.Lock()
        self._running: frozenset[str] = frozenset()
        self._cancelled: set[str] = set()  # running jobs a cancel arrived for
        self._watched: dict[str, bool] = {}  # running job -> previews wanted (from its spec, then SetPreviews)
        self._inbox: deque[Any] = deque()

    def send(self, message: Any) -> None:
        with self._send_lock:
            self.connection.send(message)

    def receive(self) -> Any:
        if self._inbox:
            return self._inbox.popleft()
        return self.connection.recv()

    def begin(self, jobs: Sequence[JobSpec]) -> None:
        """These jobs run now (a late cancel or watcher change of an earlier job is moot)."""
        self._running = frozenset(job.session_id for job in jobs)
        self._cancelled.clear()
        self._watched = {job.session_id: job.previews_watched for job in jobs}

    def should_stop(self, session_id: str) -> bool:
        """Read what arrived since the last step (a poll: microseconds) and say whether to stop this job."""
        self.poll()
        return self.stopping or session_id in self._cancelled

    def previews_watched(self, session_id: str) -> bool:
        """Whether someone watches this job's previews now (a watcher that arrived during this step counts)."""
        self.poll()
        return self._watched.get(session_id, True)

    def poll(self) -> None:
        try:
            while self.connection.poll():
                message = self.connection.recv()
                if isinstance(message, CancelJob):
                    if message.session_id in self._running:
                        self._cancelled.add(message.session_id)
                elif isinstance(message, SetPreviews):
                    if message.session_id in self._running:
                        self._watched[message.session_id] = message.watched
                elif isinstance(message, Shutdown):
                    self.stopping = True
                else:
                    self._inbox.append(message)
        except (EOFError, OSError):
            self.stopping = True


def configure_logging() -> None:
    """Log lines go to stderr, which app/pipeline/entry.py pointed at the log file; warnings and errors
    also to the console, as the server's own do."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers.clear()
    root.addHandler(handler)
    console = entry.console()
    if console is not None:
        warnings = logging.StreamHandler(console)
        warnings.setLevel(logging.WARNING)
        warnings.setFormatter(logging.Formatter("%(message)s"))
        root.addHandler(warnings)
    root.setLevel(logging.INFO)


def load(spec: ModelSpec, channel: Channel) -> ArtworkGenerator | None:
    generator = ArtworkGenerator(
        spec.model_id,
        device=spec.device,
        dtype=spec.dtype,
        cpu_threads=spec.cpu_threads,
        options=spec.options,
        download_progress=lambda done, total: channel.send(DownloadProgress(done, total)),
        lora_dir=spec.lora_dir,
    )
    started = time.perf_counter()
    try:
        generator.load_model()
    except Exception as error:
        log.exception("loading %s failed", spec.model_id)
        message = str(error) if isinstance(error, ModelUnavailable) else f"{type(error).__name__}: {error}"
        channel.send(LoadFailed(message))
        return None
    channel.send(
        ModelLoaded(
            device=generator.device,
            family=generator.family,
            size_limits=generator.size_limits,
            schedulers=generator.supported_schedulers(),
            seconds=time.perf_counter() - started,
            modes=generator.modes.modes if generator.modes is not None else ("txt2img",),
            supports_lora=supports_lora(generator.pipeline),
            lora_layers=generator.lora_layers,
        )
    )
    return generator


def run_job(generator: ArtworkGenerator, job: JobSpec, channel: Channel) -> JobOutcome:
    channel.begin([job])
    reporter = JobReporter(job, generator, channel)
    entered = time.perf_counter()
    try:
        images = generator.generate(
            prompt=job.prompt,
            negative_prompt=job.negative_prompt,
            num_inference_steps=job.num_inference_steps,
            guidance_scale=job.guidance_scale,
            num_images=job.num_images,
            seed=job.seed,
            width=job.width,
            height=job.height,
            scheduler=job.scheduler,
            on_step=reporter.on_step,
            should_stop=lambda: channel.should_stop(job.session_id),
            init_image=decoded(job.init_image),
            mask_image=decoded(job.mask_image),
            strength=job.strength,
            mask_blur=job.mask_blur,
            loras=job.loras,
        )
        return finished(generator.model_name, job, images, entered, time.perf_counter())
    except GenerationCancelledError:
        return JobCancelled(job.session_id, entered, time.perf_counter())
    except Exception as error:  # the model's failure is the job's failure, not the process's
        log.warning("job %s failed: %r", job.session_id, error)
        return JobFailed(job.session_id, describe_failure(error), entered, time.perf_counter())
    finally:
        reporter.log_previews()


def serve(connection: Connection, spec: ModelSpec) -> None:
    """The process's main function: load the model, then run jobs until told to stop or the server goes."""
    configure_logging()
    channel = Channel(connection)
    try:
        generator = load(spec, channel)
    except (BrokenPipeError, EOFError, OSError):
        return  # the server went away while the model loaded
    if generator is None:
        return
    while not channel.stopping:
        try:
            message = channel.receive()
        except (EOFError, OSError):
            return  # the server is gone
        if isinstance(message, Shutdown):
            return
        if isinstance(message, (RunJob, RunBatch)):
            if isinstance(message, RunJob):
                outcomes = [run_job(generator, message.job, channel)]
            else:
                outcomes = run_batch(generator, message.jobs, channel)
            try:
                for outcome in outcomes:
                    channel.send(outcome)
            except (BrokenPipeError, OSError):
                return
