"""Fast tests of the embedded-model training package and the shipped model."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import torch

from app.training.scenes import (
    COLOURS,
    ShapeScene,
    all_landscape_scenes,
    all_shape_scenes,
    is_held_out,
    render,
    sample_landscape_scene,
    sample_shape_scene,
    sample_training_example,
)
from app.training.scoring import classify_time_of_day, score_shape
from app.training.tokenizer import build_tokenizer, scene_vocabulary

REPO = Path(__file__).resolve().parent.parent
SHIPPED_MODEL = REPO / "assets" / "models" / "ai-artist-tiny"


def test_scorer_reads_ground_truth_shapes() -> None:
    rng = np.random.default_rng(7)
    scenes = [sample_shape_scene(rng) for _ in range(150)]
    scores = [score_shape(render(scene, rng), scene) for scene in scenes]
    assert all(s.colour_ok for s in scores)
    assert all(s.shape_ok for s in scores)
    assert all(s.position_ok for s in scores if s.position_ok is not None)


def test_scorer_reads_ground_truth_time_of_day() -> None:
    rng = np.random.default_rng(8)
    scenes = [sample_landscape_scene(rng) for _ in range(150)]
    assert all(classify_time_of_day(render(scene, rng)) == scene.time_of_day for scene in scenes)


def test_scorer_rejects_wrong_captions() -> None:
    rng = np.random.default_rng(9)
    scene = sample_shape_scene(rng)
    image = render(scene, rng)
    other_colour = next(c for c in COLOURS if c != scene.colour and c != scene.background)
    assert not score_shape(image, type(scene)(other_colour, scene.shape, scene.background, scene.position)).colour_ok
    blank = np.full((64, 64, 3), 150, dtype=np.uint8)
    assert not score_shape(blank, scene).shape_ok


def test_training_examples_are_captioned_and_never_held_out() -> None:
    rng = np.random.default_rng(10)
    for _ in range(200):
        image, caption = sample_training_example(rng)
        assert image.shape == (64, 64, 3) and image.dtype == np.uint8
        assert caption and not is_held_out(caption)
    held_out = [s for s in all_shape_scenes() if is_held_out(s.caption)]
    assert len(held_out) >= 60
    assert any(is_held_out(s.caption) for s in all_landscape_scenes())


def test_tokenizer_keeps_vocabulary_words_whole(tmp_path: Path) -> None:
    tokenizer = build_tokenizer(tmp_path)
    for word in scene_vocabulary():
        assert tokenizer.tokenize(word) == [f"{word}</w>"], word
    ids = tokenizer("a blue square on a yellow background in the top left").input_ids
    assert tokenizer.convert_ids_to_tokens(ids) == [
        "<|startoftext|>", *(w + "</w>" for w in "a blue square on a yellow background in the top left".split()),
        "<|endoftext|>",
    ]
    assert len(tokenizer.tokenize("zebra")) > 1  # unknown words fall back to pieces, not to <unk>
    longest = max((s.caption for s in [*all_shape_scenes(), *all_landscape_scenes()]), key=lambda c: len(c.split()))
    assert len(tokenizer(longest).input_ids) <= tokenizer.model_max_length


def _tiny_config(run_dir: Path, unet_steps: int):
    from app.training.train import TrainConfig

    return TrainConfig(run_dir=run_dir, size="tiny", seed=3, vae_steps=2, vae_batch=4, pool_size=48,
                       unet_steps=unet_steps, unet_batch=4, warmup_steps=2, checkpoint_every=2, threads=1)


def test_tiny_training_runs_resumes_and_is_reproducible(tmp_path: Path) -> None:
    from app.training.decoder import finetune_decoder
    from app.training.train import export_pipeline, train

    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    train(_tiny_config(straight, unet_steps=4))
    train(_tiny_config(resumed, unet_steps=2))
    assert torch.load(resumed / "checkpoint.pt", weights_only=False)["step"] == 2
    train(_tiny_config(resumed, unet_steps=4))

    final_straight = torch.load(straight / "checkpoint.pt", weights_only=False)
    final_resumed = torch.load(resumed / "checkpoint.pt", weights_only=False)
    assert final_resumed["step"] == 4
    for name, tensor in final_straight["unet"].items():
        torch.testing.assert_close(final_resumed["unet"][name], tensor, msg=name)
    with (resumed / "loss.csv").open() as handle:
        unet_steps = [int(row["step"]) for row in csv.DictReader(handle) if row["phase"] == "unet"]
    assert unet_steps == [0, 1, 2, 3]

    tuned = finetune_decoder(_tiny_config(resumed, unet_steps=4), steps=2, batch=2)
    assert (tuned / "config.json").exists()
    pipeline = export_pipeline(resumed, tmp_path / "exported", "tiny")
    pipeline.set_progress_bar_config(disable=True)
    image = pipeline("a red circle", num_inference_steps=2, guidance_scale=7.5, output_type="np").images[0]
    assert image.shape == (64, 64, 3)


def _folder_megabytes(path: Path) -> float:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) / 1e6


@pytest.fixture(scope="module")
def shipped_pipeline():
    from diffusers import AutoPipelineForText2Image, StableDiffusionPipeline

    pipeline = AutoPipelineForText2Image.from_pretrained(SHIPPED_MODEL, local_files_only=True)
    assert isinstance(pipeline, StableDiffusionPipeline)
    pipeline.set_progress_bar_config(disable=True)
    return pipeline


def test_shipped_model_is_small_and_standard() -> None:
    assert _folder_megabytes(SHIPPED_MODEL) <= 20.0
    for part in ("unet", "vae", "text_encoder"):
        assert (SHIPPED_MODEL / part / "diffusion_pytorch_model.safetensors").exists() or (
            SHIPPED_MODEL / part / "model.safetensors").exists()
    assert (SHIPPED_MODEL / "model_index.json").exists()


def test_shipped_model_generates_a_64px_image(shipped_pipeline) -> None:
    with torch.inference_mode():
        image = shipped_pipeline("a red circle", num_inference_steps=4, guidance_scale=7.5,
                                 generator=torch.Generator().manual_seed(0)).images[0]
    assert image.size[0] >= 64 and image.size[1] >= 64


def test_shipped_model_loads_with_the_app_loader() -> None:
    from app.generator import ArtworkGenerator

    generator = ArtworkGenerator(model_id=str(SHIPPED_MODEL), device="cpu", dtype="float32")
    assert (generator.size_limits.default_width, generator.size_limits.default_height) == (64, 64)
    generator.load_model()
    images = generator.generate("a starry night over the sea", num_inference_steps=4, guidance_scale=7.5, seed=0)
    assert len(images) == 1 and images[0].size == (64, 64)


def test_batches_are_the_same_on_any_number_of_workers(tmp_path: Path) -> None:
    from app.training.batches import DECODER_PHASE, NoiseBatches, PoolChunks, SceneBatches, load
    from app.training.caption_noise import CaptionNoiser

    cpu = torch.device("cpu")
    captions = [scene.caption for scene in all_shape_scenes()[:50]]
    noiser = CaptionNoiser(captions, build_tokenizer(tmp_path), fraction=0.5)
    datasets = [
        SceneBatches(seed=5, phase=DECODER_PHASE, first_step=3, total_steps=6, batch=3, crop=32),
        PoolChunks(seed=5, pool_size=10, chunk=4),
        NoiseBatches(seed=5, first_step=7, total_steps=10, batch=4, pool_length=50, caption_dropout=0.5,
                     num_timesteps=1000, latent_shape=(4, 16, 16)),
        NoiseBatches(seed=5, first_step=7, total_steps=10, batch=4, pool_length=50, caption_dropout=0.5,
                     num_timesteps=1000, latent_shape=(4, 16, 16), noiser=noiser),
    ]
    for dataset in datasets:
        in_process, in_workers = list(load(dataset, 0, cpu)), list(load(dataset, 2, cpu))
        assert len(in_process) == len(in_workers) == len(dataset)
        for one, other in zip(in_process, in_workers):
            if isinstance(one, dict):
                for name in one:
                    assert torch.equal(one[name], other[name]), name
            elif isinstance(one, (tuple, list)):
                assert torch.equal(one[0], other[0]) and one[1] == other[1]
            else:
                assert torch.equal(one, other)
    last_chunk_images, last_chunk_captions = list(load(datasets[1], 0, cpu))[-1]
    assert len(last_chunk_images) == len(last_chunk_captions) == 2  # 10 scenes in chunks of 4


def test_a_time_budget_fixes_the_step_count_once_and_a_resume_keeps_it(tmp_path: Path) -> None:
    from dataclasses import replace

    from app.training.train import train

    config = replace(_tiny_config(tmp_path, unet_steps=10_000), unet_minutes=0.01, checkpoint_every=1)
    train(config)
    state = torch.load(tmp_path / "checkpoint.pt", weights_only=False)
    planned = state["total_steps"]
    assert 1 <= planned < 10_000 and state["step"] == planned
    with (tmp_path / "loss.csv").open() as handle:
        assert sum(row["phase"] == "unet" for row in csv.DictReader(handle)) == planned

    train(replace(config, unet_minutes=5.0))  # resumed: the plan in the checkpoint stands, nothing more to do
    assert torch.load(tmp_path / "checkpoint.pt", weights_only=False)["step"] == planned


def test_shipped_model_follows_held_out_prompts(shipped_pipeline) -> None:
    """Captions training never saw: the shape's colour and class, and the sky's time of day, as the evaluation scores them."""
    from app.training.evaluate import generate, held_out_prompts

    shapes, landscapes = held_out_prompts(shape_count=4, landscape_count=4, seed=1234)
    shape_images = generate(shipped_pipeline, [s.caption for s in shapes], steps=20, guidance=7.5, seed=1234)
    landscape_images = generate(shipped_pipeline, [s.caption for s in landscapes], steps=20, guidance=7.5, seed=11234)
    scores = [score_shape(image, scene) for image, scene in zip(shape_images, shapes)]
    assert sum(score.colour_ok for score in scores) >= 3, [(s.caption, r.reading) for s, r in zip(shapes, scores)]
    assert sum(score.shape_ok for score in scores) >= 3, [(s.caption, r.reading) for s, r in zip(shapes, scores)]
    times = [classify_time_of_day(image) for image in landscape_images]
    assert sum(t == s.time_of_day for t, s in zip(times, landscapes)) >= 3, list(zip([s.caption for s in landscapes], times))


def test_shipped_model_ignores_words_it_never_saw(shipped_pipeline) -> None:
    """Issue #19: "one blue circle" came out red. Unknown words must not carry colour, shape or time of day."""
    from app.training.evaluate import generate, held_out_prompts, robustness_prompts

    cases = [("one blue circle", "blue", "circle"), ("one green square", "green", "square"),
             ("a cute red triangle", "red", "triangle"), ("a painting of a purple circle, highly detailed", "purple", "circle")]
    cases = [case for case in cases for _ in range(2)]  # two seeds each
    images = generate(shipped_pipeline, [prompt for prompt, _, _ in cases], steps=20, guidance=7.5, seed=77)
    scores = [score_shape(image, ShapeScene(colour, shape, None, None)) for image, (_, colour, shape) in zip(images, cases)]
    assert sum(score.colour_ok for score in scores) >= 7, [score.reading for score in scores]

    shapes, _ = held_out_prompts(shape_count=4, landscape_count=0, seed=1234)
    noisy = robustness_prompts([s.caption for s in shapes], seed=1234)
    scores = [score_shape(image, scene) for image, scene in
              zip(generate(shipped_pipeline, noisy, steps=20, guidance=7.5, seed=1234), shapes)]
    assert sum(score.colour_ok for score in scores) >= 3, list(zip(noisy, [s.reading for s in scores]))


def test_shipped_model_draws_the_guide_prompts_at_sunset(shipped_pipeline) -> None:
    from app.training.evaluate import GUIDE_PROMPTS, generate

    images = generate(shipped_pipeline, [p for p in GUIDE_PROMPTS for _ in range(2)], steps=20, guidance=7.5, seed=5)
    assert [classify_time_of_day(image) for image in images] == ["sunset"] * 4


def test_an_unknown_objective_is_refused_before_any_work(tmp_path: Path) -> None:
    from app.training.train import TrainConfig

    with pytest.raises(ValueError, match="'distil'"):
        TrainConfig(run_dir=tmp_path, objective="distil")
    with pytest.raises(ValueError, match="with a base model"):
        TrainConfig(run_dir=tmp_path, objective="distill")


def test_fine_tune_from_a_pipeline_folder_with_caption_noise_resumes_exactly(tmp_path: Path) -> None:
    """``train --base-model FOLDER --caption-noise F --objective distill``: starts from the folder's weights, keeps its
    VAE, learns from the folder's model as teacher, resumes exactly."""
    from dataclasses import replace

    from diffusers import AutoencoderKL

    from app.training.train import export_pipeline, train

    train(_tiny_config(tmp_path / "base-run", unet_steps=2))
    base = tmp_path / "base-model"
    export_pipeline(tmp_path / "base-run", base, "tiny")

    def fine_tune(run_dir: Path, steps: int):
        return replace(_tiny_config(run_dir, steps), base_model=str(base), caption_noise=0.5, pool_size=24,
                       objective="distill")

    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    train(fine_tune(straight, 4))
    train(fine_tune(resumed, 2))
    train(fine_tune(resumed, 4))
    final_straight = torch.load(straight / "checkpoint.pt", weights_only=False)
    final_resumed = torch.load(resumed / "checkpoint.pt", weights_only=False)
    for part in ("unet", "text_encoder"):
        for name, tensor in final_straight[part].items():
            torch.testing.assert_close(final_resumed[part][name], tensor, msg=name)

    tuned = export_pipeline(straight, tmp_path / "tuned", "tiny")
    base_vae = AutoencoderKL.from_pretrained(base / "vae")
    assert tuned.vae.config.scaling_factor == base_vae.config.scaling_factor
    for name, tensor in base_vae.state_dict().items():
        assert torch.equal(tuned.vae.state_dict()[name], tensor), name
    base_unet = torch.load(tmp_path / "base-run" / "checkpoint.pt", weights_only=False)["ema_unet"]
    assert any(not torch.equal(final_straight["unet"][name], base_unet[name]) for name in base_unet)
