"""An AUTOMATIC1111 `txt2img` or `img2img` request as our jobs (one `GenerateRequest` per iteration), and
the `info` of its answer. A1111's rules kept: seed -1 is random, image i of the whole run has seed + i,
`batch_size` images per iteration, `n_iter` iterations."""
from __future__ import annotations

import base64
import binascii
import io
import random

from PIL import Image, ImageOps, UnidentifiedImageError
from pydantic import ValidationError

from ..engine import Engine
from ..pipeline.values import a1111_sampler_name, display_name, image_seed
from ..protocol import GenerateRequest, GenerationComplete
from .a1111_catalog import current_checkpoint, find_checkpoint, resolve_sampler
from .a1111_models import GenerationInfo, Img2ImgRequest, Txt2ImgRequest
from .followed_jobs import renamed_problems

A1111_FIELDS = {
    "prompt": "prompt",
    "negative_prompt": "negative_prompt",
    "num_inference_steps": "steps",
    "guidance_scale": "cfg_scale",
    "num_images": "batch_size",
    "seed": "seed",
    "width": "width",
    "height": "height",
    "scheduler": "sampler_name",
    "init_image": "init_images",
    "strength": "denoising_strength",
    "mask_image": "mask",
    "mask_blur": "mask_blur",
}
"""Our GenerateRequest's fields -> A1111's names, so errors name the field the client sent."""
MAX_SEED = 2**32 - 1


class A1111Problems(ValueError):
    def __init__(self, problems: list[tuple[str, str]]) -> None:
        super().__init__("; ".join(message for _, message in problems))
        self.problems = problems


def _unsupported(body: Txt2ImgRequest, engine: Engine) -> list[tuple[str, str]]:
    problems = []
    if body.enable_hr:
        problems.append(("enable_hr", "hires fix is not supported here; send enable_hr: false"))
    if body.script_name:
        problems.append(("script_name", f"script {body.script_name!r} not found: there are no scripts here"))
    wanted = body.override_settings.get("sd_model_checkpoint")
    if wanted:
        found = find_checkpoint(engine, str(wanted))
        current = current_checkpoint(engine)
        if found is None or found.model != current.model:
            problems.append(
                (
                    "override_settings",
                    f"sd_model_checkpoint {wanted!r} is not the loaded model {current.name!r}; one model serves "
                    "every client here: switch with POST /sdapi/v1/options first",
                )
            )
    return problems


def inverted_mask(body: Img2ImgRequest) -> Img2ImgRequest:
    """With `inpainting_mask_invert: 1` (black = repaint), the mask turned into ours (white = repaint).
    Decodes an image: call off the event loop."""
    if not body.mask or not body.inpainting_mask_invert:
        return body
    encoded = body.mask.partition(",")[2] if body.mask.startswith("data:") else body.mask
    try:
        with Image.open(io.BytesIO(base64.b64decode(encoded, validate=True))) as mask:
            inverted = ImageOps.invert(mask.convert("L"))
    except (binascii.Error, ValueError, UnidentifiedImageError, OSError, Image.DecompressionBombError):
        raise A1111Problems([("mask", "not a base64-encoded image")]) from None
    buffer = io.BytesIO()
    inverted.save(buffer, format="PNG")
    return body.model_copy(update={"mask": base64.b64encode(buffer.getvalue()).decode("ascii"),
                                   "inpainting_mask_invert": 0})


def _image_fields(body: Txt2ImgRequest) -> tuple[dict[str, object], list[tuple[str, str]]]:
    """img2img's input, strength and mask as GenerateRequest fields."""
    if not isinstance(body, Img2ImgRequest):
        return {}, []
    if not body.init_images:
        return {}, [("init_images", "img2img needs an image in init_images (base64)")]
    fields: dict[str, object] = {"init_image": body.init_images[0]}
    if body.denoising_strength is not None:
        fields["strength"] = body.denoising_strength
    if body.mask:
        fields |= {"mask_image": body.mask, "mask_blur": body.mask_blur}
    return fields, []


def generate_requests(body: Txt2ImgRequest, engine: Engine) -> list[GenerateRequest]:
    """One request per iteration; A1111Problems naming every field that cannot be done."""
    problems = _unsupported(body, engine)
    image_fields, image_problems = _image_fields(body)
    problems += image_problems
    name = body.sampler_name if body.sampler_name is not None else body.sampler_index
    scheduler, sampler_problems = resolve_sampler(name, body.scheduler, engine.health().model.schedulers)
    problems += sampler_problems
    total = max(body.batch_size, 1) * body.n_iter
    base_seed = body.seed if body.seed >= 0 else random.SystemRandom().randrange(0, max(MAX_SEED + 1 - total, 1))
    common = {
        "prompt": body.prompt,
        "negative_prompt": body.negative_prompt,
        "guidance_scale": body.cfg_scale,
        "num_images": body.batch_size,
        "width": body.width,
        "height": body.height,
        "scheduler": scheduler,
        **image_fields,
    }
    if body.steps is not None:
        common["num_inference_steps"] = body.steps
    requests = []
    try:
        for iteration in range(body.n_iter):
            seed = image_seed(base_seed, iteration * body.batch_size)
            requests.append(GenerateRequest(**common, seed=seed))
    except ValidationError as error:
        problems += renamed_problems(error, A1111_FIELDS)
    if problems:
        raise A1111Problems(problems)
    return requests


def generation_info(
    body: Txt2ImgRequest,
    requests: list[GenerateRequest],
    outcomes: list[tuple[int, GenerationComplete]],
    infotexts: list[str],
    engine: Engine,
    session_ids: list[str],
    timestamp: str,
) -> GenerationInfo:
    """`info` of a run: `outcomes` are the completed iterations (index, message); the seeds are those of the
    images returned."""
    first = requests[0]
    limits = engine.size_limits
    seeds = [
        image_seed(requests[index].seed or 0, image)
        for index, outcome in outcomes
        for image in range(len(outcome.image_paths))
    ]
    metadata = outcomes[0][1].metadata if outcomes else None
    return GenerationInfo(
        prompt=first.prompt,
        all_prompts=[first.prompt] * len(seeds),
        negative_prompt=first.negative_prompt,
        all_negative_prompts=[first.negative_prompt] * len(seeds),
        seed=first.seed or 0,
        all_seeds=seeds,
        width=metadata.width if metadata else first.width or limits.default_width,
        height=metadata.height if metadata else first.height or limits.default_height,
        sampler_name=a1111_sampler_name(first.scheduler),
        cfg_scale=first.guidance_scale,
        steps=first.num_inference_steps,
        batch_size=body.batch_size,
        sd_model_name=metadata.model if metadata else display_name(engine.health().model.id),
        job_timestamp=timestamp,
        styles=body.styles,
        denoising_strength=first.strength if first.init_image else None,
        infotexts=infotexts,
        session_ids=session_ids,
    )
