"""Tiny offline pipelines: every family builds, reloads, generates, stops when interrupted;
a tiny SD pipeline round-trips through an original-layout single-file checkpoint."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from diffusers import DiffusionPipeline, StableDiffusionPipeline

from app.testing.single_file import save_single_file_checkpoint
from app.testing.tiny_models import (
    FAMILIES,
    TINY_IMAGE_SIZE,
    build_tiny_pipeline,
    make_clip_tokenizer,
    make_t5_tokenizer,
)
from tests.fixtures.families import generation_kwargs, load_tiny_pipeline

pytestmark = pytest.mark.usefixtures("torch_single_thread")

EXPECTED_PIPELINE_CLASS = {
    "sd": "StableDiffusionPipeline",
    "sdxl": "StableDiffusionXLPipeline",
    "sd3": "StableDiffusion3Pipeline",
    "flux": "FluxPipeline",
}
EXPECTED_LATENT_CHANNELS = {"sd": 4, "sdxl": 4, "sd3": 16, "flux": 16}


@pytest.mark.parametrize("family", FAMILIES)
def test_family_reloads_offline_both_ways_and_generates(family: str, tiny_pipeline_dirs: dict[str, Path]) -> None:
    path = tiny_pipeline_dirs[family]
    generic = DiffusionPipeline.from_pretrained(path, local_files_only=True)
    auto = load_tiny_pipeline(path)

    assert type(generic).__name__ == EXPECTED_PIPELINE_CLASS[family]
    assert type(auto).__name__ == EXPECTED_PIPELINE_CLASS[family]
    assert auto.vae_scale_factor == 8
    assert auto.vae.config.latent_channels == EXPECTED_LATENT_CHANNELS[family]

    image = auto(**generation_kwargs(steps=2)).images[0]

    assert image.size == (TINY_IMAGE_SIZE, TINY_IMAGE_SIZE)
    pixels = np.asarray(image)
    assert pixels.shape == (TINY_IMAGE_SIZE, TINY_IMAGE_SIZE, 3)
    assert pixels.std() > 0  # a real decode, not a blank canvas


@pytest.mark.parametrize("family", FAMILIES)
def test_interrupt_from_callback_stops_denoising_early(family: str, tiny_pipelines: dict) -> None:
    pipe = tiny_pipelines[family]
    calls: list[int] = []

    def interrupt_after_second_step(pipeline, step: int, timestep, callback_kwargs: dict) -> dict:
        calls.append(step)
        if step == 1:
            pipeline._interrupt = True
        return {}

    result = pipe(**generation_kwargs(steps=6), callback_on_step_end=interrupt_after_second_step)

    assert calls == [0, 1]
    assert result.images[0].size == (TINY_IMAGE_SIZE, TINY_IMAGE_SIZE)
    # The flag is reset by the next call, which runs to the end.
    calls.clear()
    pipe(**generation_kwargs(steps=3), callback_on_step_end=lambda p, i, t, kw: calls.append(i) or {})
    assert len(calls) >= 3


def test_build_is_deterministic_per_seed_and_leaves_global_rng_alone(tmp_path: Path) -> None:
    rng_before = torch.random.get_rng_state()
    first = build_tiny_pipeline("flux", tmp_path / "a", seed=7)
    again = build_tiny_pipeline("flux", tmp_path / "b", seed=7)
    other = build_tiny_pipeline("flux", tmp_path / "c", seed=8)

    assert torch.equal(torch.random.get_rng_state(), rng_before)
    weights = "transformer/diffusion_pytorch_model.safetensors"
    assert (first / weights).read_bytes() == (again / weights).read_bytes()
    assert (first / weights).read_bytes() != (other / weights).read_bytes()


def test_unknown_family_is_rejected(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="sd, sdxl, sd3, flux"):
        build_tiny_pipeline("kandinsky", tmp_path / "k")


def test_locally_built_tokenizers_round_trip_offline(tmp_path: Path) -> None:
    from transformers import AutoTokenizer, CLIPTokenizer

    clip = make_clip_tokenizer()
    clip.save_pretrained(tmp_path / "clip")
    clip_again = CLIPTokenizer.from_pretrained(tmp_path / "clip", local_files_only=True)
    ids = clip_again("the cat and the dog").input_ids
    assert ids == clip("the cat and the dog").input_ids
    assert ids[0] == clip.bos_token_id and ids[-1] == clip.eos_token_id
    assert clip.convert_tokens_to_ids("the</w>") in ids  # the BPE merges are in use
    assert clip_again.model_max_length == 77

    t5 = make_t5_tokenizer()
    t5.save_pretrained(tmp_path / "t5")
    t5_again = AutoTokenizer.from_pretrained(tmp_path / "t5", local_files_only=True)
    t5_ids = t5_again("a photo of a squirrel").input_ids
    assert t5_ids == t5("a photo of a squirrel").input_ids
    assert t5_ids[-1] == t5.eos_token_id
    assert t5.unk_token_id not in t5_ids


def test_single_file_checkpoint_reloads_with_equal_weights(tiny_pipeline_dirs: dict[str, Path], tmp_path: Path) -> None:
    from safetensors import safe_open

    source_dir = tiny_pipeline_dirs["sd"]
    checkpoint = save_single_file_checkpoint(source_dir, tmp_path / "tiny-sd.safetensors")

    with safe_open(str(checkpoint), framework="pt") as handle:
        keys = list(handle.keys())
    assert {key.split(".")[0] for key in keys} == {"model", "first_stage_model", "cond_stage_model"}
    assert "model.diffusion_model.input_blocks.0.0.weight" in keys
    assert "first_stage_model.decoder.up.0.block.0.conv1.weight" in keys
    assert "cond_stage_model.transformer.text_model.embeddings.token_embedding.weight" in keys

    # Configs and tokenizer only: every weight must come from the single file.
    configs_only = tmp_path / "configs"
    shutil.copytree(source_dir, configs_only, ignore=shutil.ignore_patterns("*.safetensors", "*.bin"))
    from_file = StableDiffusionPipeline.from_single_file(
        str(checkpoint), config=str(configs_only), local_files_only=True
    )
    from_file.set_progress_bar_config(disable=True)
    from_folder = load_tiny_pipeline(source_dir)

    for component in ("unet", "vae", "text_encoder"):
        expected = getattr(from_folder, component).state_dict()
        loaded = getattr(from_file, component).state_dict()
        assert loaded.keys() == expected.keys(), component
        for name, tensor in expected.items():
            assert torch.equal(loaded[name], tensor), f"{component}.{name}"

    image_from_file = np.asarray(from_file(**generation_kwargs(seed=3)).images[0])
    image_from_folder = np.asarray(from_folder(**generation_kwargs(seed=3)).images[0])
    assert np.array_equal(image_from_file, image_from_folder)
