"""Which device and dtype a model runs on, and putting a loaded pipeline there with the memory options."""
from __future__ import annotations

import logging
from typing import Any

from .values import ModelOptions

log = logging.getLogger(__name__)


def resolve_device(device: str) -> str:
    import torch

    if device != "auto":
        return device
    if torch.cuda.is_available():
        return "cuda"
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        return "mps"
    return "cpu"


def resolve_dtype(dtype: str, device: str) -> Any:
    import torch

    if dtype == "auto":
        return torch.float16 if device.split(":")[0] in ("cuda", "mps") else torch.float32  # cuda:1 too
    return getattr(torch, dtype)


def place_on_device(pipeline: Any, device: str, options: ModelOptions) -> None:
    """Move to the device and apply the memory options."""
    if options.attention_slicing and hasattr(pipeline, "enable_attention_slicing"):
        pipeline.enable_attention_slicing()
    vae = getattr(pipeline, "vae", None)
    if options.vae_tiling and vae is not None and hasattr(vae, "enable_tiling"):
        vae.enable_tiling()
    if options.cpu_offload and device.split(":")[0] == "cuda":
        pipeline.enable_model_cpu_offload(device=device)
    else:
        if options.cpu_offload:
            log.warning("model.cpu_offload needs cuda; running on %s without offload", device)
        pipeline.to(device)
    if options.compile:
        denoiser = getattr(pipeline, "unet", None) or getattr(pipeline, "transformer", None)
        if denoiser is not None:
            denoiser.compile()  # in place: the pipeline keeps its module (and its config)
