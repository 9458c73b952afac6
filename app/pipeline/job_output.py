"""What a job sends and writes in the generation process, alone or in a batch: its steps and previews as
they come (`JobReporter`), and at the end its PNGs with their metadata (`finished`).
"""
from __future__ import annotations

import logging
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Protocol

from PIL import Image

from ..protocol import GenerationMetadata, LoraUse
from .lora_files import short_hash
from .messages import JobFinished, JobSpec, PreviewReady, StepDone
from .png import save_png
from .preview_renderer import PreviewRenderer, RenderedPreview
from .values import image_seed, mode_of

log = logging.getLogger(__name__)


class Sender(Protocol):
    def send(self, message: Any) -> None: ...

    def previews_watched(self, session_id: str) -> bool: ...


class JobReporter:
    """One job's `StepDone` after every step and its throttled previews (of its own rows of the latents),
    rendered only while someone watches it."""

    def __init__(self, job: JobSpec, generator: Any, channel: Sender) -> None:
        self.job = job
        self.channel = channel
        self.previews = PreviewRenderer(
            job.previews, generator, job.width, job.height, watched=lambda: channel.previews_watched(job.session_id),
            deliver=self.send_preview,  # used for CUDA latents: previews made off the loop's critical path
        )
        self.rendered: list[float] = []

    def on_step(self, step: int, total_steps: int, latents: Any) -> None:
        self.channel.send(StepDone(self.job.session_id, step, total_steps, time.perf_counter()))
        preview = self.previews.on_step(step, latents)
        if preview is not None:
            self.send_preview(step, preview)

    def send_preview(self, step: int, preview: RenderedPreview) -> None:
        self.rendered.append(preview.seconds)
        self.channel.send(
            PreviewReady(self.job.session_id, step, preview.jpeg, preview.width, preview.height, preview.seconds)
        )

    def log_previews(self) -> None:
        """The job ended: stop previewing it, and log what its previews cost."""
        skipped = self.previews.close()
        if self.rendered:
            log.info("job %s: %d previews, %.1f ms each, %d skipped while one was in flight", self.job.session_id,
                     len(self.rendered), 1000 * sum(self.rendered) / len(self.rendered), skipped)


def finished(model_name: str, job: JobSpec, images: list[Image.Image], entered: float, left: float) -> JobFinished:
    """Write the job's PNGs (each with its own seed in its metadata) and say so."""
    has_input, has_mask = job.init_image is not None, job.mask_image is not None
    metadata = GenerationMetadata(
        prompt=job.prompt,
        negative_prompt=job.negative_prompt,
        seed=job.seed,
        num_inference_steps=job.num_inference_steps,
        guidance_scale=job.guidance_scale,
        model=model_name,
        width=images[0].width,
        height=images[0].height,
        scheduler=job.scheduler or "default",
        created_at=datetime.now(timezone.utc),
        duration_seconds=round(left - entered, 3),
        mode=mode_of(has_input, has_mask),
        strength=job.strength if has_input else None,
        mask_blur=job.mask_blur if has_mask else None,
        init_image=job.init_image.name if job.init_image is not None else None,
        mask_image=job.mask_image.name if job.mask_image is not None else None,
        loras=[LoraUse(name=lora.name, weight=lora.weight, hash=short_hash(lora.sha256)) for lora in job.loras],
    )
    stamp = metadata.created_at.strftime("%Y%m%d-%H%M%S")
    names = tuple(f"{stamp}-{job.session_id[:8]}-{index}.png" for index in range(len(images)))
    for index, (name, image) in enumerate(zip(names, images)):
        own_seed = metadata.model_copy(update={"seed": image_seed(job.seed, index)})
        save_png(image, Path(job.images_dir) / name, own_seed)
    return JobFinished(job.session_id, names, metadata, entered, left)
