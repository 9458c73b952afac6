"""Image-to-image, inpainting and LoRAs in `ArtworkGenerator`, for every family, in this process: the steps
that really run, strength 0 and 1, what a mask keeps and changes, LoRA sets switched between calls with
no reload and the same pixels for the same seed, input and LoRA set."""
from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from app.pipeline.generator import ArtworkGenerator
from app.pipeline.png import a1111_parameters
from app.pipeline.values import FAMILIES
from app.protocol import GenerationMetadata, LoraUse
from app.testing.tiny_inpainting import build_tiny_inpainting_pipeline
from app.testing.tiny_lora import build_tiny_lora
from app.testing.tiny_models import TINY_IMAGE_SIZE

SIZE = {"width": TINY_IMAGE_SIZE, "height": TINY_IMAGE_SIZE}


@pytest.fixture(scope="module")
def lora_dir(tiny_pipeline_dirs, tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("loras")
    for family, model in tiny_pipeline_dirs.items():
        build_tiny_lora(model, folder / f"{family}-a.safetensors", seed=1, scale=3)
        build_tiny_lora(model, folder / f"{family}-b.safetensors", seed=2, scale=3)
    return folder


@pytest.fixture(scope="module")
def generators(tiny_pipeline_dirs, lora_dir) -> dict[str, ArtworkGenerator]:
    loaded = {}
    for family, folder in tiny_pipeline_dirs.items():
        generator = ArtworkGenerator(str(folder), device="cpu", cpu_threads=1, lora_dir=lora_dir)
        generator.load_model()
        loaded[family] = generator
    return loaded


def picture(seed: int = 0) -> Image.Image:
    return Image.fromarray(np.random.RandomState(seed).randint(0, 256, (TINY_IMAGE_SIZE, TINY_IMAGE_SIZE, 3), np.uint8))


def pixels(image: Image.Image) -> np.ndarray:
    return np.asarray(image.convert("RGB"), dtype=float)


def run(generator: ArtworkGenerator, **options) -> tuple[np.ndarray, list[tuple[int, int]]]:
    steps: list[tuple[int, int]] = []
    (image,) = generator.generate("a painting of a cat", seed=7, on_step=lambda s, t, _l: steps.append((s, t)),
                                  **{"num_inference_steps": 4, **SIZE, **options})
    return pixels(image), steps


@pytest.mark.parametrize("family", FAMILIES)
def test_image_to_image_runs_int_steps_times_strength_and_strength_0_keeps_the_input(family, generators):
    generator, init = generators[family], picture()
    assert generator.modes.modes == ("txt2img", "img2img", "inpaint")
    for strength, expected in ((0.5, 2), (0.75, 3), (0.6, 2), (1.0, 4)):
        _, steps = run(generator, init_image=init, strength=strength)
        assert steps == [(step, expected) for step in range(1, expected + 1)], (strength, steps)
    kept, steps = run(generator, init_image=init, strength=0.0)
    assert steps == [] and (kept == pixels(init)).all()
    replaced, _ = run(generator, init_image=init, strength=1.0)
    assert np.abs(replaced - pixels(init)).mean() > 20
    again, _ = run(generator, init_image=init, strength=1.0)
    assert (again == replaced).all()  # same seed and input: same pixels


@pytest.mark.parametrize("family", FAMILIES)
def test_inpainting_keeps_black_pixels_and_repaints_white_ones(family, generators):
    init = picture(1)
    mask = Image.new("L", init.size, 0)
    mask.paste(255, (0, 0, TINY_IMAGE_SIZE // 2, TINY_IMAGE_SIZE))  # repaint the left half
    result, steps = run(generators[family], init_image=init, mask_image=mask, strength=1.0, mask_blur=2)
    assert [step for step, _ in steps] == [1, 2, 3, 4]
    original = pixels(init)
    right = slice(TINY_IMAGE_SIZE // 2 + 8, None)  # beyond the blurred edge
    assert np.abs(result[:, right] - original[:, right]).max() <= 1
    assert np.abs(result[:, :TINY_IMAGE_SIZE // 2 - 8] - original[:, :TINY_IMAGE_SIZE // 2 - 8]).mean() > 20


@pytest.mark.parametrize("family", FAMILIES)
def test_lora_sets_switch_between_calls_without_reloading_and_repeat_exactly(family, generators):
    generator = generators[family]
    denoiser = generator.pipeline.unet if family in ("sd", "sdxl") else generator.pipeline.transformer
    for mode_pipeline in generator.modes.pipelines.values():  # from_pipe: one copy of the weights
        assert (getattr(mode_pipeline, "unet", None) or mode_pipeline.transformer) is denoiser
    a, b = (f"{family}-a", 1.0), (f"{family}-b", 0.7)
    plain, _ = run(generator)
    with_a, _ = run(generator, loras=[a])
    with_both, _ = run(generator, loras=[a, b])
    with_a_again, _ = run(generator, loras=[a])
    plain_again, _ = run(generator)
    assert np.abs(with_a - plain).mean() > 0.1 and np.abs(with_both - with_a).mean() > 0.1
    assert (with_a_again == with_a).all() and (plain_again == plain).all()
    assert (generator.pipeline.unet if family in ("sd", "sdxl") else generator.pipeline.transformer) is denoiser
    init = picture(2)
    reworked, _ = run(generator, init_image=init, strength=0.75)
    reworked_with_a, _ = run(generator, init_image=init, strength=0.75, loras=[a])
    assert np.abs(reworked_with_a - reworked).mean() > 0.1  # the LoRA applies to image-to-image too


def test_a_lora_the_folder_lacks_or_another_file_of_its_name_fails_the_job_saying_so(generators, lora_dir):
    from app.pipeline.lora_adapters import LoraUnavailable
    from app.pipeline.values import LoraRef

    generator = generators["sd"]
    with pytest.raises(LoraUnavailable, match="'elsewhere' .* is not in this worker's LoRA folder"):
        generator.generate("x", num_inference_steps=2, **SIZE, loras=[LoraRef("elsewhere", "ab" * 32, 1.0)])
    with pytest.raises(LoraUnavailable, match="is another file"):
        generator.generate("x", num_inference_steps=2, **SIZE, loras=[LoraRef("sd-a", "cd" * 32, 1.0)])


def test_a_dedicated_inpainting_checkpoint_only_inpaints(tmp_path):
    generator = ArtworkGenerator(str(build_tiny_inpainting_pipeline(tmp_path / "inpaint")), device="cpu", cpu_threads=1)
    generator.load_model()
    assert generator.modes.modes == ("inpaint",)
    mask = Image.new("L", (TINY_IMAGE_SIZE, TINY_IMAGE_SIZE), 255)
    image, steps = run(generator, init_image=picture(), mask_image=mask, strength=1.0)
    assert image.shape == (TINY_IMAGE_SIZE, TINY_IMAGE_SIZE, 3) and len(steps) == 4
    with pytest.raises(ValueError, match="cannot do txt2img .* dedicated inpainting checkpoint"):
        run(generator)


def test_png_parameters_carry_the_a1111_fields():
    metadata = GenerationMetadata(
        prompt="a cat", negative_prompt="", seed=1, num_inference_steps=20, guidance_scale=7, model="tiny",
        width=64, height=64, scheduler="euler", created_at=datetime.now(timezone.utc), duration_seconds=1,
        mode="inpaint", strength=0.6, mask_blur=4, init_image="abc.png", mask_image="def.png",
        loras=[LoraUse(name="ink", weight=0.8, hash="0123456789ab"), LoraUse(name="paper", weight=1, hash="ba9876543210")],
    )
    prompt, settings = a1111_parameters(metadata).split("\n")
    assert prompt == "a cat <lora:ink:0.8> <lora:paper:1>"
    for field in ("Denoising strength: 0.6", "Mask blur: 4", 'Lora hashes: "ink: 0123456789ab, paper: ba9876543210"',
                  "Init image: abc.png", "Mask image: def.png", "Steps: 20"):
        assert field in settings
