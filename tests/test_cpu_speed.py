"""The CPU settings applied around each pipeline call on the CPU (app/pipeline/cpu_speed.py)."""

from __future__ import annotations

import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from app.pipeline.cpu_speed import (
    SMALL_DENOISER_PARAMETERS,
    cpu_inference,
    onednn_for_call,
    onednn_pays_off,
)
from app.pipeline.generator import ArtworkGenerator


def _pipeline_with_unet_of(parameters: int) -> SimpleNamespace:
    unet = torch.nn.Module()
    unet.weight = torch.nn.Parameter(torch.empty(parameters))
    return SimpleNamespace(unet=unet)


def test_onednn_is_kept_for_large_denoisers_only() -> None:
    assert not onednn_pays_off(_pipeline_with_unet_of(2_750_000))
    assert onednn_pays_off(_pipeline_with_unet_of(SMALL_DENOISER_PARAMETERS))


def test_a_small_denoiser_gets_onednn_for_a_batch_or_a_large_image_only() -> None:
    """PyTorch's own convolutions took 5.3-5.8 s for 8 images of 64×64 with the embedded model, oneDNN 2.2 s."""
    assert not onednn_for_call(False, rows=1, width=64, height=64, vae_scale_factor=4)
    assert not onednn_for_call(False, rows=3, width=64, height=64, vae_scale_factor=4)
    assert onednn_for_call(False, rows=4, width=64, height=64, vae_scale_factor=4)
    assert onednn_for_call(False, rows=8, width=64, height=64, vae_scale_factor=4)
    assert onednn_for_call(False, rows=1, width=128, height=128, vae_scale_factor=4)
    assert onednn_for_call(True, rows=1, width=64, height=64, vae_scale_factor=4), "a large denoiser always has it"


def test_a_call_runs_with_onednn_when_its_rows_need_it(model_dir: Path) -> None:
    generator = ArtworkGenerator(str(model_dir), device="cpu")
    generator.load_model()
    seen: list[bool] = []

    def note_onednn(step: int, total: int, latents: object) -> None:
        seen.append(torch.backends.mkldnn.enabled)

    before = torch.backends.mkldnn.enabled
    generator.generate("a red circle", num_inference_steps=2, on_step=note_onednn, width=64, height=64)
    generator.generate("", rows=[("a red circle", "", seed) for seed in range(4)], num_inference_steps=2,
                       on_step=note_onednn, width=64, height=64)
    assert seen == [False, False, True, True]
    assert torch.backends.mkldnn.enabled is before


def test_cpu_inference_restores_the_global_onednn_flag_even_after_an_error() -> None:
    before = torch.backends.mkldnn.enabled
    with cpu_inference(use_onednn=not before):
        assert torch.backends.mkldnn.enabled is (not before)
    assert torch.backends.mkldnn.enabled is before
    with pytest.raises(RuntimeError), cpu_inference(use_onednn=not before):
        raise RuntimeError("generation failed")
    assert torch.backends.mkldnn.enabled is before


def test_results_match_the_default_settings_closely() -> None:
    torch.manual_seed(0)
    convolution = torch.nn.Conv2d(4, 8, 3, padding=1)
    latents = torch.randn(2, 4, 16, 16)
    with torch.inference_mode():
        expected = convolution(latents)
        with cpu_inference(use_onednn=False):
            actual = convolution(latents)
    torch.testing.assert_close(actual, expected, rtol=1e-4, atol=1e-5)


def test_denormals_are_flushed_inside_the_call_only() -> None:
    """The flush leaked into the calling thread, and hypothesis (the fuzz tests) refused to run after it."""
    tiny = sys.float_info.min
    with cpu_inference(use_onednn=False):
        assert torch.tensor([tiny], dtype=torch.float64) / 2 == 0  # flushed during the call
    assert tiny / 2 > 0 and torch.tensor([tiny], dtype=torch.float64) / 2 > 0
