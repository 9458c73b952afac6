"""Start a training run from a shipped pipeline folder instead of from scratch.

``train --base-model DIR --caption-noise 0.7 --objective distill`` fine-tunes
the UNet and text encoder of the pipeline folder DIR (with their EMA starting from the same
weights) and keeps its VAE, the latent scaling included, so the
latent space the UNet knows does not move. When the tokenizer's length grew
since the base was trained, the text encoder's position table is extended:
the new positions start as copies of the last one, which in every shipped
caption held padding, so the base's outputs barely change at step 0.
"""

from __future__ import annotations

from pathlib import Path

import torch
from diffusers import AutoencoderKL, UNet2DConditionModel
from transformers import CLIPTextModel, CLIPTokenizer

from .models import ModelSize, make_text_encoder

POSITION_TABLE = "embeddings.position_embedding.weight"  # a suffix: prefixes differ across transformers versions


def load_base_vae(base: Path) -> AutoencoderKL:
    return AutoencoderKL.from_pretrained(base / "vae", local_files_only=True)


def extend_positions(state: dict[str, torch.Tensor], length: int) -> dict[str, torch.Tensor]:
    """``state`` with its position table grown to ``length`` rows by repeating the last row."""
    key = next(name for name in state if name.endswith(POSITION_TABLE))
    table = state[key]
    if len(table) > length:
        raise ValueError(f"the base text encoder has {len(table)} positions; cannot shrink to {length}")
    extra = table[-1:].expand(length - len(table), -1)
    return {**state, key: torch.cat([table, extra])}


class Teacher:
    """The base model, frozen: its velocity for the clean caption is the target of ``objective: distill``.

    Distillation teaches the student to give, for a caption with unknown words,
    what the base gives for the same caption without them: a far steadier
    signal than the diffusion loss's random noise target, and one that keeps
    the clean captions' behaviour where it was.
    """

    def __init__(self, base: Path, device: torch.device) -> None:
        self.unet = UNet2DConditionModel.from_pretrained(base / "unet", local_files_only=True)
        self.text_encoder = CLIPTextModel.from_pretrained(base / "text_encoder", local_files_only=True)
        for model in (self.unet, self.text_encoder):
            model.to(device).eval().requires_grad_(False)
        self.length = self.text_encoder.config.max_position_embeddings

    @torch.no_grad()
    def velocity(self, noisy_latents: torch.Tensor, timesteps: torch.Tensor, clean_ids: torch.Tensor) -> torch.Tensor:
        """Clean captions fit the base's length: only padding is cut."""
        return self.unet(noisy_latents, timesteps, self.text_encoder(clean_ids[:, :self.length])[0]).sample


def load_base_models(base: Path, size: ModelSize, tokenizer: CLIPTokenizer) -> tuple[UNet2DConditionModel, CLIPTextModel]:
    """The base's UNet and a text encoder for ``tokenizer`` holding the base's weights."""
    unet = UNet2DConditionModel.from_pretrained(base / "unet", local_files_only=True)
    shipped = CLIPTextModel.from_pretrained(base / "text_encoder", local_files_only=True)
    if shipped.config.vocab_size != len(tokenizer):
        raise ValueError(f"the base's vocabulary has {shipped.config.vocab_size} tokens, the tokenizer "
                         f"{len(tokenizer)}: fine-tuning needs the same vocabulary")
    text_encoder = make_text_encoder(size, tokenizer)
    text_encoder.load_state_dict(extend_positions(shipped.state_dict(), tokenizer.model_max_length))
    return unet, text_encoder
