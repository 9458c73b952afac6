"""Evaluate a pipeline folder on held-out prompts with the scene scorers.

Generates every prompt (captions never seen in training, see
``scenes.is_held_out``), scores colour and shape for shape prompts and time
of day for landscape prompts, prints the figures and writes a labelled grid.
The robustness set scores the same prompts again with two words inserted
that no training caption contains (``unseen_words.txt``), and the guide's own
prompts are checked for a sunset sky.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from diffusers import AutoPipelineForText2Image, DiffusionPipeline
from PIL import Image, ImageDraw

from .caption_noise import insert_unseen_words
from .scenes import LandscapeScene, ShapeScene, all_landscape_scenes, all_shape_scenes, is_held_out
from .scoring import classify_time_of_day, score_shape

SHOWCASE_PROMPTS = (
    "a red circle", "a blue square on a yellow background", "a green triangle in the top left",
    "a serene mountain landscape at sunset", "a starry night over the sea", "a forest by a lake at dawn",
    "one blue circle", "A beautiful sunset",
)
GUIDE_PROMPTS = ("A serene mountain landscape at sunset", "A beautiful sunset")  # the WebSocket guide's own
GUIDE_SEEDS = 4
BATCH = 8


def held_out_prompts(shape_count: int, landscape_count: int, seed: int) -> tuple[list[ShapeScene], list[LandscapeScene]]:
    rng = np.random.default_rng(seed)
    shapes = sorted({s.caption: s for s in all_shape_scenes() if is_held_out(s.caption)}.values(), key=lambda s: s.caption)
    landscapes = sorted({s.caption: s for s in all_landscape_scenes() if is_held_out(s.caption)}.values(),
                        key=lambda s: s.caption)
    chosen_shapes = [shapes[i] for i in rng.permutation(len(shapes))[:shape_count]]
    chosen_landscapes = [landscapes[i % len(landscapes)] for i in range(landscape_count)]
    return chosen_shapes, chosen_landscapes


def load_pipeline(model: Path, device: str = "cpu") -> DiffusionPipeline:
    pipeline = AutoPipelineForText2Image.from_pretrained(model, local_files_only=True).to(device)
    pipeline.set_progress_bar_config(disable=True)
    return pipeline


@torch.inference_mode()
def generate(pipeline: DiffusionPipeline, prompts: list[str], steps: int, guidance: float, seed: int) -> list[np.ndarray]:
    images: list[np.ndarray] = []
    for start in range(0, len(prompts), BATCH):
        chunk = prompts[start:start + BATCH]
        generators = [torch.Generator().manual_seed(seed + start + i) for i in range(len(chunk))]
        output = pipeline(chunk, num_inference_steps=steps, guidance_scale=guidance, generator=generators, output_type="np")
        images.extend((np.clip(image, 0, 1) * 255).round().astype(np.uint8) for image in output.images)
    return images


def write_grid(images: list[np.ndarray], captions: list[str], path: Path, columns: int = 8, scale: int = 2) -> None:
    cell = images[0].shape[0] * scale
    label_height = 26
    rows = (len(images) + columns - 1) // columns
    grid = Image.new("RGB", (columns * cell, rows * (cell + label_height)), "white")
    draw = ImageDraw.Draw(grid)
    for index, (image, caption) in enumerate(zip(images, captions)):
        x, y = (index % columns) * cell, (index // columns) * (cell + label_height)
        grid.paste(Image.fromarray(image).resize((cell, cell), Image.NEAREST), (x, y))
        words, lines = caption.split(), [""]
        for word in words:
            if len(lines[-1]) + len(word) + 1 > cell // 6:
                lines.append("")
            lines[-1] = f"{lines[-1]} {word}".strip()
        draw.multiline_text((x + 2, y + cell + 1), "\n".join(lines[:2]), fill="black", spacing=1)
    path.parent.mkdir(parents=True, exist_ok=True)
    grid.save(path)


@dataclass(frozen=True)
class SetScores:
    """One prompt set's figures, as fractions."""

    colour_accuracy: float
    shape_accuracy: float
    position_accuracy: float
    time_of_day_accuracy: float
    shape_prompts: int
    landscape_prompts: int


@dataclass(frozen=True)
class EvaluationResult(SetScores):
    seconds_per_image: float
    robust: SetScores  # the same prompts with two unseen words inserted into each
    guide_sunsets: int  # of GUIDE_SEEDS images per guide prompt, how many have a sunset sky
    guide_images: int


def robustness_prompts(captions: list[str], seed: int) -> list[str]:
    """``captions`` with two evaluation-only words (``unseen_words.txt``) inserted into each, reproducibly."""
    rng = np.random.default_rng([seed, 19])
    return [insert_unseen_words(caption, rng) for caption in captions]


def score_set(pipeline: DiffusionPipeline, shapes: list[ShapeScene], shape_prompts: list[str],
              landscapes: list[LandscapeScene], landscape_prompts: list[str], steps: int, guidance: float,
              seed: int) -> tuple[SetScores, list[np.ndarray], list[np.ndarray]]:
    """Generate ``*_prompts`` and score each image against its scene; the figures and the images."""
    shape_images = generate(pipeline, shape_prompts, steps, guidance, seed)
    landscape_images = generate(pipeline, landscape_prompts, steps, guidance, seed + 10_000)
    shape_scores = [score_shape(image, scene) for image, scene in zip(shape_images, shapes)]
    times = [classify_time_of_day(image) for image in landscape_images]
    positioned = [score.position_ok for score in shape_scores if score.position_ok is not None]
    for prompt, score in zip(shape_prompts, shape_scores):
        if not (score.colour_ok and score.shape_ok):
            print(f"  miss: {prompt!r} -> {score.reading.colour} {score.reading.shape}")
    for prompt, scene, time_of_day in zip(landscape_prompts, landscapes, times):
        if time_of_day != scene.time_of_day:
            print(f"  miss: {prompt!r} -> {time_of_day}")
    scores = SetScores(
        colour_accuracy=float(np.mean([s.colour_ok for s in shape_scores])) if shapes else 0.0,
        shape_accuracy=float(np.mean([s.shape_ok for s in shape_scores])) if shapes else 0.0,
        position_accuracy=float(np.mean(positioned)) if positioned else 0.0,
        time_of_day_accuracy=float(np.mean([t == s.time_of_day for t, s in zip(times, landscapes)])) if landscapes else 0.0,
        shape_prompts=len(shapes), landscape_prompts=len(landscapes),
    )
    print(f"shape prompts: {scores.shape_prompts}  colour {scores.colour_accuracy:.1%}  shape {scores.shape_accuracy:.1%}"
          f"  position {scores.position_accuracy:.1%} (of {len(positioned)} with a position)")
    print(f"landscape prompts: {scores.landscape_prompts}  time of day {scores.time_of_day_accuracy:.1%}")
    return scores, shape_images, landscape_images


def count_guide_sunsets(pipeline: DiffusionPipeline, steps: int, guidance: float, seed: int) -> int:
    prompts = [prompt for prompt in GUIDE_PROMPTS for _ in range(GUIDE_SEEDS)]
    images = generate(pipeline, prompts, steps, guidance, seed)
    times = [classify_time_of_day(image) for image in images]
    print(f"guide prompts {GUIDE_PROMPTS}: {times}")
    return sum(time_of_day == "sunset" for time_of_day in times)


def run_evaluation(model: Path, grid: Path | None, shape_count: int, landscape_count: int,
                   steps: int, guidance: float, seed: int, device: str = "cpu") -> EvaluationResult:
    torch.set_num_threads(2)
    pipeline = load_pipeline(model, device)
    shapes, landscapes = held_out_prompts(shape_count, landscape_count, seed)
    shape_captions, landscape_captions = [s.caption for s in shapes], [s.caption for s in landscapes]
    print("held-out prompts:")
    began = time.time()
    clean, shape_images, landscape_images = score_set(pipeline, shapes, shape_captions, landscapes, landscape_captions,
                                                      steps, guidance, seed)
    seconds_per_image = (time.time() - began) / max(1, len(shapes) + len(landscapes))
    print("held-out prompts with two unseen words inserted:")
    robust_shape_prompts = robustness_prompts(shape_captions, seed)
    robust_landscape_prompts = robustness_prompts(landscape_captions, seed + 1)
    robust, robust_shapes, robust_landscapes = score_set(pipeline, shapes, robust_shape_prompts, landscapes,
                                                         robust_landscape_prompts, steps, guidance, seed)
    guide_sunsets = count_guide_sunsets(pipeline, steps, guidance, seed + 30_000)
    result = EvaluationResult(**asdict(clean), seconds_per_image=seconds_per_image, robust=robust,
                              guide_sunsets=guide_sunsets, guide_images=len(GUIDE_PROMPTS) * GUIDE_SEEDS)
    print(f"generation: {result.seconds_per_image:.2f} s/image in batches of {BATCH} ({steps} steps, guidance {guidance})")
    if grid is not None:
        showcase = generate(pipeline, list(SHOWCASE_PROMPTS), steps, guidance, seed + 20_000)
        images = [*showcase, *shape_images[:16], *robust_shapes[:8], *landscape_images[:12], *robust_landscapes[:4]]
        captions = [*SHOWCASE_PROMPTS, *shape_captions[:16], *robust_shape_prompts[:8], *landscape_captions[:12],
                    *robust_landscape_prompts[:4]]
        write_grid(images, captions, grid)
        print(f"grid: {grid}")
    return result
