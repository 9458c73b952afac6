"""PNG files that carry their own generation parameters.

Two text chunks: `parameters` in the AUTOMATIC1111 format (read by A1111, Civitai, InvokeAI and most
image viewers with SD support) and `ai_artist` with the full metadata as JSON.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

from PIL import Image, PngImagePlugin

from ..protocol import GenerationMetadata
from .lora_files import prompt_tags

PARAMETERS_KEY = "parameters"
JSON_KEY = "ai_artist"


def a1111_parameters(metadata: GenerationMetadata) -> str:
    """The `parameters` text: the prompt (with its `<lora:name:weight>` tags, as A1111 keeps them), the
    negative prompt, then one line of settings; image-to-image and inpainting add `Denoising strength`,
    `Mask blur` and where the inputs are kept (`Init image`, `Mask image`: names under `/api/uploads/`)."""
    tags = prompt_tags([(lora.name, lora.weight) for lora in metadata.loras])
    lines = [f"{metadata.prompt} {tags}" if tags else metadata.prompt]
    if metadata.negative_prompt:
        lines.append(f"Negative prompt: {metadata.negative_prompt}")
    settings = [
        f"Steps: {metadata.num_inference_steps}",
        f"Sampler: {metadata.scheduler or 'default'}",
        f"CFG scale: {metadata.guidance_scale:g}",
        f"Seed: {metadata.seed}",
        f"Size: {metadata.width}x{metadata.height}",
        f"Model: {Path(metadata.model).name or metadata.model}",
    ]
    if metadata.strength is not None:
        settings.append(f"Denoising strength: {metadata.strength:g}")
    if metadata.mask_blur is not None:
        settings.append(f"Mask blur: {metadata.mask_blur}")
    if metadata.loras:
        hashes = ", ".join(f"{lora.name}: {lora.hash}" for lora in metadata.loras)
        settings.append(f'Lora hashes: "{hashes}"')
    if metadata.init_image:
        settings.append(f"Init image: {metadata.init_image}")
    if metadata.mask_image:
        settings.append(f"Mask image: {metadata.mask_image}")
    lines.append(", ".join(settings))
    return "\n".join(lines)


def save_png(image: Image.Image, path: Path, metadata: GenerationMetadata) -> Path:
    """Write atomically (temp file + rename) so a crash never leaves a half-written image."""
    info = PngImagePlugin.PngInfo()
    info.add_text(PARAMETERS_KEY, a1111_parameters(metadata))
    info.add_text(JSON_KEY, metadata.model_dump_json())
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".partial")
    image.save(partial, format="PNG", pnginfo=info)
    os.replace(partial, path)
    return path


def read_png_metadata(path: Path) -> tuple[str | None, GenerationMetadata | None]:
    with Image.open(path) as image:
        text = dict(getattr(image, "text", {}))
    raw_json = text.get(JSON_KEY)
    metadata = GenerationMetadata.model_validate(json.loads(raw_json)) if raw_json else None
    return text.get(PARAMETERS_KEY), metadata
