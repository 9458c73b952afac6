"""Command line: ``python -m app.training {train,export,evaluate} ...``.

    python -m app.training train --run-dir training-runs/main --seed 0
    python -m app.training export --run-dir training-runs/main --output assets/models/ai-artist-tiny
    python -m app.training evaluate --model assets/models/ai-artist-tiny --grid docs/images/embedded-model-grid.png

``train`` resumes from the checkpoint in ``--run-dir`` when there is one.
"""

from __future__ import annotations

import os

# Training shares two cores with other work: busy-waiting OpenMP threads make
# every step several times slower under contention, so they sleep instead.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse  # noqa: E402
import dataclasses  # noqa: E402
from pathlib import Path  # noqa: E402

from .train import TrainConfig  # noqa: E402

DEFAULT_MODEL = Path("assets/models/ai-artist-tiny")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m app.training", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)

    train = commands.add_parser("train", help="train (or resume) the VAE, then the UNet and text encoder")
    train.add_argument("--run-dir", type=Path, default=Path("training-runs/main"))
    for field in dataclasses.fields(TrainConfig):
        if field.name == "run_dir":
            continue
        train.add_argument(f"--{field.name.replace('_', '-')}", type=type(field.default), default=field.default)
    train.add_argument("--export", type=Path, default=None, help="write the pipeline folder here when done")

    export = commands.add_parser("export", help="write a StableDiffusionPipeline folder from a run's EMA weights")
    export.add_argument("--run-dir", type=Path, default=Path("training-runs/main"))
    export.add_argument("--size", default="full")
    export.add_argument("--output", type=Path, default=DEFAULT_MODEL)

    evaluate = commands.add_parser("evaluate", help="generate the held-out prompts, score them, write a grid")
    evaluate.add_argument("--model", type=Path, default=DEFAULT_MODEL)
    evaluate.add_argument("--grid", type=Path, default=Path("docs/images/embedded-model-grid.png"))
    evaluate.add_argument("--shape-prompts", type=int, default=60)
    evaluate.add_argument("--landscape-prompts", type=int, default=40)
    evaluate.add_argument("--steps", type=int, default=20)
    evaluate.add_argument("--guidance", type=float, default=7.5)
    evaluate.add_argument("--seed", type=int, default=1234)
    evaluate.add_argument("--device", default="cpu", help="cpu, cuda, mps (noise is drawn on the CPU either way)")
    return parser


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    if args.command == "train":
        from .train import export_pipeline, train

        values = {f.name: getattr(args, f.name) for f in dataclasses.fields(TrainConfig)}
        train(TrainConfig(**values))
        if args.export is not None:
            export_pipeline(args.run_dir, args.export, args.size)
    elif args.command == "export":
        from .train import export_pipeline

        export_pipeline(args.run_dir, args.output, args.size)
        print(f"wrote {args.output}")
    else:
        from .evaluate import run_evaluation

        run_evaluation(args.model, args.grid, args.shape_prompts, args.landscape_prompts,
                       args.steps, args.guidance, args.seed, args.device)


if __name__ == "__main__":
    main()
