"""The OpenAI-compatible images API (`/v1/images/generations`, `/v1/models`) for clients that take a
`base_url` (the openai package, Open WebUI, LibreChat, ...). Each request is one job of ours: queued with the
others, live in the studio and on /ws, kept in the gallery; the answer comes when it is done. Errors in
OpenAI's shape (app/web/openai_errors.py). What is supported: docs/compatibility.md.
"""
from __future__ import annotations

import math
import re
import time

from fastapi import APIRouter, Request
from pydantic import ValidationError

from ..engine import Engine, InvalidRequest, QueueFull
from ..engine.requests import PreparedRequest
from ..engine.views import image_url
from ..pipeline.values import SizeLimits, display_name
from ..protocol import (
    SIZE_MULTIPLE,
    GenerateRequest,
    GenerationCancelled,
    GenerationComplete,
    GenerationError,
)
from .api import EngineDep, client_of
from .followed_jobs import FollowedJob, image_files, read_base64, renamed_problems
from .openai_errors import NO_RETRY, OpenAIError, OpenAIRoute
from .openai_models import (
    ErrorResponse,
    ImageData,
    ImageGenerationRequest,
    ImagesResponse,
    ModelObject,
    ModelsList,
)

router = APIRouter(prefix="/v1", tags=["OpenAI-compatible"], route_class=OpenAIRoute)
ERRORS = {status: {"model": ErrorResponse} for status in (400, 404, 409, 429, 500)}
OPENAI_FIELDS = {
    "prompt": "prompt", "num_images": "n", "width": "size", "height": "size",
    "init_image": "image", "mask_image": "mask",
}
OPENAI_MODEL_NAMES = frozenset({"dall-e-2", "dall-e-3", "gpt-image-1", "gpt-image-1-mini", "gpt-image-1.5"})
"""Names OpenAI clients send by default; they mean the loaded model here."""
_SIZE = re.compile(r"^\s*(\d+)\s*x\s*(\d+)\s*$")


def sizes_it_can(limits: SizeLimits) -> str:
    """The sizes a model can make, in words: the range and step of each side, and a few square examples."""
    step = math.lcm(SIZE_MULTIPLE, limits.multiple)
    smallest, largest = -(-limits.minimum // step) * step, limits.maximum - limits.maximum % step
    native = limits.default_width
    examples = sorted({smallest, native, min(2 * native, largest), largest})
    listed = ", ".join(f"{side}x{side}" + (" (native)" if side == native else "") for side in examples)
    return f"width and height each from {smallest} to {largest} in steps of {step}, for example {listed}"


def parse_size(size: str | None, engine: Engine) -> tuple[int | None, int | None]:
    """(width, height) of an OpenAI `size` (None, None: the model's native size); OpenAIError when it cannot."""
    if size is None or size.strip().lower() == "auto":
        return None, None
    limits = engine.size_limits
    model = display_name(engine.health().model.id)
    match = _SIZE.match(size)
    if match is None:
        raise OpenAIError(400, f"Invalid size '{size}': expected WIDTHxHEIGHT; model '{model}' makes "
                          f"{sizes_it_can(limits)}.", param="size", code="invalid_size")
    width, height = int(match.group(1)), int(match.group(2))
    if limits.problems(width, height):
        raise OpenAIError(400, f"Size '{size}' is not available for model '{model}': it makes "
                          f"{sizes_it_can(limits)}.", param="size", code="invalid_size")
    return width, height


def check_model(model: str | None, engine: Engine) -> None:
    """The request's `model` must be the loaded one (or an OpenAI name, which means it)."""
    if model is None or model.strip().lower() in OPENAI_MODEL_NAMES:
        return
    wanted = model.strip().lower()
    known = next((item for item in engine.models().models if wanted in (item.name.lower(), item.model.lower())), None)
    current = engine.health().model.id
    if known is None:
        raise OpenAIError(404, f"The model '{model}' does not exist here; GET /v1/models lists the models.",
                          param="model", code="model_not_found")
    if known.model != current:
        raise OpenAIError(400, f"The model '{model}' is not loaded: the server runs '{display_name(current)}' for "
                          "every client. Switch in the studio or with POST /api/model.", param="model",
                          code="model_not_loaded")


def generate_request(body: ImageGenerationRequest, engine: Engine, **inputs: object) -> GenerateRequest:
    """Our request for an OpenAI one; `inputs` are the image fields of an edit (init_image, mask_image, ...)."""
    check_model(body.model, engine)
    width, height = parse_size(body.size, engine)
    try:
        count = 1 if body.n is None else body.n
        return GenerateRequest(prompt=body.prompt, num_images=count, width=width, height=height, **inputs)
    except ValidationError as error:
        field, message = renamed_problems(error, OPENAI_FIELDS)[0]
        raise OpenAIError(400, f"Invalid value for '{field}': {message}.", param=field) from None


async def run(engine: Engine, request: GenerateRequest | PreparedRequest, client: str) -> GenerationComplete:
    """Queue the job and wait for it on the bus; OpenAIError when it cannot be queued or does not complete."""
    try:
        session_id, _ = engine.submit(request, client=client)
    except InvalidRequest as error:
        field, message = error.problems[0]
        raise OpenAIError(400, message, param=OPENAI_FIELDS.get(field, field)) from None
    except QueueFull as error:
        raise OpenAIError(429, str(error), code="queue_full", headers={"Retry-After": "5"}) from None
    outcome = await FollowedJob(engine, session_id).wait()
    if isinstance(outcome, GenerationError):
        raise OpenAIError(500, f"The generation failed: {outcome.error}", code="generation_failed", headers=NO_RETRY)
    if isinstance(outcome, GenerationCancelled):
        raise OpenAIError(409, "The job was cancelled (in the studio or through the API) before it finished.",
                          code="job_cancelled", headers=NO_RETRY)
    assert isinstance(outcome, GenerationComplete)
    return outcome


@router.post("/images/generations", response_model=ImagesResponse, response_model_exclude_none=True, responses=ERRORS)
async def generations(body: ImageGenerationRequest, engine: EngineDep, request: Request) -> ImagesResponse:
    """Generate `n` images and answer when done: `url`s served by this server, or `b64_json` PNGs."""
    outcome = await run(engine, generate_request(body, engine), client_of(request))
    return await answer(body, outcome, request)


async def answer(body: ImageGenerationRequest, outcome: GenerationComplete, request: Request) -> ImagesResponse:
    """The images of a completed job as OpenAI answers: URLs served here, or the PNGs in base64."""
    paths = image_files(outcome)
    if body.response_format == "b64_json":
        data = [ImageData(b64_json=encoded, revised_prompt=body.prompt) for encoded in await read_base64(paths)]
    else:
        base = str(request.base_url).rstrip("/")
        data = [ImageData(url=base + image_url(path.name), revised_prompt=body.prompt) for path in paths]
    return ImagesResponse(created=int(time.time()), data=data)


@router.get("/models", response_model=ModelsList, responses=ERRORS)
async def models(engine: EngineDep) -> ModelsList:
    """The loaded model first, then the other local ones (ids to pass as `model`; a model must be loaded to be used)."""
    current = engine.health().model.id
    known = sorted(engine.models().models, key=lambda item: item.model != current)
    return ModelsList(data=[ModelObject(id=item.name) for item in known])
