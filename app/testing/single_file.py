"""`save_single_file_checkpoint` writes a tiny SD pipeline folder (app/testing/tiny_models.py) as one
original-layout (LDM / CompVis) `.safetensors` file, the format `StableDiffusionPipeline.from_single_file`
reads, to test single-file loading offline.
"""
from __future__ import annotations

import json
import re
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

_UNET_PREFIX = "model.diffusion_model."
_VAE_PREFIX = "first_stage_model."
_CLIP_PREFIX = "cond_stage_model.transformer."

_UNET_RESNET_NAMES = {
    "norm1": "in_layers.0",
    "conv1": "in_layers.2",
    "norm2": "out_layers.0",
    "conv2": "out_layers.3",
    "time_emb_proj": "emb_layers.1",
    "conv_shortcut": "skip_connection",
}
_UNET_TOP_LEVEL = {
    "time_embedding.linear_1": "time_embed.0",
    "time_embedding.linear_2": "time_embed.2",
    "conv_in": "input_blocks.0.0",
    "conv_norm_out": "out.0",
    "conv_out": "out.2",
}
_VAE_ATTENTION_NAMES = {"group_norm": "norm", "to_q": "q", "to_k": "k", "to_v": "v", "to_out.0": "proj_out"}


def _rename_prefix(name: str, table: dict[str, str]) -> str:
    for new, old in table.items():
        if name == new or name.startswith(new + "."):
            return old + name[len(new):]
    return name


def _unet_key_to_ldm(key: str, config: dict) -> str:
    per_block = config["layers_per_block"] + 1  # resnets + the up/downsampler slot
    if m := re.fullmatch(r"down_blocks\.(\d+)\.(resnets|attentions)\.(\d+)\.(.+)", key):
        block, kind, layer, rest = int(m[1]), m[2], int(m[3]), m[4]
        index = 1 + block * per_block + layer
        if kind == "resnets":
            return f"input_blocks.{index}.0.{_rename_prefix(rest, _UNET_RESNET_NAMES)}"
        return f"input_blocks.{index}.1.{rest}"
    if m := re.fullmatch(r"down_blocks\.(\d+)\.downsamplers\.0\.conv\.(.+)", key):
        return f"input_blocks.{(int(m[1]) + 1) * per_block}.0.op.{m[2]}"
    if m := re.fullmatch(r"mid_block\.(resnets|attentions)\.(\d+)\.(.+)", key):
        if m[1] == "resnets":
            return f"middle_block.{2 * int(m[2])}.{_rename_prefix(m[3], _UNET_RESNET_NAMES)}"
        return f"middle_block.1.{m[3]}"
    if m := re.fullmatch(r"up_blocks\.(\d+)\.(resnets|attentions)\.(\d+)\.(.+)", key):
        block, kind, layer, rest = int(m[1]), m[2], int(m[3]), m[4]
        index = block * per_block + layer
        if kind == "resnets":
            return f"output_blocks.{index}.0.{_rename_prefix(rest, _UNET_RESNET_NAMES)}"
        return f"output_blocks.{index}.1.{rest}"
    if m := re.fullmatch(r"up_blocks\.(\d+)\.upsamplers\.0\.conv\.(.+)", key):
        block = int(m[1])
        has_attention = "CrossAttn" in config["up_block_types"][block]
        slot = 2 if has_attention else 1
        return f"output_blocks.{block * per_block + config['layers_per_block']}.{slot}.conv.{m[2]}"
    renamed = _rename_prefix(key, _UNET_TOP_LEVEL)
    if renamed == key:
        raise ValueError(f"no original-layout name for UNet weight {key!r}")
    return renamed


def _vae_key_to_ldm(key: str, config: dict) -> str:
    num_up_blocks = len(config["up_block_types"])
    key = re.sub(r"\.conv_norm_out\.", ".norm_out.", key)
    if m := re.fullmatch(r"(encoder|decoder)\.mid_block\.resnets\.(\d+)\.(.+)", key):
        return f"{m[1]}.mid.block_{int(m[2]) + 1}.{m[3].replace('conv_shortcut', 'nin_shortcut')}"
    if m := re.fullmatch(r"(encoder|decoder)\.mid_block\.attentions\.0\.(.+)", key):
        return f"{m[1]}.mid.attn_1.{_rename_prefix(m[2], _VAE_ATTENTION_NAMES)}"
    if m := re.fullmatch(r"encoder\.down_blocks\.(\d+)\.resnets\.(\d+)\.(.+)", key):
        return f"encoder.down.{m[1]}.block.{m[2]}.{m[3].replace('conv_shortcut', 'nin_shortcut')}"
    if m := re.fullmatch(r"encoder\.down_blocks\.(\d+)\.downsamplers\.0\.conv\.(.+)", key):
        return f"encoder.down.{m[1]}.downsample.conv.{m[2]}"
    # LDM numbers decoder levels from the lowest resolution up; diffusers the other way.
    if m := re.fullmatch(r"decoder\.up_blocks\.(\d+)\.resnets\.(\d+)\.(.+)", key):
        level = num_up_blocks - 1 - int(m[1])
        return f"decoder.up.{level}.block.{m[2]}.{m[3].replace('conv_shortcut', 'nin_shortcut')}"
    if m := re.fullmatch(r"decoder\.up_blocks\.(\d+)\.upsamplers\.0\.conv\.(.+)", key):
        return f"decoder.up.{num_up_blocks - 1 - int(m[1])}.upsample.conv.{m[2]}"
    return key  # conv_in, conv_out, norm_out, quant_conv, post_quant_conv keep their names


def _load_component(pipeline_dir: Path, component: str) -> tuple[dict[str, torch.Tensor], dict]:
    folder = pipeline_dir / component
    weights = next(iter(sorted(folder.glob("*.safetensors"))), None)
    if weights is None:
        raise FileNotFoundError(f"no .safetensors weights in {folder}")
    return load_file(str(weights)), json.loads((folder / "config.json").read_text(encoding="utf-8"))


def save_single_file_checkpoint(pipeline_dir: Path, file: Path) -> Path:
    """Write the UNet, VAE and CLIP text encoder of an SD 1.x diffusers folder as one LDM-layout file."""
    pipeline_dir, file = Path(pipeline_dir), Path(file)
    checkpoint: dict[str, torch.Tensor] = {}

    unet_weights, unet_config = _load_component(pipeline_dir, "unet")
    for key, tensor in unet_weights.items():
        checkpoint[_UNET_PREFIX + _unet_key_to_ldm(key, unet_config)] = tensor

    vae_weights, vae_config = _load_component(pipeline_dir, "vae")
    for key, tensor in vae_weights.items():
        ldm_key = _vae_key_to_ldm(key, vae_config)
        if ".mid.attn_1." in ldm_key and tensor.ndim == 2:
            tensor = tensor[:, :, None, None]  # the original VAE attention uses 1x1 convolutions
        checkpoint[_VAE_PREFIX + ldm_key] = tensor

    text_weights, _ = _load_component(pipeline_dir, "text_encoder")
    for key, tensor in text_weights.items():
        # transformers >= 5.6 saves CLIPTextModel without its `text_model.` wrapper; the original layout has it.
        if not key.startswith("text_model.") and not key.startswith("text_projection"):
            key = "text_model." + key
        checkpoint[_CLIP_PREFIX + key] = tensor

    file.parent.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in checkpoint.items()}, str(file))
    return file
