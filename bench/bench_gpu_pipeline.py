"""Steps per second of an SD 1.5-sized pipeline on a GPU, bare and with the studio's live previews.

    python bench/bench_gpu_pipeline.py [--device cuda] [--steps 30] [--runs 3] [--json out.json]

No weights can be downloaded here, so the pipeline has the real SD 1.5
architecture (UNet 860 M parameters, VAE, 12-layer CLIP text encoder) with
random weights: the arithmetic, and so the speed, is that of the real model.
Measures, at 512x512, guidance 7.5, fp16:

1. the bare ``pipe(...)`` call;
2. the same with a ``callback_on_step_end`` that makes the linear latent->RGB
   preview and its JPEG at every step, as the server does with
   ``previews.min_interval_ms: 0``;
3. as 2 with a TAESD-sized ``AutoencoderTiny`` (random weights) for the preview.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
from diffusers import (
    AutoencoderKL,
    AutoencoderTiny,
    EulerDiscreteScheduler,
    StableDiffusionPipeline,
    UNet2DConditionModel,
)
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from app.pipeline.previews import PreviewDecoder, encode_jpeg  # noqa: E402

TOKENIZER = ROOT / "assets" / "models" / "ai-artist-tiny" / "tokenizer"


def sd15_pipeline(device: str, dtype: torch.dtype) -> StableDiffusionPipeline:
    """SD 1.5's component configs, randomly initialised on ``device``."""
    with torch.device(device):
        unet = UNet2DConditionModel(sample_size=64, cross_attention_dim=768, attention_head_dim=8)
        vae = AutoencoderKL(
            down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
            block_out_channels=(128, 256, 512, 512), layers_per_block=2, latent_channels=4, sample_size=512,
        )
        text_encoder = CLIPTextModel(CLIPTextConfig(
            vocab_size=49408, hidden_size=768, intermediate_size=3072, num_hidden_layers=12,
            num_attention_heads=12, max_position_embeddings=77, hidden_act="quick_gelu",
        ))
    tokenizer = CLIPTokenizer.from_pretrained(TOKENIZER, model_max_length=77)
    scheduler = EulerDiscreteScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                                       steps_offset=1)
    pipe = StableDiffusionPipeline(vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet,
                                   scheduler=scheduler, safety_checker=None, feature_extractor=None,
                                   requires_safety_checker=False)
    pipe.set_progress_bar_config(disable=True)
    return pipe.to(device=device, dtype=dtype)


def steps_per_second(pipe: StableDiffusionPipeline, steps: int, runs: int, decoder: PreviewDecoder | None,
                     device: str) -> dict[str, float]:
    preview_seconds: list[float] = []

    def on_step_end(pipeline, step: int, timestep, tensors: dict) -> dict:
        began = time.perf_counter()
        encode_jpeg(decoder.preview(tensors["latents"], pipe=pipeline, height=512, width=512), 256)
        preview_seconds.append(time.perf_counter() - began)
        return tensors

    def generate() -> float:
        if device == "cuda":
            torch.cuda.synchronize()
        began = time.perf_counter()
        pipe("a serene mountain landscape at sunset", num_inference_steps=steps, guidance_scale=7.5, height=512,
             width=512, generator=torch.Generator().manual_seed(0),
             callback_on_step_end=on_step_end if decoder else None)
        if device == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter() - began

    generate()  # warm-up
    preview_seconds.clear()
    seconds = statistics.median(generate() for _ in range(runs))
    result = {"seconds_per_image": seconds, "steps_per_second": steps / seconds}
    if preview_seconds:
        result["ms_per_preview"] = 1000 * statistics.median(preview_seconds)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    dtype = torch.float16 if args.device == "cuda" else torch.float32
    pipe = sd15_pipeline(args.device, dtype)
    results = {"device": torch.cuda.get_device_name() if args.device == "cuda" else args.device,
               "torch": torch.__version__, "dtype": str(dtype), "steps": args.steps, "size": "512x512"}
    results["bare"] = steps_per_second(pipe, args.steps, args.runs, None, args.device)
    print("bare", results["bare"], flush=True)
    results["linear_previews"] = steps_per_second(pipe, args.steps, args.runs, PreviewDecoder("sd"), args.device)
    print("linear previews", results["linear_previews"], flush=True)
    with tempfile.TemporaryDirectory() as taesd_dir:
        AutoencoderTiny().save_pretrained(taesd_dir)
        results["taesd_previews"] = steps_per_second(pipe, args.steps, args.runs, PreviewDecoder("sd", taesd_dir),
                                                     args.device)
    print("taesd previews", results["taesd_previews"], flush=True)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
