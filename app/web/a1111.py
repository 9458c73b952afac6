"""The AUTOMATIC1111-compatible API (`/sdapi/v1/*`) for existing A1111 clients (webuiapi, Open WebUI,
SillyTavern, editor plugins, scripts). Mapped onto the engine: its jobs share the queue, appear live in the
studio and on /ws, and land in the gallery. Which endpoints and fields are supported: docs/compatibility.md.
"""
from __future__ import annotations

import asyncio
import base64
import binascii
import io
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import JSONResponse
from PIL import Image, UnidentifiedImageError

from ..engine import Engine, InvalidRequest, ModelBusy, ModelUnavailable, QueueFull
from ..pipeline.png import PARAMETERS_KEY, parse_a1111_parameters
from ..protocol import GenerationComplete, GenerationError
from .a1111_catalog import checkpoints, current_checkpoint, find_checkpoint, samplers, schedulers
from .a1111_models import (
    EmbeddingsResponse,
    Empty,
    ImageResponse,
    Img2ImgRequest,
    LoraItem,
    OptionsUpdate,
    PNGInfoRequest,
    PNGInfoResponse,
    ProgressResponse,
    SamplerItem,
    SchedulerItem,
    ScriptsList,
    SDModelItem,
    Txt2ImgRequest,
)
from .a1111_params import A1111_FIELDS, A1111Problems, generate_requests, generation_info, inverted_mask
from .a1111_runs import A1111Runs
from .api import client_of
from .followed_jobs import image_files

PREFIX = "/sdapi/v1"
TAGS: list[str | Any] = ["AUTOMATIC1111-compatible"]
router = APIRouter(prefix=PREFIX, tags=TAGS)


class A1111Api:
    """The A1111 face's state: its runs, and the options clients stored (kept while the server runs)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.runs = A1111Runs(engine)
        self.options: dict[str, Any] = {}


def get_a1111(request: Request) -> A1111Api:
    return request.app.state.a1111


A1111Dep = Annotated[A1111Api, Depends(get_a1111)]


def a1111_error(status: int, message: str, kind: str = "RuntimeError") -> JSONResponse:
    """An error in the shape A1111's API answers with (clients show `detail` or `errors`)."""
    return JSONResponse({"error": kind, "detail": message, "body": "", "errors": message}, status_code=status)


def unprocessable(problems: list[tuple[str, str]]) -> HTTPException:
    detail = [{"type": "value_error", "loc": ["body", field], "msg": message} for field, message in problems]
    return HTTPException(422, detail=detail)


def _files_and_infotexts(paths: list[Path], with_images: bool) -> tuple[list[str], list[str]]:
    images, infotexts = [], []
    for path in paths:
        data = path.read_bytes()
        if with_images:
            images.append(base64.b64encode(data).decode("ascii"))
        with Image.open(io.BytesIO(data)) as image:
            infotexts.append(str(image.info.get(PARAMETERS_KEY, "")))
    return images, infotexts


@router.post("/txt2img", response_model=ImageResponse)
async def txt2img(body: Txt2ImgRequest, a1111: A1111Dep, request: Request) -> ImageResponse | JSONResponse:
    """Generate and answer when done (like A1111). Each iteration is a job of ours, live in the studio and
    on /ws meanwhile; an interrupt answers with the images finished so far."""
    return await generate(body, a1111, client_of(request))


@router.post("/img2img", response_model=ImageResponse)
async def img2img(body: Img2ImgRequest, a1111: A1111Dep, request: Request) -> ImageResponse | JSONResponse:
    """Rework `init_images[0]` (image-to-image), or repaint the white part of `mask` (inpainting); answer
    when done, like txt2img."""
    return await generate(body, a1111, client_of(request))


async def generate(body: Txt2ImgRequest, a1111: A1111Dep, client: str) -> ImageResponse | JSONResponse:
    engine = a1111.engine
    try:
        if isinstance(body, Img2ImgRequest):
            body = await asyncio.to_thread(inverted_mask, body)
        requests = generate_requests(body, engine)
        prepared = [await asyncio.to_thread(engine.prepare, item) for item in requests]  # decodes inputs
        run = a1111.runs.start(client, requests, prepared)
    except A1111Problems as error:
        raise unprocessable(error.problems) from None
    except InvalidRequest as error:
        raise unprocessable([(A1111_FIELDS.get(field, field), message) for field, message in error.problems]) from None
    except QueueFull as error:
        return a1111_error(429, str(error), "QueueFull")
    try:
        outcomes = await run.wait()
    finally:
        a1111.runs.forget(run)
    failures = [outcome.error for outcome in outcomes if isinstance(outcome, GenerationError)]
    if failures:
        return a1111_error(500, "; ".join(failures), "GenerationError")
    completed = [(index, outcome) for index, outcome in enumerate(outcomes) if isinstance(outcome, GenerationComplete)]
    paths = [path for _, outcome in completed for path in image_files(outcome)]
    images, infotexts = await asyncio.to_thread(_files_and_infotexts, paths, body.send_images)
    info = generation_info(
        body, requests, completed, infotexts, engine, [job.session_id for job in run.jobs], run.timestamp
    )
    parameters = body.model_dump()
    if isinstance(body, Img2ImgRequest) and not body.include_init_images:
        parameters |= {"init_images": None, "mask": None}  # as A1111 does: not the whole input back
    return ImageResponse(images=images, parameters=parameters, info=info.model_dump_json())


@router.get("/progress", response_model=ProgressResponse)
async def progress(a1111: A1111Dep, request: Request, skip_current_image: bool = False) -> ProgressResponse:
    """The asking client's run (else the oldest running job): progress, ETA, the latest preview."""
    return a1111.runs.progress(client_of(request), with_image=not skip_current_image)


@router.post("/interrupt", response_model=Empty)
async def interrupt(a1111: A1111Dep, request: Request) -> Empty:
    """Stop the asking client's run (else the oldest running job)."""
    a1111.runs.interrupt(client_of(request))
    return Empty()


@router.post("/skip", response_model=Empty)
async def skip(a1111: A1111Dep, request: Request) -> Empty:
    """Stop the running iteration of the asking client's run; its next iterations still run."""
    a1111.runs.skip(client_of(request))
    return Empty()


@router.get("/options", response_model=dict[str, Any])
async def get_options(a1111: A1111Dep) -> dict[str, Any]:
    """`sd_model_checkpoint` (the loaded model's title) and the other keys clients stored."""
    current = current_checkpoint(a1111.engine)
    return {**a1111.options, "sd_model_checkpoint": current.name, "sd_checkpoint_hash": None}


@router.post("/options", response_model=None)
async def set_options(body: OptionsUpdate, a1111: A1111Dep) -> JSONResponse | None:
    """A new `sd_model_checkpoint` loads that model and answers once it is ready (like A1111)."""
    a1111.options.update({key: value for key, value in (body.model_extra or {}).items()})
    if body.sd_model_checkpoint is None:
        return None
    engine = a1111.engine
    wanted = find_checkpoint(engine, body.sd_model_checkpoint)
    if wanted is None:
        titles = ", ".join(item.title for item in checkpoints(engine))
        raise unprocessable([("sd_model_checkpoint", f"no model {body.sd_model_checkpoint!r}; available: {titles}")])
    if wanted.model != engine.health().model.id or engine.health().model.state == "error":
        try:
            engine.switch_model(wanted.model)
        except ModelBusy as error:
            return a1111_error(409, str(error), "ModelBusy")
        except ModelUnavailable as error:
            raise unprocessable([("sd_model_checkpoint", str(error))]) from None
    load_error = await engine.wait_for_model()
    if load_error is not None:
        return a1111_error(500, f"model {wanted.name!r} could not be loaded: {load_error}", "ModelLoadError")
    return None


@router.get("/sd-models", response_model=list[SDModelItem])
async def sd_models(a1111: A1111Dep) -> list[SDModelItem]:
    return checkpoints(a1111.engine)


@router.post("/refresh-checkpoints", response_model=None)
async def refresh_checkpoints() -> None:
    """Nothing to do: /sd-models looks at the model folders each time."""


@router.get("/samplers", response_model=list[SamplerItem])
async def list_samplers(a1111: A1111Dep) -> list[SamplerItem]:
    return samplers(a1111.engine)


@router.get("/schedulers", response_model=list[SchedulerItem])
async def list_schedulers(a1111: A1111Dep) -> list[SchedulerItem]:
    return schedulers(a1111.engine)


def _nothing() -> list[dict[str, Any]]:
    return []


for _path in (
    "/upscalers", "/latent-upscale-modes", "/sd-vae", "/sd-modules", "/hypernetworks",
    "/face-restorers", "/realesrgan-models", "/prompt-styles", "/script-info", "/extensions",
):
    router.add_api_route(
        _path, _nothing, methods=["GET"], response_model=list[dict[str, Any]],
        summary=f"{_path[1:]}: none here (an empty list)",
    )


@router.get("/loras", response_model=list[LoraItem])
async def loras(a1111: A1111Dep) -> list[LoraItem]:
    """The LoRA files in model.lora_dir (use them as `<lora:name:weight>` in the prompt)."""
    listing = await asyncio.to_thread(a1111.engine.lora_list)
    return [
        LoraItem(name=item.name, alias=item.name, path=str(Path(listing.lora_dir) / f"{item.name}.safetensors"),
                 metadata={"hash": item.hash, "families": item.families, "fits": item.fits})
        for item in listing.items
    ]


@router.get("/embeddings", response_model=EmbeddingsResponse)
async def embeddings() -> EmbeddingsResponse:
    return EmbeddingsResponse()


@router.get("/scripts", response_model=ScriptsList)
async def scripts() -> ScriptsList:
    return ScriptsList()


@router.post("/png-info", response_model=PNGInfoResponse)
async def png_info(body: PNGInfoRequest) -> PNGInfoResponse:
    """The generation parameters of an image (ours or A1111's): the `parameters` text, parsed."""
    encoded = body.image.strip()
    if encoded.startswith("data:"):
        encoded = encoded.partition(",")[2]
    try:
        with Image.open(io.BytesIO(base64.b64decode(encoded, validate=True))) as image:
            chunks = {key: value for key, value in image.info.items() if isinstance(value, str)}
    except (binascii.Error, ValueError, UnidentifiedImageError, OSError, Image.DecompressionBombError):
        raise unprocessable([("image", "not a base64-encoded image")]) from None
    text = chunks.pop(PARAMETERS_KEY, "")
    return PNGInfoResponse(info=text, items=chunks, parameters=parse_a1111_parameters(text) if text else {})
