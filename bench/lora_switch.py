"""LoRA switch between jobs: changing the set of LoRAs a job applies (diffusers `set_adapters` on adapters
loaded once, app/pipeline/lora_adapters.py) against reloading the model.

Measured in a process of its own running the generation process's code (`ArtworkGenerator`, one torch
thread) on the bench model, with two LoRAs built offline for it (`app.testing.tiny_lora`, rank 4 on every
attention projection of the denoiser):

- first use of a LoRA: `load_lora_weights` from its file (once per LoRA and model);
- a switch between two loaded sets, {A} ↔ {A × 0.5, B × 0.8}, and back to none;
- reloading the model: `ArtworkGenerator.load_model()` (what a switch would cost if it reloaded);
- a job right after a switch ({A} → {B}) against a job with the same set as the one before ({A} → {A}),
  10 steps each.

    .venv/bin/python -m bench.lora_switch [--smoke] [--model PATH]
"""
from __future__ import annotations

import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

from .common import PROJECT_ROOT, Context, Row, median


def measure(model: str, work: Path, smoke: bool) -> dict[str, list[float]]:
    import torch

    from app.pipeline.generator import ArtworkGenerator
    from app.pipeline.lora_files import content_hash
    from app.pipeline.values import LoraRef
    from app.testing.tiny_lora import build_tiny_lora

    torch.set_num_threads(1)
    folder = work / "loras"
    refs = {}
    for name, seed in (("a", 1), ("b", 2)):
        path = build_tiny_lora(Path(model), folder / f"{name}.safetensors", seed=seed)
        refs[name] = content_hash(path)
    one = (LoraRef("a", refs["a"], 1.0),)
    two = (LoraRef("a", refs["a"], 0.5), LoraRef("b", refs["b"], 0.8))
    other = (LoraRef("b", refs["b"], 1.0),)  # as many adapters as `one`: a job with it costs the same per step
    generator = ArtworkGenerator(model, device="cpu", cpu_threads=1, lora_dir=folder)
    generator.load_model()
    assert generator.loras is not None
    found: dict[str, list[float]] = {"first_load": [], "switch": [], "to_none": [], "reload": [],
                                     "job_after_switch": [], "job_same_set": []}
    for loras in (one, two):
        began = time.perf_counter()
        generator.loras.activate(loras)
        found["first_load"].append(time.perf_counter() - began)
    for index in range(6 if smoke else 60):
        began = time.perf_counter()
        generator.loras.activate(one if index % 2 else two)
        found["switch"].append(time.perf_counter() - began)
    for index in range(4 if smoke else 40):
        began = time.perf_counter()
        generator.loras.activate(() if index % 2 == 0 else one)
        if index % 2 == 0:
            found["to_none"].append(time.perf_counter() - began)
    for _ in range(1 if smoke else 5):
        began = time.perf_counter()
        ArtworkGenerator(model, device="cpu", cpu_threads=1, lora_dir=folder).load_model()
        found["reload"].append(time.perf_counter() - began)
    steps = 4 if smoke else 10
    for index in range(2 if smoke else 12):  # pairs: (same set as before, switched set)
        for key, loras in (("job_same_set", one), ("job_after_switch", other)):
            generator.loras.activate(one)  # the previous job's set
            began = time.perf_counter()
            generator.generate("a red circle", num_inference_steps=steps, seed=index, loras=loras)
            found[key].append(time.perf_counter() - began)
    return found


def run(ctx: Context) -> list[Row]:
    work = ctx.work / "lora-switch"
    command = [sys.executable, "-m", "bench.lora_switch", "--measure", str(ctx.model), str(work)]
    if ctx.smoke:
        command.append("--smoke")
    result = subprocess.run(command, cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=1800)
    if result.returncode != 0:
        raise RuntimeError(result.stderr[-2000:])
    found = json.loads(result.stdout.strip().splitlines()[-1])
    switch_ms = median(found["switch"]) * 1000
    reload_s = median(found["reload"])
    extra = [(after - same) * 1000 for after, same in zip(found["job_after_switch"], found["job_same_set"])]
    ctx.note("lora_switch", "A process of its own with the generation process's code, one torch thread; two LoRAs of "
                            "rank 4 on every attention projection of the bench model's denoiser (built offline).")
    spread = f"p90 {statistics.quantiles(found['switch'], n=10)[-1] * 1000:.2f} ms" if len(found["switch"]) >= 10 else ""
    return [
        Row("lora switch", "first use of a LoRA (load_lora_weights from its file), median of 2", round(
            median(found["first_load"]) * 1000, 1), "ms"),
        Row("lora switch", "switch between two loaded LoRA sets (set_adapters), median", round(switch_ms, 2), "ms",
            note=f"{len(found['switch'])} switches; {spread}"),
        Row("lora switch", "back to no LoRA (disable_lora), median", round(median(found["to_none"]) * 1000, 2), "ms"),
        Row("lora switch", "reloading the model instead (load_model), median", round(reload_s, 3), "s",
            note=f"{len(found['reload'])} loads: " + ", ".join(f"{v:.2f}" for v in found["reload"])),
        Row("lora switch", "reload ÷ switch", round(reload_s * 1000 / switch_ms, 1), "×"),
        Row("lora switch", "a job right after a switch minus a job with the previous set (median of pairs)",
            round(median(extra), 1), "ms", note=f"{len(extra)} pairs of {4 if ctx.smoke else 10}-step jobs; "
            "pair differences " + ", ".join(f"{v:.0f}" for v in extra)),
    ]


if __name__ == "__main__":
    if sys.argv[1:2] == ["--measure"]:
        print(json.dumps(measure(sys.argv[2], Path(sys.argv[3]), "--smoke" in sys.argv[4:])))
    else:
        from .run import main

        sys.exit(main(["--only", "lora_switch", *sys.argv[1:]]))
