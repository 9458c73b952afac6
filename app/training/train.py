"""Train the embedded model: first the VAE, then the UNet and text encoder.

Reproducible from a seed: every batch is drawn from a generator seeded with
``(seed, phase, step)``, so a resumed run sees the same data it would have
seen without the interruption. State is checkpointed atomically into the
run directory every ``checkpoint_every`` steps; rerunning the same command
continues from there. ``loss.csv`` logs every step.
"""

from __future__ import annotations

import csv
import math
import time
from copy import deepcopy
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from diffusers import AutoencoderKL, StableDiffusionPipeline
from tqdm import tqdm

from .models import SIZES, make_sampling_scheduler, make_text_encoder, make_training_scheduler, make_unet, make_vae
from .scenes import sample_training_example
from .tokenizer import build_tokenizer

VAE_PHASE, POOL_PHASE, UNET_PHASE = 1, 2, 3


@dataclass
class TrainConfig:
    run_dir: Path
    size: str = "full"
    seed: int = 0
    vae_steps: int = 1500
    vae_batch: int = 32
    vae_crop: int = 32  # the VAE is convolutional: train mostly on crops, the last fifth on whole images
    vae_lr: float = 1e-3
    pool_size: int = 24_000
    unet_steps: int = 6000
    unet_batch: int = 32
    unet_lr: float = 5e-4
    warmup_steps: int = 200
    caption_dropout: float = 0.1
    min_snr_gamma: float = 5.0
    ema_decay: float = 0.999
    checkpoint_every: int = 200
    decoder_steps: int = 0  # optional phase 4: fine-tune the VAE decoder alone
    threads: int = 2


def images_to_tensor(images: list[np.ndarray]) -> torch.Tensor:
    batch = torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).float()
    return batch / 127.5 - 1.0


def save_atomically(state: dict, path: Path) -> None:
    temporary = path.with_suffix(".tmp")
    torch.save(state, temporary)
    temporary.replace(path)


def resume_model_checkpoint(path: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> int:
    """Load a one-model phase's checkpoint ({model, optimizer, step}) if there is one; the step to go on from."""
    if not path.exists():
        return 0
    state = torch.load(path, weights_only=False)
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    return int(state["step"])


def cosine_lr(step: int, total: int, warmup: int, peak: float) -> float:
    if step < warmup:
        return peak * (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return peak * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * progress)))


class LossLog:
    def __init__(self, path: Path) -> None:
        self.path = path
        if not path.exists():
            path.write_text("phase,step,loss,lr,seconds\n")

    def write(self, phase: str, step: int, loss: float, lr: float, seconds: float) -> None:
        with self.path.open("a", newline="") as handle:
            csv.writer(handle).writerow([phase, step, f"{loss:.5f}", f"{lr:.6f}", f"{seconds:.3f}"])


def train_vae(config: TrainConfig, log: LossLog) -> AutoencoderKL:
    """Phase 1: reconstruction (L1 + MSE + L1 of 8x8-pooled colours) with a small KL term.

    The decoder sees the posterior mean, not a sample: at initialisation the
    posterior's standard deviation is about 1, and learning to shrink it
    first would cost most of a short run. Latents are used deterministically
    afterwards too.
    """
    final_path = config.run_dir / "vae"
    if (final_path / "config.json").exists():
        return AutoencoderKL.from_pretrained(final_path)
    torch.manual_seed(config.seed)
    vae = make_vae(SIZES[config.size])
    optimizer = torch.optim.AdamW(vae.parameters(), lr=config.vae_lr, weight_decay=0.0)
    checkpoint_path = config.run_dir / "vae_checkpoint.pt"
    start = resume_model_checkpoint(checkpoint_path, vae, optimizer)
    vae.train()
    progress = tqdm(range(start, config.vae_steps), desc="vae", initial=start, total=config.vae_steps, mininterval=20)
    for step in progress:
        began = time.time()
        rng = np.random.default_rng([config.seed, VAE_PHASE, step])
        whole_images = step >= config.vae_steps * 0.8
        batch_size = config.vae_batch // 4 if whole_images else config.vae_batch
        images = images_to_tensor([sample_training_example(rng)[0] for _ in range(batch_size)])
        if not whole_images:
            top, left = (int(v) for v in rng.integers(0, images.shape[-1] - config.vae_crop + 1, size=2))
            images = images[:, :, top:top + config.vae_crop, left:left + config.vae_crop]
        lr = cosine_lr(step, config.vae_steps, 50, config.vae_lr)
        for group in optimizer.param_groups:
            group["lr"] = lr
        posterior = vae.encode(images).latent_dist
        reconstruction = vae.decode(posterior.mode()).sample
        colour_loss = F.l1_loss(F.avg_pool2d(reconstruction, 8), F.avg_pool2d(images, 8))  # flat colours first
        loss = (F.l1_loss(reconstruction, images) + F.mse_loss(reconstruction, images) + 2.0 * colour_loss
                + 1e-6 * posterior.kl().mean())
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        log.write("vae", step, loss.item(), lr, time.time() - began)
        progress.set_postfix(loss=f"{loss.item():.4f}", refresh=False)
        if (step + 1) % config.checkpoint_every == 0:
            save_atomically({"model": vae.state_dict(), "optimizer": optimizer.state_dict(), "step": step + 1}, checkpoint_path)
    vae.eval()
    vae.save_pretrained(final_path)
    return vae


@torch.no_grad()
def build_latent_pool(config: TrainConfig, vae: AutoencoderKL) -> dict:
    """Phase 2: a fixed pool of captioned scenes encoded once by the frozen VAE.

    Sets the VAE's ``scaling_factor`` to 1/std of the latent means.
    """
    path = config.run_dir / "latent_pool.pt"
    if path.exists():
        pool = torch.load(path, weights_only=False)
        vae.register_to_config(scaling_factor=pool["scaling_factor"])
        return pool
    rng = np.random.default_rng([config.seed, POOL_PHASE])
    means, captions = [], []
    chunk = 128
    for _ in tqdm(range(0, config.pool_size, chunk), desc="latent pool", mininterval=20):
        examples = [sample_training_example(rng) for _ in range(chunk)]
        posterior = vae.encode(images_to_tensor([image for image, _ in examples])).latent_dist
        means.append(posterior.mean)
        captions.extend(caption for _, caption in examples)
    mean = torch.cat(means)[: config.pool_size]
    scaling_factor = float(1.0 / mean.std())
    pool = {"mean": mean, "captions": captions[: config.pool_size], "scaling_factor": scaling_factor}
    save_atomically(pool, path)
    vae.register_to_config(scaling_factor=scaling_factor)
    return pool


class ExponentialMovingAverage:
    def __init__(self, model: torch.nn.Module, decay: float) -> None:
        self.average = deepcopy(model).eval().requires_grad_(False)
        self.decay = decay

    @torch.no_grad()
    def update(self, model: torch.nn.Module, step: int) -> None:
        decay = min(self.decay, (1 + step) / (10 + step))
        for averaged, current in zip(self.average.parameters(), model.parameters()):
            averaged.lerp_(current, 1 - decay)


def train_diffusion(config: TrainConfig, vae: AutoencoderKL, pool: dict, log: LossLog) -> None:
    """Phase 3: UNet + text encoder, v-prediction, min-SNR weighting, caption dropout, EMA."""
    size = SIZES[config.size]
    tokenizer = build_tokenizer(config.run_dir / "tokenizer_files")
    torch.manual_seed(config.seed)
    unet, text_encoder = make_unet(size), make_text_encoder(size, tokenizer)
    ema_unet, ema_text = ExponentialMovingAverage(unet, config.ema_decay), ExponentialMovingAverage(text_encoder, config.ema_decay)
    parameters = [*unet.parameters(), *text_encoder.parameters()]
    optimizer = torch.optim.AdamW(parameters, lr=config.unet_lr, weight_decay=0.01)
    scheduler = make_training_scheduler()
    alphas_cumprod = scheduler.alphas_cumprod
    checkpoint_path = config.run_dir / "checkpoint.pt"
    start = 0
    if checkpoint_path.exists():
        state = torch.load(checkpoint_path, weights_only=False)
        unet.load_state_dict(state["unet"])
        text_encoder.load_state_dict(state["text_encoder"])
        ema_unet.average.load_state_dict(state["ema_unet"])
        ema_text.average.load_state_dict(state["ema_text_encoder"])
        optimizer.load_state_dict(state["optimizer"])
        start = state["step"]
    token_ids = tokenizer(pool["captions"], padding="max_length", max_length=tokenizer.model_max_length,
                          truncation=True, return_tensors="pt").input_ids
    empty_ids = tokenizer([""], padding="max_length", max_length=tokenizer.model_max_length, return_tensors="pt").input_ids
    scaling = pool["scaling_factor"]
    unet.train()
    text_encoder.train()
    progress = tqdm(range(start, config.unet_steps), desc="unet", initial=start, total=config.unet_steps, mininterval=20)
    for step in progress:
        began = time.time()
        rng = np.random.default_rng([config.seed, UNET_PHASE, step])
        generator = torch.Generator().manual_seed(int(rng.integers(0, 2**62)))
        index = torch.from_numpy(rng.integers(0, len(pool["captions"]), size=config.unet_batch))
        ids = token_ids[index].clone()
        dropped = torch.from_numpy(rng.random(config.unet_batch) < config.caption_dropout)
        ids[dropped] = empty_ids[0]
        latents = pool["mean"][index] * scaling
        noise = torch.randn(latents.shape, generator=generator)
        timesteps = torch.randint(0, scheduler.config.num_train_timesteps, (config.unet_batch,), generator=generator)
        noisy = scheduler.add_noise(latents, noise, timesteps)
        target = scheduler.get_velocity(latents, noise, timesteps)
        lr = cosine_lr(step, config.unet_steps, config.warmup_steps, config.unet_lr)
        for group in optimizer.param_groups:
            group["lr"] = lr
        prediction = unet(noisy, timesteps, text_encoder(ids)[0]).sample
        snr = alphas_cumprod[timesteps] / (1 - alphas_cumprod[timesteps])
        weights = torch.clamp(snr, max=config.min_snr_gamma) / (snr + 1)  # min-SNR-gamma for v-prediction
        loss = (weights * (prediction - target).pow(2).mean(dim=(1, 2, 3))).mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(parameters, 1.0)
        optimizer.step()
        ema_unet.update(unet, step)
        ema_text.update(text_encoder, step)
        log.write("unet", step, loss.item(), lr, time.time() - began)
        progress.set_postfix(loss=f"{loss.item():.4f}", refresh=False)
        if (step + 1) % config.checkpoint_every == 0 or step + 1 == config.unet_steps:
            save_atomically({
                "unet": unet.state_dict(), "text_encoder": text_encoder.state_dict(),
                "ema_unet": ema_unet.average.state_dict(), "ema_text_encoder": ema_text.average.state_dict(),
                "optimizer": optimizer.state_dict(), "step": step + 1, "config": asdict(config),
            }, checkpoint_path)


def export_pipeline(run_dir: Path, output_dir: Path, size_name: str = "full") -> StableDiffusionPipeline:
    """Write a standard StableDiffusionPipeline folder from the run's VAE and EMA weights."""
    size = SIZES[size_name]
    tuned = run_dir / "vae_decoder_tuned"  # written by decoder.finetune_decoder, same encoder
    vae = AutoencoderKL.from_pretrained(tuned if (tuned / "config.json").exists() else run_dir / "vae")
    pool_path = run_dir / "latent_pool.pt"
    vae.register_to_config(scaling_factor=torch.load(pool_path, weights_only=False)["scaling_factor"])
    tokenizer = build_tokenizer(run_dir / "tokenizer_files")
    state = torch.load(run_dir / "checkpoint.pt", weights_only=False)
    unet, text_encoder = make_unet(size), make_text_encoder(size, tokenizer)
    unet.load_state_dict(state["ema_unet"])
    text_encoder.load_state_dict(state["ema_text_encoder"])
    pipeline = StableDiffusionPipeline(
        vae=vae.eval(), text_encoder=text_encoder.eval(), tokenizer=tokenizer, unet=unet.eval(),
        scheduler=make_sampling_scheduler(), safety_checker=None, feature_extractor=None, requires_safety_checker=False,
    )
    pipeline.save_pretrained(output_dir, safe_serialization=True)
    return pipeline


def train(config: TrainConfig) -> None:
    torch.set_num_threads(config.threads)
    torch.set_flush_denormal(True)
    config.run_dir.mkdir(parents=True, exist_ok=True)
    log = LossLog(config.run_dir / "loss.csv")
    vae = train_vae(config, log).requires_grad_(False)
    pool = build_latent_pool(config, vae)
    train_diffusion(config, vae, pool, log)
    if config.decoder_steps > 0:
        from .decoder import finetune_decoder

        finetune_decoder(config, config.decoder_steps)
