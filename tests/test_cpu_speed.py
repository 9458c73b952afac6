"""The CPU settings applied around each pipeline call on the CPU (app/pipeline/cpu_speed.py)."""

from __future__ import annotations

import sys
from types import SimpleNamespace

import pytest
import torch

from app.pipeline.cpu_speed import (
    SMALL_DENOISER_PARAMETERS,
    cpu_inference,
    onednn_pays_off,
)


def _pipeline_with_unet_of(parameters: int) -> SimpleNamespace:
    unet = torch.nn.Module()
    unet.weight = torch.nn.Parameter(torch.empty(parameters))
    return SimpleNamespace(unet=unet)


def test_onednn_is_kept_for_large_denoisers_only() -> None:
    assert not onednn_pays_off(_pipeline_with_unet_of(2_750_000))
    assert onednn_pays_off(_pipeline_with_unet_of(SMALL_DENOISER_PARAMETERS))


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
