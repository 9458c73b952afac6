"""PNG files that carry their own generation parameters.

Two text chunks: `parameters` in the AUTOMATIC1111 format (read by A1111, Civitai, InvokeAI and most
image viewers with SD support) and `ai_artist` with the full metadata as JSON. `parse_a1111_parameters`
reads that format back, from our PNGs and from A1111's.
"""
from __future__ import annotations

import json
import os
import re
from pathlib import Path

from PIL import Image, PngImagePlugin

from ..protocol import GenerationMetadata
from .lora_files import prompt_tags
from .values import a1111_sampler_name

PARAMETERS_KEY = "parameters"
JSON_KEY = "ai_artist"
NEGATIVE_PREFIX = "Negative prompt:"
_SETTING_KEY = re.compile(r"\s*([A-Za-z][\w \-/]*):\s*")
_SIZE = re.compile(r"^(\d+)x(\d+)$")


def a1111_parameters(metadata: GenerationMetadata) -> str:
    """The `parameters` text: the prompt (with its `<lora:name:weight>` tags, as A1111 keeps them), the
    negative prompt, then one line of settings; image-to-image and inpainting add `Denoising strength`,
    `Mask blur` and where the inputs are kept (`Init image`, `Mask image`: names under `/api/uploads/`)."""
    tags = prompt_tags([(lora.name, lora.weight) for lora in metadata.loras])
    lines = [f"{metadata.prompt} {tags}" if tags else metadata.prompt]
    if metadata.negative_prompt:
        lines.append(f"{NEGATIVE_PREFIX} {metadata.negative_prompt}")
    settings = [
        f"Steps: {metadata.num_inference_steps}",
        f"Sampler: {a1111_sampler_name(metadata.scheduler)}",
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


def _settings(line: str) -> list[tuple[str, str]]:
    """The `Key: value, Key: "quoted, value"` pairs of a settings line, in order ([] when it is not one)."""
    pairs: list[tuple[str, str]] = []
    position = 0
    while position < len(line):
        key = _SETTING_KEY.match(line, position)
        if key is None:
            return []
        position = key.end()
        if line.startswith('"', position):
            decoder = json.JSONDecoder()
            try:
                value, position = decoder.raw_decode(line, position)
            except ValueError:
                return []
            value = str(value)
        else:
            end = line.find(",", position)
            end = len(line) if end < 0 else end
            value, position = line[position:end].strip(), end
        pairs.append((key.group(1).strip(), value))
        while position < len(line) and line[position] in ", ":
            position += 1
    return pairs


def parse_a1111_parameters(text: str) -> dict[str, str]:
    """The fields of an A1111 `parameters` text: "Prompt", "Negative prompt", then each setting as written
    ("Steps", "Sampler", "CFG scale", "Seed", ...), a `WxH` value split into "<Key>-1" and "<Key>-2"."""
    lines = text.strip().split("\n")
    settings = _settings(lines[-1]) if lines else []
    if len(settings) >= 3:
        lines = lines[:-1]
    else:
        settings = []
    prompt: list[str] = []
    negative: list[str] = []
    for line in lines:
        if not negative and line.startswith(NEGATIVE_PREFIX):
            negative.append(line[len(NEGATIVE_PREFIX):].strip())
        elif negative:
            negative.append(line)
        else:
            prompt.append(line)
    fields = {"Prompt": "\n".join(prompt).strip(), "Negative prompt": "\n".join(negative).strip()}
    for key, value in settings:
        size = _SIZE.match(value)
        if size is not None:
            fields[f"{key}-1"], fields[f"{key}-2"] = size.group(1), size.group(2)
        else:
            fields[key] = value
    return fields


def save_png(image: Image.Image, path: Path, metadata: GenerationMetadata) -> Path:
    """Write atomically (temp file + rename) so a crash never leaves a half-written image."""
    info = PngImagePlugin.PngInfo()
    info.add_text(PARAMETERS_KEY, a1111_parameters(metadata))
    info.add_text(JSON_KEY, metadata.model_dump_json())
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".partial")
    try:
        image.save(partial, format="PNG", pnginfo=info)
        os.replace(partial, path)
    except BaseException:  # a full disk, a cancelled write: leave no half-written file behind
        partial.unlink(missing_ok=True)
        raise
    return path


def read_png_metadata(path: Path) -> tuple[str | None, GenerationMetadata | None]:
    with Image.open(path) as image:
        text = dict(getattr(image, "text", {}))
    raw_json = text.get(JSON_KEY)
    metadata = GenerationMetadata.model_validate(json.loads(raw_json)) if raw_json else None
    return text.get(PARAMETERS_KEY), metadata
