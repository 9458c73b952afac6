"""A stored job or gallery image as the faces see it: the REST views, image URLs, and the messages a
subscriber would have seen (to rebuild a session's history after a restart)."""
from __future__ import annotations

from pathlib import Path

from ..pipeline.values import denoising_steps
from ..protocol import (
    GalleryItem,
    GenerateRequest,
    GenerationCancelled,
    GenerationComplete,
    GenerationError,
    GenerationMetadata,
    GenerationQueued,
    GenerationStarted,
    JobView,
    SessionEvent,
)
from .store import GalleryRecord, JobRecord

IMAGES_ROUTE = "/images"
UPLOADS_ROUTE = "/api/uploads"
INPUT_ROLES = ("init_image", "mask_image")


def image_url(name: str) -> str:
    """Where the server serves a generated image (GET /images/{name})."""
    return f"{IMAGES_ROUTE}/{name}"


def upload_url(name: str) -> str:
    """Where the server serves a stored input image (GET /api/uploads/{name})."""
    return f"{UPLOADS_ROUTE}/{name}"


def input_urls(holder: GenerateRequest | GenerationMetadata | None) -> dict[str, str]:
    """Role (init_image, mask_image) -> URL of the stored inputs a request or a result names."""
    if holder is None:
        return {}
    return {role: upload_url(name) for role in INPUT_ROLES if (name := getattr(holder, role, None))}


def total_steps(request: GenerateRequest) -> int:
    """The denoising steps the job runs (fewer than asked from an input image)."""
    return denoising_steps(request.num_inference_steps, request.strength if request.init_image else None)


def image_paths(images_dir: Path, names: list[str]) -> list[str]:
    return [str(images_dir / name) for name in names]


def image_urls(names: list[str]) -> list[str]:
    return [image_url(name) for name in names]


def job_view(record: JobRecord, images_dir: Path, position: int | None) -> JobView:
    return JobView(
        session_id=record.id,
        status=record.status,
        request=record.request,
        model=record.model,
        seed=record.seed,
        step=record.step,
        total_steps=record.total_steps or total_steps(record.request),
        eta_seconds=record.eta_seconds if record.status == "running" else None,
        position=position,
        image_paths=image_paths(images_dir, record.image_names),
        image_urls=image_urls(record.image_names),
        error=record.error,
        attempts=record.attempts,
        metadata=record.metadata,
        created_at=record.created_at,
        started_at=record.started_at,
        finished_at=record.finished_at,
        input_urls=input_urls(record.request),
        worker=record.worker or None,
    )


def gallery_item(record: GalleryRecord, images_dir: Path) -> GalleryItem:
    return GalleryItem(
        name=record.name,
        url=image_url(record.name),
        path=str(images_dir / record.name),
        session_id=record.session_id,
        index=record.index,
        metadata=record.metadata,
        input_urls=input_urls(record.metadata),
    )


def stored_events(record: JobRecord, images_dir: Path, position: int | None) -> list[SessionEvent]:
    """The messages a subscriber needs to catch up on a job the bus no longer remembers (after a restart)."""
    seq = record.last_seq
    if record.status == "completed" and record.metadata is not None:
        return [
            GenerationComplete(
                session_id=record.id,
                seq=seq,
                image_paths=image_paths(images_dir, record.image_names),
                image_urls=image_urls(record.image_names),
                metadata=record.metadata,
            )
        ]
    if record.status == "failed":
        return [GenerationError(session_id=record.id, seq=seq, error=record.error or "failed")]
    if record.status == "cancelled":
        return [GenerationCancelled(session_id=record.id, seq=seq)]
    if record.status == "running":
        return [
            GenerationStarted(
                session_id=record.id, seq=seq, total_steps=record.total_steps, model=record.model, worker=record.worker
            )
        ]
    return [GenerationQueued(session_id=record.id, seq=seq, position=position or 1)]
