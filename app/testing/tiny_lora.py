"""Tiny LoRAs built offline for tests and benchmarks: peft adapters with random (non-zero) weights on a
model folder's denoiser, saved the way diffusers saves trained LoRAs (`save_lora_weights`).

    build_tiny_lora(model_dir, loras_dir / "ink.safetensors", seed=1)

Works for every family the tiny pipelines cover (a UNet for SD/SDXL, a transformer for SD3/Flux) and for
the embedded model. A freshly initialised LoRA changes nothing (its B matrices are zero); these change
the picture, so a test can tell a LoRA was applied.
"""
from __future__ import annotations

import json
from pathlib import Path

import torch

TARGET_MODULES = ["to_q", "to_k", "to_v", "to_out.0"]


def build_tiny_lora(model_dir: Path, path: Path, seed: int = 0, rank: int = 4, scale: float = 1.0) -> Path:
    """Write a LoRA for the diffusers folder `model_dir` to `path` (a `.safetensors` file); returns `path`.

    The weights depend only on `seed`; `scale` multiplies them (a larger one changes the picture more).
    """
    import diffusers
    from peft import LoraConfig
    from peft.utils import get_peft_model_state_dict

    model_dir, path = Path(model_dir), Path(path)
    pipeline_class = getattr(diffusers, json.loads((model_dir / "model_index.json").read_text())["_class_name"])
    part = "unet" if (model_dir / "unet").is_dir() else "transformer"
    denoiser_class = getattr(diffusers, json.loads((model_dir / part / "config.json").read_text())["_class_name"])
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        denoiser = denoiser_class.from_pretrained(model_dir / part)
        denoiser.add_adapter(
            LoraConfig(r=rank, lora_alpha=rank, init_lora_weights=False, target_modules=TARGET_MODULES)
        )
        layers = {name: tensor * scale for name, tensor in get_peft_model_state_dict(denoiser).items()}
    path.parent.mkdir(parents=True, exist_ok=True)
    pipeline_class.save_lora_weights(path.parent, **{f"{part}_lora_layers": layers}, weight_name=path.name)
    return path
