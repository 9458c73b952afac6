"""Seconds per image of the embedded model: 20 steps at guidance 7.5, one 64x64 image.

    python bench/bench_embedded_model.py [--model assets/models/ai-artist-tiny] [--runs 5]

Times the app's own path (``ArtworkGenerator.generate``, which applies the
CPU settings of ``app/cpu_speed.py``) and, for comparison, a plain pipeline
call with PyTorch's defaults, interleaved in one run: one warm-up each, then
the median (and min/max) of ``--runs`` timed calls each.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # don't busy-wait when the cores are shared

import argparse  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import torch  # noqa: E402
from diffusers import AutoPipelineForText2Image  # noqa: E402

DEFAULT_MODEL = Path(__file__).resolve().parent.parent / "assets" / "models" / "ai-artist-tiny"
PROMPTS = ("a red circle on a blue background", "a serene mountain landscape at sunset", "a starry night over the sea")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, default=DEFAULT_MODEL)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--guidance", type=float, default=7.5)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()

    from app.generator import ArtworkGenerator

    torch.set_num_threads(args.threads)
    pipeline = AutoPipelineForText2Image.from_pretrained(args.model, local_files_only=True)
    pipeline.set_progress_bar_config(disable=True)
    app_generator = ArtworkGenerator(model_id=str(args.model), device="cpu", dtype="float32", cpu_threads=args.threads)
    app_generator.load_model()

    def plain_call(index: int) -> float:
        began = time.perf_counter()
        with torch.inference_mode():
            image = pipeline(PROMPTS[index % len(PROMPTS)], num_inference_steps=args.steps,
                             guidance_scale=args.guidance, generator=torch.Generator().manual_seed(index)).images[0]
        assert image.size[0] >= 64 and image.size[1] >= 64
        return time.perf_counter() - began

    def app_call(index: int) -> float:
        began = time.perf_counter()
        image = app_generator.generate(PROMPTS[index % len(PROMPTS)], num_inference_steps=args.steps,
                                       guidance_scale=args.guidance, seed=index)[0]
        assert image.size[0] >= 64 and image.size[1] >= 64
        return time.perf_counter() - began

    plain_call(0), app_call(0)  # warm-up
    timings: dict[str, list[float]] = {"app (ArtworkGenerator, CPU settings of app/cpu_speed.py)": [],
                                       "plain pipeline call, PyTorch defaults": []}
    for index in range(args.runs):  # interleaved, so both see the same machine
        timings["app (ArtworkGenerator, CPU settings of app/cpu_speed.py)"].append(app_call(index + 1))
        timings["plain pipeline call, PyTorch defaults"].append(plain_call(index + 1))
    print(f"model: {args.model}")
    print(f"{args.steps} steps, guidance {args.guidance}, {args.threads} threads, {args.runs} runs each after a warm-up")
    for label, values in timings.items():
        print(f"{label}: seconds per image: median {statistics.median(values):.3f}  min {min(values):.3f}"
              f"  max {max(values):.3f}")


if __name__ == "__main__":
    main()
