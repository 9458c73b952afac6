"""A tiny dedicated inpainting checkpoint, built offline for tests: the tiny SD pipeline with a UNet that
also takes the mask and the masked image (9 input channels, like runwayml's SD inpainting model), saved
as a `StableDiffusionInpaintPipeline` folder. Such a model inpaints and can do nothing else.
"""
from __future__ import annotations

from pathlib import Path

import torch

from .tiny_models import _build_sd


def build_tiny_inpainting_pipeline(path: Path, seed: int = 0) -> Path:
    from diffusers import StableDiffusionInpaintPipeline, UNet2DConditionModel

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        text_to_image = _build_sd()
        unet = UNet2DConditionModel.from_config({**text_to_image.unet.config, "in_channels": 9})
    pipeline = StableDiffusionInpaintPipeline(
        vae=text_to_image.vae, text_encoder=text_to_image.text_encoder, tokenizer=text_to_image.tokenizer,
        unet=unet, scheduler=text_to_image.scheduler, safety_checker=None, feature_extractor=None,
        requires_safety_checker=False,
    )
    pipeline.save_pretrained(Path(path), safe_serialization=True)
    return Path(path)
