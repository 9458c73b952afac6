"""Live previews of running jobs: rendered in the generation process from the step callback, throttled
(`PreviewRenderer`); kept in the server's memory (`PreviewStore`: the latest JPEG per running job,
served at `GET /api/jobs/{id}/preview.jpg`) and published as `generation_preview`.
"""
from __future__ import annotations

import io
import logging
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from PIL import Image

from .config import PreviewSettings
from .previews import PreviewThrottle, encode_jpeg, to_data_url
from .protocol import GenerationPreview

log = logging.getLogger(__name__)


def preview_url(session_id: str, step: int) -> str:
    # The step in the query makes each preview a new URL, so an <img> bound to it reloads.
    return f"/api/jobs/{session_id}/preview.jpg?step={step}"


@dataclass(frozen=True)
class StoredPreview:
    jpeg: bytes
    step: int


class PreviewStore:
    """The latest preview JPEG of each running job (written and read on the event loop).

    A finished job's last preview stays servable among the `keep_finished` most recent, so a page that
    asks for it just as the job ends still gets an image rather than a 404.
    """

    def __init__(self, keep_finished: int = 16) -> None:
        self._latest: dict[str, StoredPreview] = {}
        self._finished: OrderedDict[str, StoredPreview] = OrderedDict()
        self.keep_finished = keep_finished
        self._lock = threading.Lock()

    def put(self, session_id: str, jpeg: bytes, step: int) -> None:
        with self._lock:
            self._latest[session_id] = StoredPreview(jpeg, step)

    def get(self, session_id: str) -> StoredPreview | None:
        with self._lock:
            return self._latest.get(session_id) or self._finished.get(session_id)

    def retire(self, session_id: str) -> None:
        """The job ended: keep its last preview among the recent ones for a while."""
        with self._lock:
            last = self._latest.pop(session_id, None)
            if last is not None:
                self._finished[session_id] = last
                while len(self._finished) > self.keep_finished:
                    self._finished.popitem(last=False)


@dataclass(frozen=True)
class RenderedPreview:
    jpeg: bytes
    width: int
    height: int
    seconds: float  # time spent rendering it


class PreviewRenderer:
    """Turns one job's step callbacks into throttled preview JPEGs of its first image (in the generation
    process, where the latents are)."""

    def __init__(self, settings: PreviewSettings, generator: Any, width: int, height: int) -> None:
        self.settings = settings
        self.generator = generator
        self.width, self.height = width, height
        self.enabled = settings.enabled
        self.throttle = PreviewThrottle(settings.every_n_steps, settings.min_interval_ms)

    def on_step(self, step: int, latents: Any) -> RenderedPreview | None:
        """Called after each step (1-based); a preview when this step gets one."""
        if not self.enabled or latents is None or not self.throttle.should_render(step - 1):
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


def preview_event(session_id: str, step: int, jpeg: bytes, width: int, height: int) -> GenerationPreview:
    return GenerationPreview(
        session_id=session_id,
        step=step,
        image=to_data_url(jpeg),
        image_url=preview_url(session_id, step),
        width=width,
        height=height,
    )
