"""Live previews on the server's side: the latest JPEG of each running job (`PreviewStore`, served at
`GET /api/jobs/{id}/preview.jpg`) and the `generation_preview` message. They are rendered in the
generation process (app/pipeline/preview_renderer.py).
"""
from __future__ import annotations

import base64
import threading
from collections import OrderedDict
from dataclasses import dataclass

from ..protocol import GenerationPreview


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
        self.received = 0  # every preview put here since start (GET /api/health counts them)
        self._lock = threading.Lock()

    def put(self, session_id: str, jpeg: bytes, step: int) -> None:
        with self._lock:
            self.received += 1
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


def to_data_url(jpeg: bytes) -> str:
    return "data:image/jpeg;base64," + base64.b64encode(jpeg).decode("ascii")


def preview_event(session_id: str, step: int, jpeg: bytes, width: int, height: int) -> GenerationPreview:
    return GenerationPreview(
        session_id=session_id,
        step=step,
        image=to_data_url(jpeg),
        image_url=preview_url(session_id, step),
        width=width,
        height=height,
    )
