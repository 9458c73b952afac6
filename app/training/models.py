"""Model configurations for the embedded text-to-image model.

The shipped pipeline is a plain diffusers ``StableDiffusionPipeline``:

* ``AutoencoderKL`` with three levels: 64x64x3 pixels <-> 16x16x4 latents;
* ``UNet2DConditionModel`` on the 16x16 latents: plain residual blocks at
  16x16, cross-attention to the caption at 8x8 and 4x4, plus
  ``addition_embed_type="text"``: an attention-pooled summary of the caption
  is added to the timestep embedding, so global attributes (colours, time of
  day) modulate every residual block from the first training steps;
* ``CLIPTextModel``: two small transformer layers over word-level tokens;
* v-prediction on a cosine noise schedule (terminal SNR is almost zero, so
  the model learns to make dark night skies and flat colours from pure
  noise), sampled with DPM-Solver++.
"""

from __future__ import annotations

from dataclasses import dataclass

from diffusers import AutoencoderKL, DDPMScheduler, DPMSolverMultistepScheduler, UNet2DConditionModel
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

from .scenes import IMAGE_SIZE

NUM_TRAIN_TIMESTEPS = 1000
LATENT_CHANNELS = 4
PLAIN, CROSS_ATTENTION = "DownBlock2D", "CrossAttnDownBlock2D"
UP_BLOCK_FOR = {PLAIN: "UpBlock2D", CROSS_ATTENTION: "CrossAttnUpBlock2D"}


@dataclass(frozen=True)
class ModelSize:
    """Widths of the three networks; ``FULL`` is shipped, ``TINY`` is for tests."""

    vae_channels: tuple[int, ...]
    vae_groups: int
    unet_channels: tuple[int, ...]
    unet_blocks: tuple[str, ...]
    unet_groups: int
    head_dim: int
    text_width: int
    text_layers: int


FULL = ModelSize(
    vae_channels=(16, 32, 64), vae_groups=8,
    unet_channels=(32, 64, 96), unet_blocks=(PLAIN, CROSS_ATTENTION, CROSS_ATTENTION), unet_groups=16, head_dim=32,
    text_width=64, text_layers=2,
)
TINY = ModelSize(
    vae_channels=(8, 8, 8), vae_groups=4,
    unet_channels=(8, 16, 16), unet_blocks=(PLAIN, CROSS_ATTENTION, CROSS_ATTENTION), unet_groups=4, head_dim=8,
    text_width=16, text_layers=1,
)
SIZES = {"full": FULL, "tiny": TINY}


def make_vae(size: ModelSize) -> AutoencoderKL:
    levels = len(size.vae_channels)
    return AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * levels,
        up_block_types=("UpDecoderBlock2D",) * levels,
        block_out_channels=size.vae_channels,
        layers_per_block=1,
        latent_channels=LATENT_CHANNELS,
        norm_num_groups=size.vae_groups,
        sample_size=IMAGE_SIZE,
        scaling_factor=1.0,  # replaced by 1/std of the latents once the VAE is trained
    )


def vae_downsampling(size: ModelSize) -> int:
    return 2 ** (len(size.vae_channels) - 1)


def make_text_encoder(size: ModelSize, tokenizer: CLIPTokenizer) -> CLIPTextModel:
    config = CLIPTextConfig(
        vocab_size=len(tokenizer),
        hidden_size=size.text_width,
        intermediate_size=size.text_width * 2,
        projection_dim=size.text_width,
        num_hidden_layers=size.text_layers,
        num_attention_heads=4,
        max_position_embeddings=tokenizer.model_max_length,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    return CLIPTextModel(config)


def make_unet(size: ModelSize) -> UNet2DConditionModel:
    return UNet2DConditionModel(
        sample_size=IMAGE_SIZE // vae_downsampling(size),
        in_channels=LATENT_CHANNELS,
        out_channels=LATENT_CHANNELS,
        down_block_types=size.unet_blocks,
        up_block_types=tuple(UP_BLOCK_FOR[block] for block in reversed(size.unet_blocks)),
        block_out_channels=size.unet_channels,
        layers_per_block=1,
        attention_head_dim=size.head_dim,
        cross_attention_dim=size.text_width,
        norm_num_groups=size.unet_groups,
        addition_embed_type="text",
        addition_embed_type_num_heads=4,
    )


def make_training_scheduler() -> DDPMScheduler:
    return DDPMScheduler(
        num_train_timesteps=NUM_TRAIN_TIMESTEPS,
        beta_schedule="squaredcos_cap_v2",
        prediction_type="v_prediction",
        clip_sample=False,
    )


def make_sampling_scheduler() -> DPMSolverMultistepScheduler:
    return DPMSolverMultistepScheduler(
        num_train_timesteps=NUM_TRAIN_TIMESTEPS,
        beta_schedule="squaredcos_cap_v2",
        prediction_type="v_prediction",
        algorithm_type="dpmsolver++",
        solver_order=2,
        steps_offset=1,
        final_sigmas_type="zero",
    )


def parameter_count(module: object) -> int:
    return sum(p.numel() for p in module.parameters())  # type: ignore[attr-defined]
