"""Value types and rules shared by the server and its generation process (no torch, no diffusers).

The server validates requests with these (sizes, sampler names, model families) before a job is
queued; the generation process uses the same ones when it runs the job, so the two never disagree.
"""
from __future__ import annotations

import json
import math
import random
from dataclasses import dataclass
from pathlib import Path

FAMILIES: tuple[str, ...] = ("sd", "sdxl", "sd3", "flux")
FLOW_MATCHING_FAMILIES: frozenset[str] = frozenset({"sd3", "flux"})
"""Transformer models trained with flow matching: they patchify 2x2 latents and need flow samplers."""

# Pipeline class-name prefixes, most specific first ("StableDiffusionXL..." also starts with "StableDiffusion").
_FAMILY_PREFIXES = (("StableDiffusionXL", "sdxl"), ("StableDiffusion3", "sd3"), ("Flux", "flux"), ("StableDiffusion", "sd"))

MODES: tuple[str, ...] = ("txt2img", "img2img", "inpaint")
"""What a job does: draw from the prompt alone, rework an input image, or repaint the white part of a mask."""

DEFAULT_SCHEDULER = "default"
SCHEDULER_NAMES: tuple[str, ...] = (DEFAULT_SCHEDULER, "euler", "euler_a", "dpmpp_2m", "dpmpp_2m_karras", "ddim", "unipc")
FLOW_MATCHING_SCHEDULER_NAMES: tuple[str, ...] = (DEFAULT_SCHEDULER, "euler", "dpmpp_2m", "unipc")
A1111_SAMPLER_NAMES: dict[str, str] = {
    DEFAULT_SCHEDULER: "Default",
    "euler": "Euler",
    "euler_a": "Euler a",
    "dpmpp_2m": "DPM++ 2M",
    "dpmpp_2m_karras": "DPM++ 2M Karras",
    "ddim": "DDIM",
    "unipc": "UniPC",
}
"""Our sampler names -> AUTOMATIC1111's (PNG `parameters` text, the A1111-compatible API). "Default" is the
model's own scheduler, which A1111 has no name for."""


def a1111_sampler_name(scheduler: str | None) -> str:
    """AUTOMATIC1111's name of one of our samplers (None: the model's own, "Default")."""
    name = scheduler or DEFAULT_SCHEDULER
    return A1111_SAMPLER_NAMES.get(name, name)


def sampler_from_a1111(name: str) -> str | None:
    """Our sampler name for an A1111 sampler name or one of ours (any case); None when unknown."""
    wanted = name.strip().lower()
    for ours, theirs in A1111_SAMPLER_NAMES.items():
        if wanted in (ours, theirs.lower()):
            return ours
    return None


def family_of_class_name(class_name: str) -> str | None:
    """"sd", "sdxl", "sd3" or "flux" for a diffusers pipeline class name (any task variant), else None."""
    for prefix, family in _FAMILY_PREFIXES:
        if class_name.startswith(prefix):
            return family
    return None


def family_of_folder(folder: Path) -> str | None:
    """The family of a diffusers folder, from its model_index.json (no weights read)."""
    try:
        name = str(json.loads((folder / "model_index.json").read_text()).get("_class_name", ""))
    except (OSError, ValueError):
        return None
    return family_of_class_name(name)


def schedulers_for_family(family: str) -> tuple[str, ...]:
    """Sampler names a model family accepts; ValueError naming the families for an unknown one."""
    family = family.strip().lower()
    if family not in FAMILIES:
        raise ValueError(f"unknown model family {family!r}; expected one of: {', '.join(sorted(FAMILIES))}")
    return FLOW_MATCHING_SCHEDULER_NAMES if family in FLOW_MATCHING_FAMILIES else SCHEDULER_NAMES


def mode_of(has_init_image: bool, has_mask: bool) -> str:
    return "inpaint" if has_mask else "img2img" if has_init_image else "txt2img"


def denoising_steps(num_inference_steps: int, strength: float | None) -> int:
    """The denoising steps a job really runs: all of them from the prompt alone, `int(steps × strength)`
    from an input image (as AUTOMATIC1111 counts them; 0 keeps the input as it is)."""
    if strength is None:
        return num_inference_steps
    return max(0, min(num_inference_steps, int(num_inference_steps * strength)))


def display_name(model_id: str) -> str:
    """How a model is named to people: a local model's folder or file name; a hub id as it is."""
    return Path(model_id).name if Path(model_id).exists() else model_id


def random_seed() -> int:
    return random.SystemRandom().randrange(0, 2**32)


def image_seed(base_seed: int, index: int) -> int:
    """The seed of image `index` of a batch: each image can be reproduced alone with it (A1111 does the same)."""
    return base_seed + index


@dataclass(frozen=True)
class LoraRef:
    """One LoRA of a job: its file name (without `.safetensors`), the content hash of that file (so a
    worker can tell it has the same one) and its weight."""

    name: str
    sha256: str
    weight: float


@dataclass(frozen=True)
class ModelOptions:
    """Device and memory options from config.yaml's `model` section."""

    attention_slicing: bool = False
    vae_tiling: bool = False
    cpu_offload: bool = False  # cuda only
    compile: bool = False
    single_file_config: str | None = None


@dataclass(frozen=True)
class SizeLimits:
    default_width: int
    default_height: int
    minimum: int
    maximum: int
    multiple: int = 8

    def problems(self, width: int, height: int) -> list[tuple[str, str]]:
        """(field, message) for each dimension this model cannot generate."""
        found = []
        for name, value in (("width", width), ("height", height)):
            if value % self.multiple:
                found.append((name, f"{name} {value} is not a multiple of {self.multiple}"))
            elif not self.minimum <= value <= self.maximum:
                found.append((name, f"{name} {value} is outside this model's range {self.minimum}-{self.maximum}"))
        return found


    def snap(self, side: float) -> int:
        """The nearest side this model allows and the API takes (a multiple of 8 too), within the range."""
        step = math.lcm(self.multiple, 8)
        low, high = -(-self.minimum // step) * step, self.maximum - self.maximum % step
        return max(low, min(high, int(round(side / step) * step)))

    def with_aspect(self, across: float, down: float) -> tuple[int, int]:
        """A (width, height) of about the native area with the aspect ratio across:down, allowed here."""
        area = self.default_width * self.default_height
        return self.snap(math.sqrt(area * across / down)), self.snap(math.sqrt(area * down / across))


GENERIC_LIMITS = SizeLimits(512, 512, 64, 2048)


def size_limits_for(
    sample_size: int, vae_scale: int, family: str | None, max_patched: int | None = None
) -> SizeLimits:
    """Native size and allowed range of a denoiser that works on `sample_size` latents."""
    native = sample_size * vae_scale
    multiple = 2 * vae_scale if family in FLOW_MATCHING_FAMILIES else vae_scale
    maximum = max(native * 4, 256)
    if max_patched:  # SD3's position embedding covers at most this many 2x2 patches per side
        maximum = min(maximum, max_patched * multiple)
    minimum = max(8 * vae_scale, 32)
    minimum = -(-minimum // multiple) * multiple
    native = -(-native // multiple) * multiple
    return SizeLimits(native, native, minimum=minimum, maximum=maximum - maximum % multiple, multiple=multiple)


def inspect_size_limits(model_id: str) -> SizeLimits:
    """Read a local model folder's configs (no weights) to find its native and allowed sizes."""
    folder = Path(model_id)
    if not (folder / "model_index.json").is_file():
        return GENERIC_LIMITS
    try:
        vae_config = json.loads((folder / "vae" / "config.json").read_text())
        scale = 2 ** (len(vae_config.get("block_out_channels", [0, 0, 0, 0])) - 1)
        denoiser = next(
            (folder / name / "config.json" for name in ("unet", "transformer") if (folder / name / "config.json").is_file()),
            None,
        )
        denoiser_config = json.loads(denoiser.read_text()) if denoiser else {}
    except (OSError, ValueError):
        return GENERIC_LIMITS
    family = family_of_folder(folder)
    sample_size = denoiser_config.get("sample_size")
    if family == "flux" and not isinstance(sample_size, int):
        sample_size = 128  # FLUX.1 is trained at 1024x1024; its transformer config has no sample_size
    if not isinstance(sample_size, int):
        return GENERIC_LIMITS
    return size_limits_for(sample_size, scale, family, denoiser_config.get("pos_embed_max_size"))
