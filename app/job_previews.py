"""Live previews of running jobs: rendered in the generation thread from the step callback, throttled,
kept in memory (the latest JPEG per running job, served at `GET /api/jobs/{id}/preview.jpg`) and
published as `generation_preview`.
"""
from __future__ import annotations

import io
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
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
    """The latest preview JPEG of each running job; written by the generation thread, read on the loop.

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


class JobPreviewer:
    """Turns one job's step callbacks into throttled previews of its first image."""

    def __init__(
        self,
        settings: PreviewSettings,
        generator: Any,
        store: PreviewStore,
        session_id: str,
        width: int,
        height: int,
        publish: Callable[[GenerationPreview], None],
    ) -> None:
        self.settings = settings
        self.generator = generator
        self.store = store
        self.session_id = session_id
        self.width, self.height = width, height
        self.publish = publish
        self.enabled = settings.enabled
        self.throttle = PreviewThrottle(settings.every_n_steps, settings.min_interval_ms)
        self.seconds: list[float] = []  # time spent per rendered preview

    def on_step(self, step: int, _total: int, latents: Any) -> None:
        """Called in the generation thread after each step (1-based)."""
        if not self.enabled or latents is None or not self.throttle.should_render(step - 1):
            return
        started = time.perf_counter()
        try:
            decoder = self.generator.preview_decoder(self.settings.taesd_dir)
            image = decoder.preview(latents, pipe=self.generator.pipeline, height=self.height, width=self.width)
            jpeg = encode_jpeg(image, max_side=self.settings.max_side)
        except Exception:  # a preview must never fail the job
            log.exception("preview of %s failed; no more previews for this job", self.session_id)
            self.enabled = False
            return
        self.store.put(self.session_id, jpeg, step)
        self.seconds.append(time.perf_counter() - started)
        with Image.open(io.BytesIO(jpeg)) as shown:
            width, height = shown.size
        self.publish(
            GenerationPreview(
                session_id=self.session_id,
                step=step,
                image=to_data_url(jpeg),
                image_url=preview_url(self.session_id, step),
                width=width,
                height=height,
            )
        )

    def summary(self) -> str:
        if not self.seconds:
            return "no previews"
        return f"{len(self.seconds)} previews, {1000 * sum(self.seconds) / len(self.seconds):.1f} ms each"
