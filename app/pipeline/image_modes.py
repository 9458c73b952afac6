"""Image-to-image and inpainting from the loaded text-to-image model, in the generation process.

The pipelines for the other modes are made once, when the model loads, with diffusers'
`AutoPipelineFor{Image2Image,Inpainting}.from_pipe`: new pipeline objects around the same modules, so
the weights (and any LoRA adapters injected into them) exist once. A text-to-image checkpoint inpaints
through the family's inpainting pipeline on its own 4/16-channel denoiser (the "legacy" way: the kept
area is blended back into the latents each step); a dedicated inpainting checkpoint (a denoiser that
also takes the mask and the masked image, 9 channels for SD) goes through the same pipeline class, which
feeds it those channels, and can do nothing else.

Inputs are resized to the job's size; the mask is blurred by `mask_blur` pixels; after the pipeline,
the input is laid back over the area the mask keeps (as AUTOMATIC1111 does), so black pixels stay
as they were and the blurred edge blends.

A call may hold the rows of several jobs (app/pipeline/batch_run.py): each `ImageRow` has its own
input image and mask, all rows one mode, one strength and one mask blur; every distinct input is
prepared once, and diffusers encodes each row's input with that row's generator.
"""
from __future__ import annotations

import inspect
import io
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NamedTuple, TypeVar

from PIL import Image, ImageFilter

from .values import FLOW_MATCHING_FAMILIES, denoising_steps

if TYPE_CHECKING:
    from .messages import InputImage

log = logging.getLogger(__name__)
Prepared = TypeVar("Prepared")


@dataclass(frozen=True)
class ImageInputs:
    """What a job starts from besides its prompt (PIL images at any size; None for text-to-image)."""

    init_image: Image.Image | None = None
    mask_image: Image.Image | None = None
    strength: float = 0.75
    mask_blur: int = 4

    @property
    def mode(self) -> str:
        return "inpaint" if self.mask_image is not None else "img2img" if self.init_image is not None else "txt2img"


class ImageRow(NamedTuple):
    """One image of a pipeline call: its prompt, negative prompt, seed and, for image-to-image and
    inpainting, what it starts from (a plain (prompt, negative prompt, seed) tuple is a text-to-image row)."""

    prompt: str
    negative_prompt: str
    seed: int
    init_image: Image.Image | None = None
    mask_image: Image.Image | None = None


def row_inputs(rows: Sequence[ImageRow], strength: float, mask_blur: int) -> list[ImageInputs]:
    """Each row's inputs; all rows must be of one mode."""
    if not rows:
        raise ValueError("a call needs at least one row")
    inputs = [ImageInputs(row.init_image, row.mask_image, strength, mask_blur) for row in rows]
    if any(item.mask_image is not None and item.init_image is None for item in inputs):
        raise ValueError("mask_image needs an init_image to repaint")
    modes = sorted({item.mode for item in inputs})
    if len(modes) > 1:
        raise ValueError(f"the rows of one call must all be of one mode, not {', '.join(modes)}")
    return inputs


def per_row(inputs: Sequence[ImageInputs], prepare: Callable[[ImageInputs], Prepared]) -> list[Prepared]:
    """`prepare` of each row's inputs, made once for rows that share the same input images."""
    prepared: dict[tuple[int, int], Prepared] = {}
    for item in inputs:
        key = (id(item.init_image), id(item.mask_image))
        if key not in prepared:
            prepared[key] = prepare(item)
    return [prepared[(id(item.init_image), id(item.mask_image))] for item in inputs]


def takes_mask_channels(pipeline: Any) -> bool:
    """A dedicated inpainting checkpoint: its denoiser's input has room for the mask and masked image."""
    denoiser = getattr(pipeline, "unet", None) or getattr(pipeline, "transformer", None)
    vae = getattr(pipeline, "vae", None)
    taken = getattr(getattr(denoiser, "config", None), "in_channels", None)
    latent = getattr(getattr(vae, "config", None), "latent_channels", None)
    if not isinstance(taken, int) or not isinstance(latent, int):
        return False
    packed = 4 if type(pipeline).__name__.startswith("Flux") else 1  # Flux packs 2x2 latent patches
    return taken > latent * packed


class ModePipelines:
    """The loaded pipeline and the ones made from it for the other modes."""

    def __init__(self, pipeline: Any) -> None:
        from diffusers import AutoPipelineForImage2Image, AutoPipelineForInpainting

        self.base = pipeline
        self.inpainting_only = takes_mask_channels(pipeline)
        self.pipelines: dict[str, Any] = {} if self.inpainting_only else {"txt2img": pipeline}
        for mode, auto in (("img2img", AutoPipelineForImage2Image), ("inpaint", AutoPipelineForInpainting)):
            if self.inpainting_only and mode == "img2img":
                continue
            try:
                derived = auto.from_pipe(pipeline)
            except Exception as error:  # a pipeline class diffusers has no such variant of
                log.info("%s cannot do %s: %s", type(pipeline).__name__, mode, error)
                continue
            derived.set_progress_bar_config(disable=True)
            self.pipelines[mode] = derived

    @property
    def modes(self) -> tuple[str, ...]:
        return tuple(mode for mode in ("txt2img", "img2img", "inpaint") if mode in self.pipelines)

    def for_mode(self, mode: str) -> Any:
        pipeline = self.pipelines.get(mode)
        if pipeline is None:
            raise ValueError(
                f"this model cannot do {mode} ({type(self.base).__name__}"
                f"{', a dedicated inpainting checkpoint' if self.inpainting_only else ''}); modes: {', '.join(self.modes)}"
            )
        return pipeline


def pipeline_strength(steps: int, strength: float, family: str | None) -> float:
    """The `strength` to hand diffusers so that exactly `denoising_steps(steps, strength)` steps run.

    SD and SDXL pipelines count `int(steps × strength)` themselves; the SD3 and Flux ones round the
    fraction up (`steps − int(steps × (1 − strength))`), so they get a strength half a step lower.
    """
    run = denoising_steps(steps, strength)
    if run >= steps:
        return 1.0  # also where diffusers starts the inpainting pipelines from pure noise
    if family in FLOW_MATCHING_FAMILIES:
        return (run - 0.5) / steps
    return strength


def mode_arguments(pipeline: Any, inputs: Sequence[ImageInputs], width: int, height: int, steps: int,
                   family: str | None) -> dict[str, Any]:
    """The keyword arguments of a pipeline call particular to its mode (the prompt and sampling ones are
    common to all); `inputs`: each row's. Every row gets its own input even when a job's rows share one, so
    that each row's generator draws the same noise alone or in a batch (given one image for several rows,
    diffusers' inpainting encodes it with the first row's generator only)."""
    accepted = inspect.signature(pipeline.__call__).parameters
    arguments: dict[str, Any] = {}
    if "width" in accepted and "height" in accepted:
        arguments.update(width=width, height=height)
    first = inputs[0]
    if first.init_image is None:
        return arguments
    images = per_row(inputs, lambda item: prepared_init(item.init_image, width, height))  # type: ignore[arg-type]
    arguments["image"] = images
    arguments["strength"] = pipeline_strength(steps, first.strength, family)
    if first.mask_image is not None:
        masks = per_row(inputs, lambda item: prepared_mask(item.mask_image, width, height, item.mask_blur))  # type: ignore[arg-type]
        arguments["mask_image"] = masks
    return arguments


def decoded(image: InputImage | None) -> Image.Image | None:
    """A job's input image (PNG bytes) as a picture."""
    if image is None:
        return None
    with Image.open(io.BytesIO(image.png)) as opened:
        opened.load()
        return opened.copy()


def prepared_init(image: Image.Image, width: int, height: int) -> Image.Image:
    image = image.convert("RGB")
    return image if image.size == (width, height) else image.resize((width, height), Image.Resampling.LANCZOS)


def prepared_mask(mask: Image.Image, width: int, height: int, blur: int) -> Image.Image:
    mask = mask.convert("L")
    if mask.size != (width, height):
        mask = mask.resize((width, height), Image.Resampling.LANCZOS)
    return mask.filter(ImageFilter.GaussianBlur(blur)) if blur > 0 else mask


def finished_images(images: list[Image.Image], arguments: dict[str, Any]) -> list[Image.Image]:
    """Inpainting: each row's input laid back over its kept area, blending along the blurred mask's edge;
    `arguments`: the call's `mode_arguments`, whose prepared inputs and masks are reused."""
    masks = arguments.get("mask_image")
    if masks is None:
        return images
    return [Image.composite(image.convert("RGB"), init, mask)
            for image, init, mask in zip(images, arguments["image"], masks, strict=True)]


def unchanged_images(inputs: Sequence[ImageInputs], width: int, height: int) -> list[Image.Image]:
    """Strength so low that no step runs: each row's input as it is (at the job's size)."""
    return per_row(inputs, lambda item: prepared_init(item.init_image, width, height))  # type: ignore[arg-type]
