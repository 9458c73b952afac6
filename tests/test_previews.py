"""Live previews: family detection, latent -> RGB per family from real callbacks (Flux
unpacked), odd channel counts, TAESD, throttling and the JPEG wire format."""

from __future__ import annotations

import base64
import io
from pathlib import Path

import numpy as np
import pytest
import torch
from diffusers import AutoencoderTiny, FluxPipeline
from PIL import Image

from app.engine.previews import to_data_url
from app.pipeline.previews import (
    LATENT_RGB_BIAS,
    LATENT_RGB_FACTORS,
    PreviewDecoder,
    PreviewThrottle,
    encode_jpeg,
    latents_to_preview,
    model_family,
    unpack_flux_latents,
)
from app.testing.tiny_models import FAMILIES
from tests.fixtures.families import generation_kwargs

pytestmark = pytest.mark.usefixtures("torch_single_thread")

HEIGHT, WIDTH = 64, 80  # not square, so a transposed unpack would show


@pytest.mark.parametrize("family", FAMILIES)
def test_family_is_read_from_the_pipeline_class(family: str, tiny_pipelines: dict) -> None:
    assert model_family(tiny_pipelines[family]) == family


def test_unknown_pipeline_class_is_rejected() -> None:
    with pytest.raises(ValueError, match="model family"):
        model_family(object())


@pytest.mark.parametrize("family", FAMILIES)
def test_callback_latents_become_previews_of_the_first_image(family: str, tiny_pipelines: dict) -> None:
    pipe = tiny_pipelines[family]
    detected = model_family(pipe)
    previews: list[Image.Image] = []
    second_image_previews: list[Image.Image] = []

    def on_step_end(pipeline, step: int, timestep, callback_kwargs: dict) -> dict:
        latents = callback_kwargs["latents"]
        previews.append(latents_to_preview(latents, detected, pipe=pipeline, height=HEIGHT, width=WIDTH))
        second_image_previews.append(
            latents_to_preview(latents[1:], detected, pipe=pipeline, height=HEIGHT, width=WIDTH)
        )
        return {}

    kwargs = generation_kwargs(steps=3, height=HEIGHT, width=WIDTH)
    kwargs["prompt"] = [kwargs["prompt"], "a photo of a dog"]
    pipe(**kwargs, callback_on_step_end=on_step_end)

    assert len(previews) >= 3
    for preview, other in zip(previews, second_image_previews):
        assert preview.mode == "RGB"
        assert preview.size == (WIDTH // 8, HEIGHT // 8)
        assert not np.array_equal(np.asarray(preview), np.asarray(other))  # batch item 0 only
    assert not np.array_equal(np.asarray(previews[0]), np.asarray(previews[-1]))  # it follows the denoising


def test_flux_packed_latents_unpack_to_the_pipeline_layout() -> None:
    latents = torch.randn(2, 16, HEIGHT // 8, WIDTH // 8)
    packed = FluxPipeline._pack_latents(latents, 2, 16, HEIGHT // 8, WIDTH // 8)
    assert packed.shape == (2, (HEIGHT // 16) * (WIDTH // 16), 64)

    assert torch.equal(unpack_flux_latents(packed, height=HEIGHT, width=WIDTH), latents)
    preview_from_packed = latents_to_preview(packed, "flux", height=HEIGHT, width=WIDTH)
    preview_from_grid = latents_to_preview(latents, "flux")
    assert np.array_equal(np.asarray(preview_from_packed), np.asarray(preview_from_grid))

    square = FluxPipeline._pack_latents(latents[:, :, :, :8], 2, 16, 8, 8)
    assert torch.equal(unpack_flux_latents(square), latents[:, :, :, :8])  # square guessed from length
    with pytest.raises(ValueError, match="height and width"):
        unpack_flux_latents(packed)  # 20 tokens: not a square, the size is needed


@pytest.mark.parametrize("family", FAMILIES)
def test_published_factors_and_bias_are_applied(family: str) -> None:
    factors = LATENT_RGB_FACTORS[family]
    assert len(factors) == (4 if family in ("sd", "sdxl") else 16)
    latents = torch.zeros(1, len(factors), 2, 3)
    latents[0, 0] = 1.0  # only the first channel lit

    pixels = np.asarray(latents_to_preview(latents, family))

    expected = [
        round(min(max((factors[0][c] + LATENT_RGB_BIAS[family][c] + 1) / 2, 0), 1) * 255) for c in range(3)
    ]
    assert pixels.shape == (2, 3, 3)
    assert np.abs(pixels.astype(int) - np.array(expected)).max() <= 1


@pytest.mark.parametrize("channels", [1, 2, 3, 5, 7, 16])
def test_unusual_channel_counts_fall_back_to_a_generic_projection(channels: int) -> None:
    latents = torch.randn(2, channels, 6, 5)
    preview = latents_to_preview(latents, "sd")  # SD factors expect 4 channels
    assert preview.size == (5, 6) and preview.mode == "RGB"
    pixels = np.asarray(preview)
    assert pixels.min() == 0 and pixels.max() == 255  # stretched to the full range

    flat = latents_to_preview(torch.full((1, channels, 4, 4), 0.5), "sd")
    assert np.asarray(flat).max() == 0  # a constant latent does not divide by zero


def test_unknown_family_is_rejected() -> None:
    with pytest.raises(ValueError, match="sd, sdxl, sd3, flux"):
        latents_to_preview(torch.zeros(1, 4, 2, 2), "kandinsky")


def _tiny_taesd(folder: Path, latent_channels: int) -> Path:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        AutoencoderTiny(
            latent_channels=latent_channels,
            encoder_block_out_channels=(8, 8, 8, 8),
            decoder_block_out_channels=(8, 8, 8, 8),
            num_encoder_blocks=(1, 1, 1, 1),
            num_decoder_blocks=(1, 1, 1, 1),
        ).save_pretrained(folder)
    return folder


def test_taesd_is_used_when_its_folder_is_on_disk(tmp_path: Path) -> None:
    taesd_dir = _tiny_taesd(tmp_path / "taesd", latent_channels=4)
    decoder = PreviewDecoder("sd", taesd_dir)
    assert decoder.method == "taesd"

    latents = torch.randn(2, 4, HEIGHT // 8, WIDTH // 8)
    preview = decoder.preview(latents)
    assert preview.size == (WIDTH, HEIGHT)  # TAESD decodes to full resolution

    expected = decoder.taesd.decode(latents[:1]).sample[0]
    expected_pixels = ((expected + 1) / 2).clamp(0, 1).mul(255).round().to(torch.uint8).permute(1, 2, 0).numpy()
    assert np.array_equal(np.asarray(preview), expected_pixels)


def test_taesd_decodes_flux_latents_after_unpacking(tmp_path: Path, tiny_pipelines: dict) -> None:
    pipe = tiny_pipelines["flux"]
    decoder = PreviewDecoder.for_pipeline(pipe, _tiny_taesd(tmp_path / "taef1", latent_channels=16))
    packed = FluxPipeline._pack_latents(torch.randn(1, 16, HEIGHT // 8, WIDTH // 8), 1, 16, HEIGHT // 8, WIDTH // 8)

    assert decoder.family == "flux" and decoder.method == "taesd"
    assert decoder.preview(packed, pipe=pipe, height=HEIGHT, width=WIDTH).size == (WIDTH, HEIGHT)


def test_missing_taesd_folder_falls_back_to_linear(tmp_path: Path) -> None:
    decoder = PreviewDecoder("sdxl", tmp_path / "not-downloaded")
    assert decoder.method == "linear"
    assert decoder.preview(torch.randn(1, 4, 8, 10)).size == (10, 8)
    assert PreviewDecoder("sd").method == "linear"


def test_throttle_renders_every_n_steps() -> None:
    throttle = PreviewThrottle(every_n_steps=3, min_interval_ms=0)
    rendered = [step for step in range(10) if throttle.should_render(step, now=0.0)]
    assert rendered == [2, 5, 8]


def test_throttle_enforces_a_minimum_interval_but_always_renders_the_first() -> None:
    throttle = PreviewThrottle(every_n_steps=1, min_interval_ms=100)
    times = [5.000, 5.050, 5.101, 5.150, 5.200, 5.250]
    decisions = [throttle.should_render(step, now=t) for step, t in enumerate(times)]
    assert decisions == [True, False, True, False, False, True]

    throttle.reset()
    assert throttle.should_render(6, now=5.260)


def test_throttle_combines_steps_and_time() -> None:
    throttle = PreviewThrottle(every_n_steps=2, min_interval_ms=1000)
    assert not throttle.should_render(0, now=0.0)  # not on the step grid
    assert throttle.should_render(1, now=0.0)  # first eligible step
    assert not throttle.should_render(3, now=0.5)  # on the grid, too soon
    assert throttle.should_render(5, now=1.5)


@pytest.mark.parametrize(("every_n_steps", "min_interval_ms"), [(0, 0), (-1, 0), (1, -5)])
def test_throttle_rejects_nonsense_settings(every_n_steps: int, min_interval_ms: float) -> None:
    with pytest.raises(ValueError):
        PreviewThrottle(every_n_steps, min_interval_ms)


def test_jpeg_is_shrunk_to_max_side_and_wrapped_as_data_url() -> None:
    big = Image.new("RGB", (1000, 500), (200, 30, 40))
    jpeg = encode_jpeg(big, max_side=256, quality=70)
    decoded = Image.open(io.BytesIO(jpeg))
    assert decoded.format == "JPEG" and decoded.size == (256, 128)
    assert np.abs(np.asarray(decoded).astype(int) - [200, 30, 40]).max() < 8

    small = Image.new("RGBA", (10, 8))
    assert Image.open(io.BytesIO(encode_jpeg(small))).size == (10, 8)  # never enlarged

    url = to_data_url(jpeg)
    assert url.startswith("data:image/jpeg;base64,")
    assert base64.b64decode(url.split(",", 1)[1]) == jpeg
