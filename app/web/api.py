"""REST routes: submit, inspect and cancel jobs; input images and LoRAs; the gallery; images; health.
OpenAPI at /docs."""
from __future__ import annotations

import asyncio
from typing import Annotated

from fastapi import APIRouter, Depends, File, HTTPException, Query, Request, UploadFile
from fastapi.responses import FileResponse, Response

from ..engine import (
    Engine,
    InputProblem,
    InputTooLarge,
    InvalidRequest,
    JobAlreadyFinished,
    JobNotFound,
    ModelBusy,
    ModelUnavailable,
    QueueFull,
    QueueUnavailable,
)
from ..engine.views import IMAGES_ROUTE, UPLOADS_ROUTE
from ..protocol import (
    ErrorBody,
    GalleryPage,
    GenerateRequest,
    GenerateResponse,
    Health,
    JobPage,
    JobStatus,
    JobView,
    LoraList,
    ModelList,
    ModelSwitchRequest,
    ModelSwitchResponse,
    UploadResponse,
    WorkerView,
)

router = APIRouter()
MAX_OFFSET = 2**62  # SQLite's integers are 64-bit: a larger offset is a 422, not a 500
ERRORS = {404: {"model": ErrorBody}, 409: {"model": ErrorBody}, 429: {"model": ErrorBody}, 503: {"model": ErrorBody}}


def field_errors(problems: list[tuple[str, str]]) -> list[dict[str, object]]:
    """422 details in FastAPI's own shape, naming each field."""
    return [{"type": "value_error", "loc": ["body", field], "msg": msg} for field, msg in problems]


def get_engine(request: Request) -> Engine:
    return request.app.state.engine


EngineDep = Annotated[Engine, Depends(get_engine)]


def client_of(request: Request) -> str:
    """Who is asking, as the engine records it: the caller's address."""
    return f"address:{request.client.host}" if request.client else "address:unknown"


@router.post("/api/generate", response_model=GenerateResponse, responses=ERRORS, tags=["generation"])
async def generate(body: GenerateRequest, engine: EngineDep, request: Request) -> GenerateResponse:
    """Queue a generation. Follow it on /ws with `subscribe {session_id}` or poll /api/jobs/{session_id}.

    With `init_image` (and `mask_image`) it reworks (repaints part of) a picture; `loras` apply LoRAs.
    422 names each bad field, including a mode or LoRA the loaded model cannot use."""
    prepared = await asyncio.to_thread(engine.prepare, body)  # input images are decoded off the event loop
    try:
        session_id, position = engine.submit(prepared, client=client_of(request))
    except InvalidRequest as error:
        raise HTTPException(422, detail=field_errors(error.problems)) from None
    except QueueUnavailable as error:
        raise HTTPException(503, detail=str(error), headers={"Retry-After": "5"}) from None
    except QueueFull as error:
        raise HTTPException(429, detail=str(error), headers={"Retry-After": "5"}) from None
    return GenerateResponse(session_id=session_id, position=position)


@router.post(UPLOADS_ROUTE, response_model=UploadResponse, tags=["inputs"],
             responses={413: {"model": ErrorBody}})
async def upload(engine: EngineDep, file: Annotated[UploadFile, File(description="A PNG, JPEG or WebP image.")]) -> UploadResponse:
    """Keep an input image; its `name` goes into `init_image` or `mask_image` of POST /api/generate.

    413 over uploads.max_bytes; 422 (field `file`) when it is not a PNG, JPEG or WebP image, or larger than
    uploads.max_side pixels on a side. The same picture uploaded twice gets the same name."""
    data = await file.read(engine.settings.uploads.max_bytes + 1)
    try:
        return await asyncio.to_thread(engine.upload, data)
    except InputTooLarge as error:
        raise HTTPException(413, detail=f"file: {error}") from None
    except InputProblem as error:
        raise HTTPException(422, detail=field_errors([("file", f"file: {error}")])) from None


@router.get(UPLOADS_ROUTE + "/{name}", responses={404: {"model": ErrorBody}}, tags=["inputs"])
async def uploaded(name: str, engine: EngineDep) -> FileResponse:
    """A stored input image: an upload, or an input a job was sent with (as its view and metadata name it)."""
    path = engine.upload_file(name)
    if path is None:
        raise HTTPException(404, detail=f"no input image named {name!r}")
    return FileResponse(path, media_type="image/png")


@router.get("/api/loras", response_model=LoraList, tags=["inputs"])
async def loras(engine: EngineDep) -> LoraList:
    """The LoRA files in model.lora_dir, with their hashes and whether each fits the loaded model."""
    return await asyncio.to_thread(engine.lora_list)


@router.get("/api/jobs/{session_id}", response_model=JobView, responses=ERRORS, tags=["jobs"])
async def get_job(session_id: str, engine: EngineDep) -> JobView:
    try:
        return engine.job_view(session_id)
    except JobNotFound as error:
        raise HTTPException(404, detail=str(error)) from None


@router.get("/api/jobs", response_model=JobPage, tags=["jobs"])
async def list_jobs(
    engine: EngineDep,
    status: JobStatus | None = None,
    offset: Annotated[int, Query(ge=0, le=MAX_OFFSET)] = 0,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> JobPage:
    """Jobs, newest first, optionally only those with one status."""
    return engine.jobs(status, offset, limit)


@router.post("/api/jobs/{session_id}/cancel", response_model=JobView, responses=ERRORS, tags=["jobs"])
async def cancel_job(session_id: str, engine: EngineDep) -> JobView:
    """Cancel a queued job at once; a running one stops at its next step (then `generation_cancelled`)."""
    try:
        engine.cancel(session_id)
    except JobNotFound as error:
        raise HTTPException(404, detail=str(error)) from None
    except JobAlreadyFinished as error:
        raise HTTPException(409, detail=str(error)) from None
    return engine.job_view(session_id)


@router.get("/api/gallery", response_model=GalleryPage, tags=["gallery"])
async def gallery(
    engine: EngineDep,
    offset: Annotated[int, Query(ge=0, le=MAX_OFFSET)] = 0,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> GalleryPage:
    """Every generated image, newest first, with its parameters."""
    return engine.gallery(offset, limit)


@router.get(IMAGES_ROUTE + "/{name:path}", responses={404: {"model": ErrorBody}}, tags=["gallery"])
async def image(name: str, engine: EngineDep) -> FileResponse:
    """A generated image. Only plain file names inside the output folder are served."""
    path = engine.image_file(name)
    if path is None:
        raise HTTPException(404, detail=f"no image named {name!r}")
    return FileResponse(path, media_type="image/png")


@router.get("/api/health", response_model=Health, tags=["health"])
async def health(engine: EngineDep) -> Health:
    return engine.health()


@router.get("/api/workers", response_model=list[WorkerView], tags=["health"])
async def workers(engine: EngineDep) -> list[WorkerView]:
    """Every worker: the generation processes of this server, and remote ones joined over Redis."""
    return engine.workers()


@router.get(
    "/api/jobs/{session_id}/preview.jpg",
    responses={200: {"content": {"image/jpeg": {}}}, 404: {"model": ErrorBody}},
    tags=["jobs"],
)
async def job_preview(session_id: str, engine: EngineDep) -> Response:
    """The latest live preview of a job (a small JPEG; kept a while after it ends); 404 when it has none."""
    preview = engine.preview(session_id)
    if preview is None:
        raise HTTPException(404, detail=f"no preview for session {session_id!r} (not running, or none rendered yet)")
    return Response(preview.jpeg, media_type="image/jpeg", headers={"Cache-Control": "no-store"})


@router.get("/api/models", response_model=ModelList, tags=["model"])
async def list_models(engine: EngineDep) -> ModelList:
    """The current model and the local models found under assets/models and <data_dir>/models."""
    return engine.models()


@router.post("/api/model", response_model=ModelSwitchResponse, status_code=202, responses=ERRORS, tags=["model"])
async def switch_model(body: ModelSwitchRequest, engine: EngineDep) -> ModelSwitchResponse:
    """Load another model in the background (hub id, local folder or single file); follow it on /api/health.

    Jobs waiting for the previous model fail at once with a reason (listed in `failed_jobs`); a running
    job finishes on the previous model first. 409 while another model is loading; 422 when the model
    cannot be loaded here (the message says what is missing and how to get it).
    """
    try:
        return engine.switch_model(body.model)
    except ModelUnavailable as error:
        raise HTTPException(422, detail=field_errors([("model", str(error))])) from None
    except ModelBusy as error:
        raise HTTPException(409, detail=str(error)) from None
