"""Turning a running job's step callbacks into throttled preview JPEGs, in the generation process where
the latents are. The server keeps and publishes them (app/engine/previews.py).
"""
from __future__ import annotations

import io
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from PIL import Image

from ..config import PreviewSettings
from .preview_offload import CudaSideStream, OffPathPreviews
from .previews import PreviewThrottle, encode_jpeg

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RenderedPreview:
    jpeg: bytes
    width: int
    height: int
    seconds: float  # time spent rendering it


class PreviewRenderer:
    """Turns one job's step callbacks into throttled preview JPEGs of its first image (in the generation
    process, where the latents are), only while someone watches the job.

    On the CPU a preview is made in the callback and returned. With `deliver` and latents on a CUDA
    device it is made off the loop's critical path (app/pipeline/preview_offload.py): `on_step` returns
    None and the preview goes to `deliver(step, preview)` from the preview thread; a step whose previous
    preview is still in flight gets none."""

    def __init__(
        self,
        settings: PreviewSettings,
        generator: Any,
        width: int,
        height: int,
        watched: Callable[[], bool] = lambda: True,
        deliver: Callable[[int, RenderedPreview], None] | None = None,
    ) -> None:
        self.settings = settings
        self.watched = watched  # nobody watching: no preview is rendered (no work nobody sees)
        self.deliver = deliver
        self.generator = generator
        self.width, self.height = width, height
        self.enabled = settings.enabled
        self.throttle = PreviewThrottle(settings.every_n_steps, settings.min_interval_ms)
        self.off_path: OffPathPreviews[Any] | None = None  # created at the first preview of CUDA latents
        self._side_stream: CudaSideStream | None = None

    def on_step(self, step: int, latents: Any) -> RenderedPreview | None:
        """Called after each step (1-based); a preview when this step gets one (made here)."""
        if not self.enabled or latents is None or not self.watched():
            return None
        if self.deliver is not None and getattr(latents, "is_cuda", False):
            self._offer_off_path(step, latents)
            return None
        if not self.throttle.should_render(step - 1):
            return None
        return self.render(latents)

    def _offer_off_path(self, step: int, latents: Any) -> None:
        if self.off_path is None:
            side = self._side_stream = CudaSideStream(latents.device)
            assert self.deliver is not None
            self.off_path = OffPathPreviews(lambda first: side.run(lambda: self.render(first)), self.deliver)
        if self.off_path.in_flight:
            self.off_path.skipped += 1  # before the throttle: the next step may still get one
            return
        if self.throttle.should_render(step - 1):
            side_stream = self._side_stream
            assert side_stream is not None
            self.off_path.offer(step, lambda: side_stream.snapshot(latents))

    def render(self, latents: Any) -> RenderedPreview | None:
        """A preview of the first row of `latents`; None (and no more previews) if it fails."""
        started = time.perf_counter()
        try:
            decoder = self.generator.preview_decoder(self.settings.taesd_dir)
            image = decoder.preview(latents, pipe=self.generator.pipeline, height=self.height, width=self.width)
            jpeg = encode_jpeg(image, max_side=self.settings.max_side)
            with Image.open(io.BytesIO(jpeg)) as shown:
                width, height = shown.size
        except Exception:  # a preview must never fail the job
            log.exception("preview failed; no more previews for this job")
            self.enabled = False
            return None
        return RenderedPreview(jpeg, width, height, time.perf_counter() - started)

    def close(self) -> int:
        """The job ended; returns how many steps got no preview because the previous was in flight."""
        if self.off_path is None:
            return 0
        self.off_path.close()
        return self.off_path.skipped
