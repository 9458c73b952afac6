"""Tiny random-weight diffusers pipelines, built fully offline, for tests.

Each family ("sd", "sdxl", "sd3", "flux") gets the real pipeline class and the
real component classes with the real latent channel count (4 for SD/SDXL, 16 for
SD3/Flux) and a real VAE downscale of 8, but only a few thousand parameters, so a
64x64 image in 2 steps takes a fraction of a second on a CPU.  Tokenizers are
generated locally; nothing touches the Hugging Face hub.

A tiny SD folder as one original-layout `.safetensors` checkpoint: app/testing/single_file.py.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Callable
from pathlib import Path

import torch

from ..pipeline.values import FAMILIES

# Small enough to be instant, large enough for a VAE downscale of 8 and Flux's 2x2 packing.
TINY_IMAGE_SIZE = 64

_CLIP_MERGES = ("t h", "th e</w>", "a n", "an d</w>", "o f</w>", "i n", "c a", "ca t</w>")
_T5_WORDS = "the a of and in on with cat dog painting photo squirrel burger portrait landscape".split()


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2/CLIP byte-level alphabet: every byte maps to a printable unicode character."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    chars = printable[:]
    extra = 0
    for byte in range(256):
        if byte not in printable:
            printable.append(byte)
            chars.append(256 + extra)
            extra += 1
    return dict(zip(printable, (chr(c) for c in chars)))


def _write_clip_vocab(folder: Path) -> None:
    """A complete byte-level BPE vocabulary (all bytes, word-final variants, a few merges)."""
    alphabet = list(_bytes_to_unicode().values())
    tokens = [*alphabet, *(c + "</w>" for c in alphabet), *("".join(m.split()) for m in _CLIP_MERGES)]
    tokens += ["<|startoftext|>", "<|endoftext|>"]
    (folder / "vocab.json").write_text(json.dumps({tok: i for i, tok in enumerate(tokens)}), encoding="utf-8")
    (folder / "merges.txt").write_text("#version: 0.2\n" + "\n".join(_CLIP_MERGES) + "\n", encoding="utf-8")


def make_clip_tokenizer():
    from transformers import CLIPTokenizer

    with tempfile.TemporaryDirectory() as tmp:
        _write_clip_vocab(Path(tmp))
        return CLIPTokenizer.from_pretrained(tmp, model_max_length=77, local_files_only=True)


def make_t5_tokenizer():
    """A Unigram (sentencepiece-style) T5 tokenizer built in memory: whole words plus single letters."""
    from transformers import T5TokenizerFast

    pieces = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0), ("\u2581", -3.0)]
    pieces += [("\u2581" + word, -2.0) for word in _T5_WORDS]
    pieces += [(letter, -5.0) for letter in "abcdefghijklmnopqrstuvwxyz0123456789"]
    return T5TokenizerFast(vocab=pieces, extra_ids=0, model_max_length=512)


def _clip_text_config(tokenizer, hidden_size: int = 32):
    from transformers import CLIPTextConfig

    return CLIPTextConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden_size,
        intermediate_size=37,
        projection_dim=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        max_position_embeddings=77,
        hidden_act="gelu",
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )


def _t5_encoder(tokenizer, d_model: int):
    from transformers import T5Config, T5EncoderModel

    config = T5Config(
        vocab_size=len(tokenizer), d_model=d_model, d_kv=8, d_ff=37, num_layers=1, num_heads=4,
        relative_attention_num_buckets=8, pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id, decoder_start_token_id=tokenizer.pad_token_id,
    )
    return T5EncoderModel(config)


def _vae(latent_channels: int, scaling_factor: float, shift_factor: float | None, quant_conv: bool):
    from diffusers import AutoencoderKL

    # Four blocks -> downscale 8, like every real SD/SDXL/SD3/Flux VAE.
    return AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        block_out_channels=(8, 8, 8, 8),
        layers_per_block=1,
        latent_channels=latent_channels,
        norm_num_groups=4,
        sample_size=TINY_IMAGE_SIZE,
        scaling_factor=scaling_factor,
        shift_factor=shift_factor,
        force_upcast=False,
        use_quant_conv=quant_conv,
        use_post_quant_conv=quant_conv,
    )


def _build_sd():
    from diffusers import PNDMScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextModel

    tokenizer = make_clip_tokenizer()
    # Three levels so the checkpoint mapping meets every layout: an attention-free up block
    # with an upsampler, an attention up block with an upsampler, and a last block without.
    unet = UNet2DConditionModel(
        sample_size=TINY_IMAGE_SIZE // 8,
        in_channels=4,
        out_channels=4,
        down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
        block_out_channels=(8, 16, 16),
        layers_per_block=1,
        norm_num_groups=4,
        cross_attention_dim=32,
        attention_head_dim=2,
    )
    vae = _vae(4, scaling_factor=0.18215, shift_factor=None, quant_conv=True)
    text_encoder = CLIPTextModel(_clip_text_config(tokenizer))
    scheduler = PNDMScheduler(
        beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
        skip_prk_steps=True, set_alpha_to_one=False, steps_offset=1,
    )
    return StableDiffusionPipeline(
        vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet, scheduler=scheduler,
        safety_checker=None, feature_extractor=None, requires_safety_checker=False,
    )


def _build_sdxl():
    from diffusers import (
        EulerDiscreteScheduler,
        StableDiffusionXLPipeline,
        UNet2DConditionModel,
    )
    from transformers import CLIPTextModel, CLIPTextModelWithProjection

    tokenizer = make_clip_tokenizer()
    time_embed_dim = 8
    text_projection_dim = 32
    unet = UNet2DConditionModel(
        sample_size=TINY_IMAGE_SIZE // 8,
        in_channels=4,
        out_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        block_out_channels=(8, 16),
        layers_per_block=1,
        norm_num_groups=4,
        attention_head_dim=(2, 4),
        use_linear_projection=True,
        transformer_layers_per_block=(1, 2),
        cross_attention_dim=64,  # both text encoders' hidden states, concatenated
        addition_embed_type="text_time",
        addition_time_embed_dim=time_embed_dim,
        # 6 size/crop conditioning numbers + the pooled projection of text_encoder_2
        projection_class_embeddings_input_dim=6 * time_embed_dim + text_projection_dim,
    )
    vae = _vae(4, scaling_factor=0.13025, shift_factor=None, quant_conv=True)
    scheduler = EulerDiscreteScheduler(
        beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
        steps_offset=1, timestep_spacing="leading",
    )
    return StableDiffusionXLPipeline(
        vae=vae,
        text_encoder=CLIPTextModel(_clip_text_config(tokenizer)),
        text_encoder_2=CLIPTextModelWithProjection(_clip_text_config(tokenizer)),
        tokenizer=tokenizer,
        tokenizer_2=make_clip_tokenizer(),
        unet=unet,
        scheduler=scheduler,
    )


def _build_sd3():
    from diffusers import (
        FlowMatchEulerDiscreteScheduler,
        SD3Transformer2DModel,
        StableDiffusion3Pipeline,
    )
    from transformers import CLIPTextModelWithProjection

    clip_tokenizer = make_clip_tokenizer()
    t5_tokenizer = make_t5_tokenizer()
    t5_width = 64  # = the two CLIP hidden sizes concatenated, so SD3 pads nothing away
    transformer = SD3Transformer2DModel(
        sample_size=TINY_IMAGE_SIZE // 8,
        patch_size=2,
        in_channels=16,
        out_channels=16,
        num_layers=1,
        attention_head_dim=8,
        num_attention_heads=4,
        joint_attention_dim=t5_width,
        caption_projection_dim=32,
        pooled_projection_dim=64,  # both CLIP pooled projections, concatenated
        pos_embed_max_size=32,
    )
    return StableDiffusion3Pipeline(
        transformer=transformer,
        scheduler=FlowMatchEulerDiscreteScheduler(shift=3.0),
        vae=_vae(16, scaling_factor=1.5305, shift_factor=0.0609, quant_conv=False),
        text_encoder=CLIPTextModelWithProjection(_clip_text_config(clip_tokenizer)),
        tokenizer=clip_tokenizer,
        text_encoder_2=CLIPTextModelWithProjection(_clip_text_config(clip_tokenizer)),
        tokenizer_2=make_clip_tokenizer(),
        text_encoder_3=_t5_encoder(t5_tokenizer, d_model=t5_width),
        tokenizer_3=t5_tokenizer,
    )


def _build_flux():
    from diffusers import (
        FlowMatchEulerDiscreteScheduler,
        FluxPipeline,
        FluxTransformer2DModel,
    )
    from transformers import CLIPTextModel

    clip_tokenizer = make_clip_tokenizer()
    t5_tokenizer = make_t5_tokenizer()
    transformer = FluxTransformer2DModel(
        patch_size=1,
        in_channels=64,  # 16 latent channels packed 2x2
        num_layers=1,
        num_single_layers=1,
        attention_head_dim=16,
        num_attention_heads=2,
        joint_attention_dim=32,  # T5 width
        pooled_projection_dim=32,  # CLIP hidden size
        guidance_embeds=True,  # like FLUX.1-dev
        axes_dims_rope=(4, 4, 8),  # sums to attention_head_dim
    )
    scheduler = FlowMatchEulerDiscreteScheduler(
        shift=3.0, use_dynamic_shifting=True, base_shift=0.5, max_shift=1.15,
        base_image_seq_len=256, max_image_seq_len=4096,
    )
    return FluxPipeline(
        scheduler=scheduler,
        vae=_vae(16, scaling_factor=0.3611, shift_factor=0.1159, quant_conv=False),
        text_encoder=CLIPTextModel(_clip_text_config(clip_tokenizer)),
        tokenizer=clip_tokenizer,
        text_encoder_2=_t5_encoder(t5_tokenizer, d_model=32),
        tokenizer_2=t5_tokenizer,
        transformer=transformer,
    )


_BUILDERS: dict[str, Callable[[], object]] = {
    "sd": _build_sd,
    "sdxl": _build_sdxl,
    "sd3": _build_sd3,
    "flux": _build_flux,
}


def build_tiny_pipeline(family: str, path: Path, seed: int = 0) -> Path:
    """Build a random-weight pipeline of `family`, save it to `path`, return `path`.

    The weights depend only on `seed`; the global torch RNG is left as it was.
    """
    if family not in _BUILDERS:
        raise ValueError(f"unknown model family {family!r}; expected one of {', '.join(FAMILIES)}")
    path = Path(path)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        pipeline = _BUILDERS[family]()
    pipeline.save_pretrained(path, safe_serialization=True)
    return path


# --- single-file (original LDM layout) checkpoint -------------------------------------------
