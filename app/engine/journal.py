"""The one place where a job's change of state is written to the store and then told on the bus.

The store is the truth, so it is written first: a subscriber never hears of a state the store does not
hold (and a client that reads `GET /api/jobs/{id}` after a message sees at least that state). The
worker, the engine's cancel and switch, and restart recovery all go through here.
"""
from __future__ import annotations

from pathlib import Path

from ..protocol import (
    GenerationCancelled,
    GenerationComplete,
    GenerationError,
    GenerationMetadata,
    GenerationProgress,
    GenerationQueued,
    GenerationStarted,
    progress_text,
)
from .events import EventBus
from .previews import PreviewStore, preview_event
from .store import Store
from .views import image_paths, image_urls

CANCELLED_BY_REQUEST = "cancelled by request"


class JobJournal:
    def __init__(self, store: Store, events: EventBus, previews: PreviewStore, images_dir: Path) -> None:
        self.store = store
        self.events = events
        self.previews = previews
        self.images_dir = images_dir

    def queued(self, session_id: str, position: int) -> None:
        """Waiting at `position` (the store already holds the job as queued)."""
        self.events.publish(GenerationQueued(session_id=session_id, position=position))

    def started(self, session_id: str, seed: int, total_steps: int, model_name: str, worker: str = "") -> None:
        self.store.mark_running(session_id, seed, total_steps, worker)
        self.events.publish(
            GenerationStarted(session_id=session_id, total_steps=total_steps, model=model_name, worker=worker)
        )

    def progressed(self, session_id: str, step: int, total_steps: int, eta_seconds: float | None) -> None:
        self.store.update_step(session_id, step, eta_seconds)
        self.events.publish(
            GenerationProgress(
                session_id=session_id,
                step=step,
                total_steps=total_steps,
                message=progress_text(step, total_steps),
                eta_seconds=eta_seconds,
            )
        )

    def previewed(self, session_id: str, step: int, jpeg: bytes, width: int, height: int) -> None:
        self.previews.put(session_id, jpeg, step)
        self.events.publish(preview_event(session_id, step, jpeg, width, height))

    def completed(self, session_id: str, image_names: list[str], metadata: GenerationMetadata) -> None:
        self.previews.retire(session_id)
        self.store.add_to_gallery(session_id, image_names, metadata)
        self.store.finish(session_id, "completed", image_names=image_names, metadata=metadata)
        self.events.publish(
            GenerationComplete(
                session_id=session_id,
                image_paths=image_paths(self.images_dir, image_names),
                image_urls=image_urls(image_names),
                metadata=metadata,
            )
        )

    def failed(self, session_id: str, message: str) -> None:
        self.previews.retire(session_id)
        self.store.finish(session_id, "failed", error=message)
        self.events.publish(GenerationError(session_id=session_id, error=message))

    def cancelled(self, session_id: str) -> None:
        self.previews.retire(session_id)
        self.store.finish(session_id, "cancelled", error=CANCELLED_BY_REQUEST)
        self.events.publish(GenerationCancelled(session_id=session_id))
