"""`POST /v1/images/edits`, OpenAI's image editing, onto our image-to-image and inpainting: the multipart
`image` is the picture to start from; `mask` (a PNG with transparency) marks what to repaint by its
transparent pixels, as OpenAI's does. Without a mask, an image with transparent pixels is repainted there;
an opaque one is reworked as a whole (image-to-image)."""
from __future__ import annotations

import asyncio
import base64
import io

from fastapi import APIRouter, Request
from PIL import Image, ImageOps, UnidentifiedImageError
from pydantic import ValidationError
from starlette.datastructures import UploadFile

from .api import EngineDep, client_of
from .openai_errors import OpenAIError, OpenAIRoute, validation_error_of
from .openai_images import ERRORS, answer, generate_request, run
from .openai_models import ImageEditRequest, ImagesResponse

router = APIRouter(prefix="/v1", tags=["OpenAI-compatible"], route_class=OpenAIRoute)
INPAINT_STRENGTH = 1.0
"""The masked part is painted anew, as OpenAI's edits do (image-to-image without a mask keeps our default)."""


def _opened(data: bytes, param: str) -> Image.Image:
    try:
        image = Image.open(io.BytesIO(data))
        image.load()
        return image
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError):
        raise OpenAIError(400, f"Invalid file for '{param}': not a PNG, JPEG or WebP image.", param=param,
                          code="invalid_image") from None


def _repaint_mask(transparent_means_repaint: Image.Image) -> str:
    """Our mask (white = repaint) from an image whose transparent pixels are to be repainted, as base64 PNG."""
    alpha = transparent_means_repaint.convert("RGBA").getchannel("A")
    buffer = io.BytesIO()
    ImageOps.invert(alpha).save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def edit_inputs(image_data: bytes, mask_data: bytes | None) -> dict[str, object]:
    """GenerateRequest's image fields for an edit. Decodes images: call off the event loop."""
    image = _opened(image_data, "image")
    fields: dict[str, object] = {"init_image": base64.b64encode(image_data).decode("ascii")}
    if mask_data is not None:
        mask = _opened(mask_data, "mask")
        if "A" not in mask.getbands() and "transparency" not in mask.info:
            raise OpenAIError(400, "Invalid file for 'mask': it must be a PNG with transparency (an alpha channel); "
                              "its fully transparent pixels are repainted.", param="mask", code="invalid_mask")
        fields |= {"mask_image": _repaint_mask(mask), "strength": INPAINT_STRENGTH}
    elif "A" in image.getbands() and image.getchannel("A").getextrema()[0] < 255:
        fields |= {"mask_image": _repaint_mask(image), "strength": INPAINT_STRENGTH}
    return fields


async def _file(form_value: object) -> bytes | None:
    return await form_value.read() if isinstance(form_value, UploadFile) else None


@router.post(
    "/images/edits",
    response_model=ImagesResponse,
    response_model_exclude_none=True,
    responses=ERRORS,
    openapi_extra={"requestBody": {"content": {"multipart/form-data": {"schema": {
        "type": "object", "required": ["image", "prompt"],
        "properties": {"image": {"type": "string", "format": "binary"}, "mask": {"type": "string", "format": "binary"},
                       **{name: {"type": "string"} for name in ImageEditRequest.model_fields}},
    }}}}},
)
async def edits(engine: EngineDep, request: Request) -> ImagesResponse:
    """Edit an image (multipart `image`, optional `mask`, `prompt`, `n`, `size`, `response_format`, ...)."""
    form = await request.form()
    image = form.get("image") or next(iter(form.getlist("image[]")), None)
    image_data = await _file(image)
    if image_data is None:
        raise OpenAIError(400, "Missing required parameter: 'image'.", param="image", code="missing_required_parameter")
    mask_data = await _file(form.get("mask"))
    fields = {key: value for key, value in form.multi_items() if isinstance(value, str)}
    try:
        body = ImageEditRequest.model_validate(fields)
    except ValidationError as error:
        raise validation_error_of(error.errors()) from None
    inputs = await asyncio.to_thread(edit_inputs, image_data, mask_data)
    prepared = await asyncio.to_thread(engine.prepare, generate_request(body, engine, **inputs))
    outcome = await run(engine, prepared, client_of(request))
    return await answer(body, outcome, request)
