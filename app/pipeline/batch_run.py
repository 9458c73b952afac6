"""Several compatible jobs as one pipeline call, in the generation process (`RunBatch`).

Every image of every job is one row of the batch, with its own prompt, negative prompt, input image and
mask (image-to-image and inpainting jobs share a run when their strength and mask blur are the same) and
`torch.Generator` seeded as it would be alone (job seed + image index), so a job gives the same images
in a batch as alone (within 1/255 per channel: a batched matmul may sum in another order). After each
step every job still running reports its own `StepDone`, and its previews show its own rows of the
latents. The images are split back per job, each job's PNGs written with its own metadata.

Cancelling one job of a batch drops its rows: it ends at once (`JobCancelled` at the next step), gets no
more progress, previews or images, and the batch goes on for the others (its rows are still computed
to the end; splitting the batch mid-run would need every pipeline's internals). When every job of the
batch is cancelled, or the process is told to stop, the call is interrupted at the next step.
"""
from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import Any, Protocol

from .failures import describe_failure
from .generator import ArtworkGenerator, GenerationCancelledError
from .image_modes import ImageRow, decoded
from .job_output import JobReporter, Sender, finished
from .messages import JobCancelled, JobFailed, JobOutcome, JobSpec
from .values import image_seed

log = logging.getLogger(__name__)


class BatchChannel(Sender, Protocol):
    stopping: bool

    def begin(self, jobs: Sequence[JobSpec]) -> None: ...

    def should_stop(self, session_id: str) -> bool: ...


def batch_rows(jobs: Sequence[JobSpec]) -> list[ImageRow]:
    """Every image's prompt, negative prompt, seed and input images, job after job."""
    rows = []
    for job in jobs:
        init_image, mask_image = decoded(job.init_image), decoded(job.mask_image)  # once per job
        rows += [ImageRow(job.prompt, job.negative_prompt, image_seed(job.seed, index), init_image, mask_image)
                 for index in range(job.num_images)]
    return rows


def row_ranges(jobs: Sequence[JobSpec]) -> list[slice]:
    """Each job's rows of the batch's latents and images."""
    ranges, start = [], 0
    for job in jobs:
        ranges.append(slice(start, start + job.num_images))
        start += job.num_images
    return ranges


def run_batch(generator: ArtworkGenerator, jobs: Sequence[JobSpec], channel: BatchChannel) -> list[JobOutcome]:
    """Run `jobs` as one call. A job cancelled meanwhile is answered at once (sent on `channel`); the
    outcomes of the others are returned, in order, for the caller to send."""
    channel.begin(jobs)
    reporters = [JobReporter(job, generator, channel) for job in jobs]
    ranges = row_ranges(jobs)
    ended: set[str] = set()  # jobs already answered (cancelled mid-batch)
    entered = time.perf_counter()

    def end_cancelled() -> None:
        for job in jobs:
            if job.session_id not in ended and (channel.stopping or channel.should_stop(job.session_id)):
                ended.add(job.session_id)
                channel.send(JobCancelled(job.session_id, entered, time.perf_counter()))

    def on_step(step: int, total_steps: int, latents: Any) -> None:
        for job, reporter, rows in zip(jobs, reporters, ranges):
            if job.session_id not in ended:
                reporter.on_step(step, total_steps, latents[rows] if latents is not None else None)

    def should_stop() -> bool:
        end_cancelled()
        return len(ended) == len(jobs)  # only when no job is left does the call stop

    first = jobs[0]
    try:
        images = generator.generate(
            prompt=first.prompt,
            rows=batch_rows(jobs),
            num_inference_steps=first.num_inference_steps,
            guidance_scale=first.guidance_scale,
            width=first.width,
            height=first.height,
            scheduler=first.scheduler,
            strength=first.strength,
            mask_blur=first.mask_blur,
            on_step=on_step,
            should_stop=should_stop,
            loras=first.loras,
        )
        left = time.perf_counter()
        end_cancelled()  # a cancel that arrived during the last step
        return [
            finished(generator.model_name, job, images[rows], entered, left)
            for job, rows in zip(jobs, ranges) if job.session_id not in ended
        ]
    except GenerationCancelledError:
        return [JobCancelled(job.session_id, entered, time.perf_counter()) for job in jobs if job.session_id not in ended]
    except Exception as error:  # the model's failure is each job's failure, not the process's
        log.warning("batch of %d jobs failed: %r", len(jobs), error)
        failure = describe_failure(error)
        return [JobFailed(job.session_id, failure, entered, time.perf_counter()) for job in jobs
                if job.session_id not in ended]
    finally:
        for reporter in reporters:
            reporter.log_previews()
