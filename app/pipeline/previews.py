"""Cheap live previews of a generation in progress.

`latents_to_preview` turns the latents a pipeline hands to `callback_on_step_end`
into a small RGB image: a 3-channel linear projection of the latent channels (no
VAE), or a TAESD (`AutoencoderTiny`) decode when a TAESD folder is configured.
Only the first image of a batch is previewed, and the result crosses from the GPU
to the CPU once, as a small uint8 tensor.

The linear preview has the latent's resolution (the image size / 8); TAESD previews
have the full image size.  `encode_jpeg` shrinks either to a small JPEG for the wire.
"""

from __future__ import annotations

import functools
import io
import math
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from PIL import Image

from .values import FAMILIES, family_of_class_name

if TYPE_CHECKING:  # torch is imported where it is used
    import torch


# Latent -> RGB factors, rows = latent channels, columns = R, G, B, applied to the
# latents as the denoiser sees them (VAE-scaled, and shifted for SD3/Flux), giving
# roughly [-1, 1].  Numbers published in ComfyUI's comfy/latent_formats.py (classes
# SD15, SDXL, SD3, Flux; https://github.com/comfyanonymous/ComfyUI); the SD 1.x
# table is also A1111's "Approx cheap" previewer (modules/sd_vae_approx.py).
LATENT_RGB_FACTORS: dict[str, tuple[tuple[float, float, float], ...]] = {
    "sd": (
        (0.3512, 0.2297, 0.3227),
        (0.3250, 0.4974, 0.2350),
        (-0.2829, 0.1762, 0.2721),
        (-0.2120, -0.2616, -0.7177),
    ),
    "sdxl": (
        (0.3651, 0.4232, 0.4341),
        (-0.2533, -0.0042, 0.1068),
        (0.1076, 0.1111, -0.0362),
        (-0.3165, -0.2492, -0.2188),
    ),
    "sd3": (
        (-0.0922, -0.0175, 0.0749),
        (0.0311, 0.0633, 0.0954),
        (0.1994, 0.0927, 0.0458),
        (0.0856, 0.0339, 0.0902),
        (0.0587, 0.0272, -0.0496),
        (-0.0006, 0.1104, 0.0309),
        (0.0978, 0.0306, 0.0427),
        (-0.0042, 0.1038, 0.1358),
        (-0.0194, 0.0020, 0.0669),
        (-0.0488, 0.0130, -0.0268),
        (0.0922, 0.0988, 0.0951),
        (-0.0278, 0.0524, -0.0542),
        (0.0332, 0.0456, 0.0895),
        (-0.0069, -0.0030, -0.0810),
        (-0.0596, -0.0465, -0.0293),
        (-0.1448, -0.1463, -0.1189),
    ),
    "flux": (
        (-0.0346, 0.0244, 0.0681),
        (0.0034, 0.0210, 0.0687),
        (0.0275, -0.0668, -0.0433),
        (-0.0174, 0.0160, 0.0617),
        (0.0859, 0.0721, 0.0329),
        (0.0004, 0.0383, 0.0115),
        (0.0405, 0.0861, 0.0915),
        (-0.0236, -0.0185, -0.0259),
        (-0.0245, 0.0250, 0.1180),
        (0.1008, 0.0755, -0.0421),
        (-0.0515, 0.0201, 0.0011),
        (0.0428, -0.0012, -0.0036),
        (0.0817, 0.0765, 0.0749),
        (-0.1264, -0.0522, -0.1103),
        (-0.0280, -0.0881, -0.0499),
        (-0.1262, -0.0982, -0.0778),
    ),
}
LATENT_RGB_BIAS: dict[str, tuple[float, float, float]] = {
    "sd": (0.0, 0.0, 0.0),
    "sdxl": (0.1084, -0.0175, -0.0011),
    "sd3": (0.2394, 0.2135, 0.1925),
    "flux": (-0.0329, -0.0718, -0.0851),
}

DEFAULT_VAE_SCALE_FACTOR = 8


def model_family(pipe: Any) -> str:
    """"sd", "sdxl", "sd3" or "flux", from the pipeline class (any task variant)."""
    for cls in type(pipe).__mro__:
        family = family_of_class_name(cls.__name__)
        if family is not None:
            return family
    raise ValueError(f"cannot tell the model family of {type(pipe).__name__}; supported: {', '.join(FAMILIES)}")


def _vae_scale_factor(pipe: Any) -> int:
    return int(getattr(pipe, "vae_scale_factor", None) or DEFAULT_VAE_SCALE_FACTOR)


def unpack_flux_latents(
    latents: torch.Tensor, *, pipe: Any = None, height: int | None = None, width: int | None = None
) -> torch.Tensor:
    """(B, seq, C*4) packed Flux latents -> (B, C, H/8, W/8).

    Uses the pipeline's own `_unpack_latents` when given; without a height/width the
    image is assumed square, which is all the sequence length alone can tell.
    """
    if latents.ndim != 3:
        return latents
    batch, sequence, packed_channels = latents.shape
    scale = _vae_scale_factor(pipe)
    if height is None or width is None:
        side = math.isqrt(sequence)
        if side * side != sequence:
            raise ValueError(f"packed Flux latents of {sequence} tokens need the image height and width to unpack")
        height = width = side * 2 * scale
    unpack = getattr(type(pipe), "_unpack_latents", None) if pipe is not None else None
    if unpack is not None:
        return unpack(latents, height, width, scale)
    # Same layout as FluxPipeline._unpack_latents: 2x2 latent patches folded into channels.
    rows, cols = 2 * (int(height) // (scale * 2)), 2 * (int(width) // (scale * 2))
    patches = latents.view(batch, rows // 2, cols // 2, packed_channels // 4, 2, 2)
    return patches.permute(0, 3, 1, 4, 2, 5).reshape(batch, packed_channels // 4, rows, cols)


@functools.cache
def _factor_tables(family: str, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """The family's latent->RGB weights and bias, copied to `device` once (not at every preview)."""
    import torch

    weights = torch.tensor(LATENT_RGB_FACTORS[family], device=device)
    return weights, torch.tensor(LATENT_RGB_BIAS[family], device=device)


def _linear_rgb(latent: torch.Tensor, family: str) -> torch.Tensor:
    """(C, H, W) latent -> (3, H, W) in [0, 1] on the latent's device."""
    import torch

    latent = latent.float()
    factors = LATENT_RGB_FACTORS.get(family)
    if factors is not None and latent.shape[0] == len(factors):
        weights, bias = _factor_tables(family, latent.device)
        rgb = torch.einsum("chw,cr->rhw", latent, weights) + bias[:, None, None]
        return ((rgb + 1.0) / 2.0).clamp(0.0, 1.0)
    # No published factors for this channel count (e.g. tiny test models): show the
    # first channels, each stretched to [0, 1]; one or two channels become grey/duplicated.
    channels = latent[: min(3, latent.shape[0])]
    low = channels.amin(dim=(1, 2), keepdim=True)
    high = channels.amax(dim=(1, 2), keepdim=True)
    channels = (channels - low) / (high - low).clamp_min(1e-6)
    while channels.shape[0] < 3:
        channels = torch.cat([channels, channels[-1:]], dim=0)
    return channels


def _taesd_rgb(latent: torch.Tensor, taesd: Any) -> torch.Tensor:
    """(C, H, W) latent -> (3, 8H, 8W) in [0, 1], decoded the way a pipeline would with `vae=taesd`."""
    import torch

    parameter = next(taesd.parameters())
    if parameter.device != latent.device or parameter.dtype != latent.dtype:
        taesd.to(device=latent.device, dtype=latent.dtype)
    config = taesd.config
    scaled = latent[None] / config.scaling_factor + getattr(config, "shift_factor", 0.0)
    with torch.inference_mode():
        image = taesd.decode(scaled, return_dict=False)[0][0]
    return ((image.float() + 1.0) / 2.0).clamp(0.0, 1.0)


def latents_to_preview(
    latents: torch.Tensor,
    family: str,
    *,
    pipe: Any = None,
    height: int | None = None,
    width: int | None = None,
    taesd: Any = None,
) -> Image.Image:
    """An RGB preview of the first image in `latents` (as given to `callback_on_step_end`).

    `height`/`width` are the requested image size, needed to unpack Flux latents.
    `taesd` is an optional `AutoencoderTiny` matching the family's VAE.
    """
    if family not in FAMILIES:
        raise ValueError(f"unknown model family {family!r}; expected one of {', '.join(FAMILIES)}")
    import torch

    with torch.no_grad():
        first = latents[:1].detach()
        if family == "flux":
            first = unpack_flux_latents(first, pipe=pipe, height=height, width=width)
        if first.ndim != 4:
            raise ValueError(f"expected latents shaped (B, C, H, W), got {tuple(latents.shape)}")
        rgb = _taesd_rgb(first[0], taesd) if taesd is not None else _linear_rgb(first[0], family)
        pixels = rgb.mul(255.0).round().to(torch.uint8).permute(1, 2, 0).cpu()  # the one device -> host copy
    return Image.fromarray(pixels.numpy())


class PreviewDecoder:
    """Holds the preview method for one loaded model: TAESD when its folder is on disk, else linear factors."""

    def __init__(self, family: str, taesd_dir: str | Path | None = None) -> None:
        if family not in FAMILIES:
            raise ValueError(f"unknown model family {family!r}; expected one of {', '.join(FAMILIES)}")
        self.family = family
        self.taesd = None
        if taesd_dir is not None and (Path(taesd_dir) / "config.json").is_file():
            from diffusers import AutoencoderTiny

            self.taesd = AutoencoderTiny.from_pretrained(str(taesd_dir), local_files_only=True).eval()

    @classmethod
    def for_pipeline(cls, pipe: Any, taesd_dir: str | Path | None = None) -> PreviewDecoder:
        return cls(model_family(pipe), taesd_dir)

    @property
    def method(self) -> str:
        return "taesd" if self.taesd is not None else "linear"

    def preview(
        self, latents: torch.Tensor, *, pipe: Any = None, height: int | None = None, width: int | None = None
    ) -> Image.Image:
        return latents_to_preview(latents, self.family, pipe=pipe, height=height, width=width, taesd=self.taesd)


class PreviewThrottle:
    """Decides which denoising steps get a preview.

    A step (0-based callback index) is eligible once every `every_n_steps` completed
    steps, i.e. when `(step + 1) % every_n_steps == 0`; an eligible step renders only
    if at least `min_interval_ms` passed since the last rendered one.  The first
    eligible step always renders.  `every_n_steps=1` makes it purely time-based and
    `min_interval_ms=0` purely step-based.
    """

    def __init__(self, every_n_steps: int = 1, min_interval_ms: float = 0.0) -> None:
        if every_n_steps < 1:
            raise ValueError("every_n_steps must be at least 1")
        if min_interval_ms < 0:
            raise ValueError("min_interval_ms must not be negative")
        self.every_n_steps = int(every_n_steps)
        self.min_interval_ms = float(min_interval_ms)
        self._last_render: float | None = None

    def should_render(self, step: int, now: float | None = None) -> bool:
        """`now` is a monotonic time in seconds (default `time.monotonic()`)."""
        if (step + 1) % self.every_n_steps != 0:
            return False
        now = time.monotonic() if now is None else now
        if self._last_render is not None and (now - self._last_render) * 1000.0 < self.min_interval_ms:
            return False
        self._last_render = now
        return True

    def reset(self) -> None:
        self._last_render = None


def encode_jpeg(img: Image.Image, max_side: int = 256, quality: int = 70) -> bytes:
    """A small JPEG: shrunk (never enlarged) so its longer side is at most `max_side`."""
    image = img.convert("RGB")
    if max(image.size) > max_side:
        scale = max_side / max(image.size)
        size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
        image = image.resize(size, Image.Resampling.BILINEAR)
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()
