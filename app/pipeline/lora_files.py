"""LoRA files as both sides see them, without torch: a `.safetensors` file's JSON header, its content
hash, which model family it was trained for and how wide the layers it adapts are; and the A1111 prompt
form `<lora:name:weight>`.

The server lists and checks LoRAs with this before a job is queued (app/engine/loras.py); the
generation process checks that the file it loads is the one the job names (same content hash), which
matters once jobs run on other machines with their own LoRA folder.

A safetensors file is an 8-byte little-endian header length, a JSON header (tensor name -> dtype,
shape, offsets; `__metadata__` -> strings), then the tensor data.
"""
from __future__ import annotations

import hashlib
import json
import re
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .values import LoraRef

LORA_SUFFIX = ".safetensors"
MAX_HEADER_BYTES = 100_000_000
SHORT_HASH_LENGTH = 12  # A1111's "Lora hashes" field
PROMPT_LORA = re.compile(r"<lora:([^:<>]+?)(?::(-?\d+(?:\.\d+)?))?>", re.IGNORECASE)
NAME = re.compile(r"^[\w][\w .+\-]{0,127}$")


class LoraFileError(ValueError):
    """Not a readable LoRA file; the message says what is wrong with it."""


@dataclass(frozen=True)
class LoraFacts:
    """What a LoRA file's header tells: the families it can be for; the denoiser layers it adapts with
    their in-widths (diffusers/peft naming: `unet.<module>` or `transformer.<module>`); and, in any naming,
    the in-width of the attention layers that tell models apart (`probe_widths`)."""

    families: frozenset[str]
    layers: dict[str, int]
    widths: dict[str, int]

    def misfit(self, family: str | None, model_layers: dict[str, int]) -> str | None:
        """Why this LoRA does not fit a model of `family` whose denoiser has `model_layers` (name -> in-width,
        as the generation process reports them), or None when it fits, or nothing says it does not."""
        if family is not None and self.families and family not in self.families:
            return f"it was made for {' or '.join(sorted(self.families))} models, not {family}"
        if not model_layers:
            return None
        missing = [name for name in self.layers if name not in model_layers]
        if missing:
            return f"it adapts {len(missing)} layers the model does not have (e.g. {missing[0]})"
        for name, width in self.layers.items():
            if model_layers[name] != width:
                return f"its layer {name} takes {width} inputs, the model's {model_layers[name]}"
        model_widths = probe_widths(model_layers)
        for probe, width in self.widths.items():
            expected = model_widths.get(probe)
            if expected is not None and expected != width:
                return f"its {probe.replace('_', '-')} layers take {width} inputs, the model's {expected}"
        return None


PROBES = (("cross_attention", re.compile(r"attn2[._]to_k($|[._])")), ("inner", re.compile(r"(^|[._])attn[._]to_q($|[._])")))
"""Layers whose in-width tells model architectures apart: a UNet's cross-attention keys (the text
encoder's width: 768 SD 1.x, 1024 SD 2.x, 2048 SDXL) and a transformer's attention queries."""


def probe_widths(layers: dict[str, int]) -> dict[str, int]:
    """The first in-width found per probe among `layers` (layer name -> in-width)."""
    found: dict[str, int] = {}
    for name, width in layers.items():
        for probe, pattern in PROBES:
            if probe not in found and pattern.search(name):
                found[probe] = width
    return found


def read_header(path: Path) -> dict[str, Any]:
    with path.open("rb") as file:
        head = file.read(8)
        if len(head) < 8:
            raise LoraFileError(f"{path.name} is not a safetensors file (too short)")
        (length,) = struct.unpack("<Q", head)
        if not 2 <= length <= MAX_HEADER_BYTES:
            raise LoraFileError(f"{path.name} is not a safetensors file (header length {length})")
        raw = file.read(length)
    try:
        header = json.loads(raw)
    except ValueError as error:
        raise LoraFileError(f"{path.name} is not a safetensors file (header is not JSON: {error})") from None
    if not isinstance(header, dict):
        raise LoraFileError(f"{path.name} is not a safetensors file (header is not a mapping)")
    return header


def content_hash(path: Path) -> str:
    """SHA-256 of the tensor data (after the header), as AUTOMATIC1111 hashes a safetensors LoRA: editing
    the metadata does not change it. Its first 12 characters are the short hash of `Lora hashes`."""
    digest = hashlib.sha256()
    with path.open("rb") as file:
        (length,) = struct.unpack("<Q", file.read(8))
        file.seek(8 + length)
        for chunk in iter(lambda: file.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def short_hash(sha256: str) -> str:
    return sha256[:SHORT_HASH_LENGTH]


def facts_of(header: dict[str, Any]) -> LoraFacts:
    """Families and layer widths, from the tensor names and shapes (diffusers/peft or kohya naming) and
    the trainer's metadata when it says."""
    keys = [key for key in header if key != "__metadata__"]
    if not keys:
        raise LoraFileError("it holds no tensors")
    metadata = header.get("__metadata__") or {}
    families = _families_from_metadata(metadata) or _families_from_keys(keys)
    layers: dict[str, int] = {}
    down_widths: dict[str, int] = {}
    for key in keys:
        entry = header[key]
        shape = entry.get("shape") if isinstance(entry, dict) else None
        layer = _down_projection_layer(key)
        if layer is None or not isinstance(shape, list) or len(shape) < 2:
            continue
        down_widths[layer] = int(shape[1])
        if layer.startswith(("unet.", "transformer.")):
            layers[layer] = int(shape[1])
    return LoraFacts(frozenset(families), layers, probe_widths(down_widths))


def _down_projection_layer(key: str) -> str | None:
    for suffix in (".lora_A.weight", ".lora_down.weight", ".lora.down.weight"):
        if key.endswith(suffix):
            return key[: -len(suffix)]
    return None


def _families_from_metadata(metadata: dict[str, Any]) -> set[str]:
    text = " ".join(str(metadata.get(k, "")) for k in ("ss_base_model_version", "modelspec.architecture")).lower()
    for needle, family in (("flux", "flux"), ("sd3", "sd3"), ("stable-diffusion-3", "sd3"), ("xl", "sdxl")):
        if needle in text:
            return {family}
    if re.search(r"sd_v?[12]|stable-diffusion-v[12]", text):
        return {"sd"}
    return set()


def _families_from_keys(keys: list[str]) -> set[str]:
    joined = "\n".join(keys)
    if re.search(r"single_transformer_blocks|lora_unet_(double|single)_blocks", joined):
        return {"flux"}
    if re.search(r"lora_unet_joint_blocks", joined):
        return {"sd3"}
    if re.search(r"^transformer\.", joined, re.MULTILINE):
        return {"sd3", "flux"}
    if re.search(r"text_encoder_2\.|lora_te[12]_|lora_unet_(input|output)_blocks|lora_unet_middle_block", joined):
        return {"sdxl"}
    if re.search(r"^(unet\.|lora_unet_|lora_te_|text_encoder\.)", joined, re.MULTILINE):
        return {"sd", "sdxl"}
    return set()


def parse_prompt_loras(prompt: str) -> tuple[str, list[tuple[str, float]]]:
    """Split AUTOMATIC1111's `<lora:name:weight>` tags off a prompt: (the prompt the model sees, [(name,
    weight)]). A tag without a weight means 1.0; extra spaces left behind are tidied."""
    found = [(match.group(1).strip(), float(match.group(2)) if match.group(2) else 1.0)
             for match in PROMPT_LORA.finditer(prompt)]
    if not found:
        return prompt, []
    cleaned = PROMPT_LORA.sub(" ", prompt)
    cleaned = re.sub(r"[ \t]{2,}", " ", cleaned)
    cleaned = re.sub(r"\s*,(\s*,)+", ",", cleaned)
    cleaned = re.sub(r"\s+,", ",", cleaned).strip().strip(",").strip()
    return cleaned, found


def prompt_tags(loras: list[tuple[str, float]]) -> str:
    """The `<lora:name:weight>` tags A1111 keeps in a prompt, so its "PNG info" restores them."""
    return " ".join(f"<lora:{name}:{weight:g}>" for name, weight in loras)


def valid_name(name: str) -> bool:
    """A LoRA is named by its file name without `.safetensors`: no folders, nothing hidden."""
    return bool(NAME.match(name)) and name.strip() == name


def library_lora_ref(lora: LoraRef | tuple[str, float], lora_dir: str | Path | None) -> LoraRef:
    """A library caller's (name, weight): the file in `lora_dir`, hashed here."""
    if isinstance(lora, LoraRef):
        return lora
    name, weight = lora
    path = Path(lora_dir or ".") / f"{name}{LORA_SUFFIX}"
    if lora_dir is None or not path.is_file():
        raise ValueError(f"LoRA {name!r}: no {path.name} in lora_dir ({lora_dir})")
    return LoraRef(name, content_hash(path), float(weight))
