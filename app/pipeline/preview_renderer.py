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
    process, where the latents are)."""

    def __init__(
        self,
        settings: PreviewSettings,
        generator: Any,
        width: int,
        height: int,
        watched: Callable[[], bool] = lambda: True,
    ) -> None:
        self.settings = settings
        self.watched = watched  # nobody watching: no preview is rendered (no work nobody sees)
        self.generator = generator
        self.width, self.height = width, height
        self.enabled = settings.enabled
        self.throttle = PreviewThrottle(settings.every_n_steps, settings.min_interval_ms)

    def on_step(self, step: int, latents: Any) -> RenderedPreview | None:
        """Called after each step (1-based); a preview when this step gets one."""
        if not self.enabled or latents is None or not self.watched() or not self.throttle.should_render(step - 1):
            return None
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
