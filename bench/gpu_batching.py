"""Batching and previews on a GPU, through the app's own generation path (issue #18's GPU figures).

    python -m bench.gpu_batching [--device cuda] [--dtype float16] [--size 512] [--steps 30] [--json out.json]
    python -m bench.gpu_batching --model assets/models/ai-artist-tiny --device cpu --size 64 --steps 4  # smoke

Without `--model` it builds the SD 1.5 architecture with random weights (bench/bench_gpu_pipeline.py:
the arithmetic, and so the speed, of the real model; nothing is downloaded) and saves it to a temporary
folder, then loads it with `ArtworkGenerator`, as the generation process does. Measures, interleaved:

1. images per minute: 8 prompts as 8 calls, as 2 calls of 4 rows and as one call of 8 rows (the rows of a
   batch of jobs, app/pipeline/batch_run.py);
2. the cost of live previews at every step: one job through `run_job` with someone watching (the preview
   read back on a side CUDA stream, app/pipeline/preview_offload.py) vs nobody watching (no previews),
   steps per second of each, the pipe to the "server" drained by a thread as the server does.

Prints one JSON object (also written to `--json`): figures for docs/batching.md and docs/benchmarks.md.
"""
from __future__ import annotations

import argparse
import json
import multiprocessing
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from app.config import PreviewSettings
from app.pipeline.generator import ArtworkGenerator
from app.pipeline.messages import JobFinished, JobSpec, PreviewReady
from app.pipeline.process import Channel, run_job

PROMPT = "a lighthouse at sunset, oil painting"
EVERY_STEP = PreviewSettings(min_interval_ms=0)


def build_sd15(folder: Path, device: str, dtype_name: str) -> Path:
    import torch

    from bench.bench_gpu_pipeline import sd15_pipeline

    dtype = torch.float16 if dtype_name == "float16" else torch.float32
    pipeline = sd15_pipeline(device, dtype)
    pipeline.save_pretrained(folder)
    del pipeline
    return folder


def synchronized(device: str) -> None:
    if device.startswith("cuda"):
        import torch

        torch.cuda.synchronize()


def timed_calls(generator: ArtworkGenerator, args: argparse.Namespace, per_call: int, images: int) -> float:
    """Seconds for `images` images as calls of `per_call` rows each."""
    synchronized(args.device)
    began = time.perf_counter()
    for start in range(0, images, per_call):
        rows = [(f"{PROMPT}, variation {index}", "", index) for index in range(start, start + per_call)]
        generator.generate("", rows=rows, num_inference_steps=args.steps, width=args.size, height=args.size)
    synchronized(args.device)
    return time.perf_counter() - began


def job_seconds(generator: ArtworkGenerator, args: argparse.Namespace, folder: Path,
                watched: bool) -> tuple[float, int]:
    """(seconds of the pipeline call, previews sent) for one job run as the generation process runs it."""
    ours, theirs = multiprocessing.Pipe()
    previews = 0

    def drain() -> None:
        nonlocal previews
        while True:
            message = ours.recv()
            if message is None:
                return
            previews += isinstance(message, PreviewReady)

    reader = threading.Thread(target=drain, daemon=True)
    reader.start()
    job = JobSpec(
        session_id=f"job-{time.monotonic_ns()}", prompt=PROMPT, negative_prompt="", num_inference_steps=args.steps,
        guidance_scale=7.5, num_images=1, seed=1, width=args.size, height=args.size, scheduler=None,
        previews=EVERY_STEP, images_dir=str(folder), previews_watched=watched,
    )
    outcome = run_job(generator, job, Channel(theirs))
    theirs.send(None)
    reader.join()
    assert isinstance(outcome, JobFinished), outcome
    return outcome.left_at - outcome.entered_at, previews


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="a pipeline folder (default: SD 1.5 architecture, random weights)")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--dtype", default="float16")
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory() as work:
        folder = Path(args.model) if args.model else build_sd15(Path(work) / "sd15-random", args.device, args.dtype)
        generator = ArtworkGenerator(str(folder), device=args.device, dtype=args.dtype)
        generator.load_model()
        timed_calls(generator, args, 8, 8)  # warm-up: kernels, allocator, the batch's shapes
        timed_calls(generator, args, 1, 1)
        seconds: dict[str, list[float]] = {"8 calls of 1": [], "2 calls of 4": [], "1 call of 8": []}
        job: dict[str, list[float]] = {"previews watched": [], "nobody watching": []}
        previews_sent = 0
        for _ in range(args.rounds):
            seconds["8 calls of 1"].append(timed_calls(generator, args, 1, 8))
            seconds["2 calls of 4"].append(timed_calls(generator, args, 4, 8))
            seconds["1 call of 8"].append(timed_calls(generator, args, 8, 8))
            watched, previews_sent = job_seconds(generator, args, Path(work), watched=True)
            job["previews watched"].append(watched)
            job["nobody watching"].append(job_seconds(generator, args, Path(work), watched=False)[0])

    best = {name: min(values) for name, values in seconds.items()}
    watched, unwatched = statistics.median(job["previews watched"]), statistics.median(job["nobody watching"])
    result = {
        "model": args.model or "SD 1.5 architecture, random weights",
        "device": args.device, "dtype": args.dtype, "size": args.size, "steps": args.steps, "rounds": args.rounds,
        "images_per_minute": {name: round(8 * 60 / value, 1) for name, value in best.items()},
        "batch_of_8_gain": round(best["8 calls of 1"] / best["1 call of 8"], 2),
        "batch_of_4_gain": round(best["8 calls of 1"] / best["2 calls of 4"], 2),
        "job_seconds": {name: [round(value, 3) for value in values] for name, values in job.items()},
        "steps_per_second": {"previews watched": round(args.steps / watched, 2),
                             "nobody watching": round(args.steps / unwatched, 2)},
        "preview_cost_percent": round(100 * (watched / unwatched - 1), 1),
        "previews_per_watched_job": previews_sent,
    }
    text = json.dumps(result, indent=2)
    print(text)
    if args.json:
        args.json.write_text(text + "\n")
    return result


if __name__ == "__main__":
    main(sys.argv[1:])
