"""Train the embedded model: first the VAE, then the UNet and text encoder.

Reproducible from a seed: every batch is drawn from a generator seeded with
``(seed, phase, step)`` (``batches.py``), so a resumed run sees the same data
it would have seen without the interruption, on any number of data workers.
State is checkpointed atomically into the run directory every
``checkpoint_every`` steps; rerunning the same command continues from there.
``loss.csv`` logs every step.

``--device cuda`` trains on a GPU; ``--vae-minutes`` / ``--unet-minutes``
fit a phase's step count to a wall-clock budget, timed on throwaway copies
of the models before the phase starts. The chosen count is printed and kept
in the checkpoint, and passing it as ``--unet-steps`` reproduces the run.

Longer than 300 lines on purpose: both phases' loops and their checkpointing, read as one run.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from copy import deepcopy
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from diffusers import AutoencoderKL, StableDiffusionPipeline
from tqdm import tqdm

from .batches import VAE_PHASE, NoiseBatches, PoolChunks, SceneBatches, load
from .caption_noise import CaptionNoiser
from .finetune import Teacher, load_base_models, load_base_vae
from .loss_log import LossLog
from .models import SIZES, make_sampling_scheduler, make_text_encoder, make_training_scheduler, make_unet, make_vae
from .tokenizer import build_tokenizer


@dataclass
class TrainConfig:
    run_dir: Path
    size: str = "full"
    seed: int = 0
    vae_steps: int = 1500
    vae_batch: int = 32
    vae_crop: int = 32  # the VAE is convolutional: train mostly on crops, the last fifth on whole images; 0: whole only
    vae_lr: float = 1e-3
    vae_minutes: float = 0.0  # > 0: fit the VAE's step count to this budget instead of vae_steps
    pool_size: int = 24_000
    unet_steps: int = 6000
    unet_batch: int = 32
    unet_lr: float = 5e-4
    unet_minutes: float = 0.0  # > 0: fit the UNet's step count to this budget instead of unet_steps
    warmup_steps: int = 200
    caption_dropout: float = 0.1
    min_snr_gamma: float = 5.0
    ema_decay: float = 0.999
    checkpoint_every: int = 200
    decoder_steps: int = 0  # optional phase 4: fine-tune the VAE decoder alone
    threads: int = 2
    device: str = "cpu"
    data_workers: int = 0
    base_model: str = ""  # a pipeline folder: fine-tune its UNet and text encoder, keep its VAE (finetune.py)
    caption_noise: float = 0.0  # fraction of captions given unseen-word noise (caption_noise.py)
    objective: str = "diffusion"  # or "distill": match the base model's output for the clean caption (finetune.py)

    def __post_init__(self) -> None:  # checked before the VAE and latent-pool phases spend minutes
        if self.objective not in ("diffusion", "distill") or (self.objective == "distill" and not self.base_model):
            raise ValueError(f"objective {self.objective!r}: use 'diffusion', or 'distill' with a base model")


def save_atomically(state: dict, path: Path) -> None:
    temporary = path.with_suffix(".tmp")
    torch.save(state, temporary)
    temporary.replace(path)


def cpu_state(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {name: tensor.detach().cpu() for name, tensor in module.state_dict().items()}


def resume_model_checkpoint(path: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> dict:
    """Load a one-model phase's checkpoint ({model, optimizer, step, ...}) if there is one; its state, else {}."""
    if not path.exists():
        return {}
    state = torch.load(path, weights_only=False, map_location="cpu")
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    return state


def cosine_lr(step: int, total: int, warmup: int, peak: float) -> float:
    if step < warmup:
        return peak * (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return peak * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * progress)))


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = lr


def make_optimizer(parameters: list[torch.nn.Parameter], lr: float, weight_decay: float,
                   device: torch.device) -> torch.optim.Optimizer:
    return torch.optim.AdamW(parameters, lr=lr, weight_decay=weight_decay, fused=device.type == "cuda")


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def steps_for_budget(minutes: float, run_step: Callable[[int], None], device: torch.device,
                     warmup: int = 10, timed: int = 50) -> int:
    """How many steps fit in ``minutes``, timed on ``warmup + timed`` calls of ``run_step(i)``."""
    for index in range(warmup):
        run_step(index)
    synchronize(device)
    began = time.perf_counter()
    for index in range(warmup, warmup + timed):
        run_step(index)
    synchronize(device)
    seconds = (time.perf_counter() - began) / timed
    steps = max(1, int(minutes * 60 / seconds))
    print(f"{seconds * 1000:.1f} ms per step: {steps} steps fit in {minutes:g} min", flush=True)
    return steps


def reconstruction_loss(reconstruction: torch.Tensor, images: torch.Tensor) -> torch.Tensor:
    """L1 + MSE + L1 of 8x8-pooled colours (flat colours first)."""
    colour_loss = F.l1_loss(F.avg_pool2d(reconstruction, 8), F.avg_pool2d(images, 8))
    return F.l1_loss(reconstruction, images) + F.mse_loss(reconstruction, images) + 2.0 * colour_loss


def vae_loss(vae: AutoencoderKL, images: torch.Tensor) -> torch.Tensor:
    """Reconstruction with a small KL term, decoding the posterior mean."""
    posterior = vae.encode(images).latent_dist
    reconstruction = vae.decode(posterior.mode()).sample
    return reconstruction_loss(reconstruction, images) + 1e-6 * posterior.kl().mean()


def train_vae(config: TrainConfig, log: LossLog) -> AutoencoderKL:
    """Phase 1: the VAE.

    The decoder sees the posterior mean, not a sample: at initialisation the
    posterior's standard deviation is about 1, and learning to shrink it
    first would cost most of a short run. Latents are used deterministically
    afterwards too.
    """
    device = torch.device(config.device)
    final_path = config.run_dir / "vae"
    if (final_path / "config.json").exists():
        return AutoencoderKL.from_pretrained(final_path).to(device)
    if config.base_model:
        vae = load_base_vae(Path(config.base_model))
        vae.save_pretrained(final_path)
        return vae.to(device)
    torch.manual_seed(config.seed)
    vae = make_vae(SIZES[config.size])
    optimizer = make_optimizer(list(vae.parameters()), config.vae_lr, 0.0, device)
    checkpoint_path = config.run_dir / "vae_checkpoint.pt"
    state = resume_model_checkpoint(checkpoint_path, vae, optimizer)
    start = int(state.get("step", 0))
    vae.to(device).train()
    crop = config.vae_crop or None
    total = state.get("total_steps", config.vae_steps)
    if config.vae_minutes > 0 and not start:
        probe_vae = deepcopy(vae)
        probe_optimizer = make_optimizer(list(probe_vae.parameters()), config.vae_lr, 0.0, device)
        probe_batches = iter(load(SceneBatches(config.seed, VAE_PHASE, 0, 10**9, config.vae_batch, crop),
                                  config.data_workers, device))

        def probe_step(_: int) -> None:
            probe_optimizer.zero_grad(set_to_none=True)
            vae_loss(probe_vae, images_to_device(next(probe_batches), device)).backward()
            probe_optimizer.step()

        total = steps_for_budget(config.vae_minutes, probe_step, device)
        del probe_vae, probe_optimizer, probe_batches
    batches = load(SceneBatches(config.seed, VAE_PHASE, start, total, config.vae_batch, crop), config.data_workers, device)
    progress = tqdm(zip(range(start, total), batches), desc="vae", initial=start, total=total, mininterval=20)
    began = time.time()
    for step, images in progress:
        lr = cosine_lr(step, total, 50, config.vae_lr)
        set_lr(optimizer, lr)
        loss = vae_loss(vae, images_to_device(images, device))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        log.write("vae", step, loss, lr, time.time() - began)
        began = time.time()
        if (step + 1) % config.checkpoint_every == 0:
            save_atomically({"model": cpu_state(vae), "optimizer": optimizer.state_dict(), "step": step + 1,
                             "total_steps": total}, checkpoint_path)
            progress.set_postfix(loss=log.flush(), refresh=False)
    log.flush()
    vae.eval()
    vae.save_pretrained(final_path)
    return vae


def images_to_device(images: torch.Tensor, device: torch.device) -> torch.Tensor:
    """uint8 NHWC from a loader -> float NCHW in [-1, 1] on ``device``."""
    return images.to(device, non_blocking=True).permute(0, 3, 1, 2).float() / 127.5 - 1.0


@torch.no_grad()
def build_latent_pool(config: TrainConfig, vae: AutoencoderKL) -> dict:
    """Phase 2: a fixed pool of captioned scenes encoded once by the frozen VAE.

    Sets the VAE's ``scaling_factor`` to 1/std of the latent means, unless the VAE is a base model's.
    """
    path = config.run_dir / "latent_pool.pt"
    if path.exists():
        pool = torch.load(path, weights_only=False, map_location="cpu")
        vae.register_to_config(scaling_factor=pool["scaling_factor"])
        return pool
    device = torch.device(config.device)
    means, captions = [], []
    chunks = load(PoolChunks(config.seed, config.pool_size, chunk=128), config.data_workers, device)
    for images, chunk_captions in tqdm(chunks, desc="latent pool", mininterval=20):
        means.append(vae.encode(images_to_device(images, device)).latent_dist.mean.cpu())
        captions.extend(chunk_captions)
    mean = torch.cat(means)
    scaling_factor = float(vae.config.scaling_factor if config.base_model else 1.0 / mean.std())
    pool = {"mean": mean, "captions": captions, "scaling_factor": scaling_factor}
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
        torch._foreach_lerp_(list(self.average.parameters()), list(model.parameters()), 1 - decay)


class DiffusionTrainer:
    """Phase 3: UNet + text encoder, v-prediction, min-SNR weighting, caption dropout, EMA."""

    def __init__(self, config: TrainConfig, pool: dict) -> None:
        self.config = config
        self.device = device = torch.device(config.device)
        size = SIZES[config.size]
        self.tokenizer = tokenizer = build_tokenizer(config.run_dir / "tokenizer_files")
        torch.manual_seed(config.seed)
        if config.base_model:
            unet, text_encoder = load_base_models(Path(config.base_model), size, tokenizer)
        else:
            unet, text_encoder = make_unet(size), make_text_encoder(size, tokenizer)
        self.unet, self.text_encoder = unet.to(device), text_encoder.to(device)
        self.noiser = CaptionNoiser(pool["captions"], tokenizer, config.caption_noise) if config.caption_noise else None
        self.teacher = Teacher(Path(config.base_model), device) if config.objective == "distill" else None
        self.scheduler = make_training_scheduler()
        self.alphas_cumprod = self.scheduler.alphas_cumprod.to(device)
        distinct = sorted(set(pool["captions"]))  # a few thousand captions repeat across the pool
        distinct_ids = tokenizer(distinct, padding="max_length", max_length=tokenizer.model_max_length,
                                 truncation=True, return_tensors="pt").input_ids
        row = {caption: index for index, caption in enumerate(distinct)}
        self.token_ids = distinct_ids[torch.tensor([row[caption] for caption in pool["captions"]])].to(device)
        self.empty_ids = tokenizer([""], padding="max_length", max_length=tokenizer.model_max_length,
                                   return_tensors="pt").input_ids.to(device)
        self.latents = (pool["mean"] * pool["scaling_factor"]).to(device)

    def parameters(self, unet: torch.nn.Module, text_encoder: torch.nn.Module) -> list[torch.nn.Parameter]:
        return [*unet.parameters(), *text_encoder.parameters()]

    def loss(self, unet: torch.nn.Module, text_encoder: torch.nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        batch = {name: tensor.to(self.device, non_blocking=True) for name, tensor in batch.items()}
        clean_ids = torch.where(batch["dropped"][:, None], self.empty_ids, self.token_ids[batch["index"]])
        ids = torch.where(batch["dropped"][:, None], self.empty_ids, batch["ids"]) if "ids" in batch else clean_ids
        latents, noise, timesteps = self.latents[batch["index"]], batch["noise"], batch["timesteps"]
        noisy = self.scheduler.add_noise(latents, noise, timesteps)
        if self.teacher is not None:
            target = self.teacher.velocity(noisy, timesteps, clean_ids)
        else:
            target = self.scheduler.get_velocity(latents, noise, timesteps)
        prediction = unet(noisy, timesteps, text_encoder(ids)[0]).sample
        errors = (prediction - target).pow(2).mean(dim=(1, 2, 3))
        if self.teacher is not None:
            return errors.mean()  # unweighted: the noisiest steps, where colours and sky are decided, count fully
        snr = self.alphas_cumprod[timesteps] / (1 - self.alphas_cumprod[timesteps])
        weights = torch.clamp(snr, max=self.config.min_snr_gamma) / (snr + 1)  # min-SNR-gamma for v-prediction
        return (weights * errors).mean()

    def step(self, unet: torch.nn.Module, text_encoder: torch.nn.Module, optimizer: torch.optim.Optimizer,
             batch: dict[str, torch.Tensor]) -> torch.Tensor:
        loss = self.loss(unet, text_encoder, batch)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.parameters(unet, text_encoder), 1.0, foreach=True)
        optimizer.step()
        return loss

    def batches(self, first_step: int, total_steps: int) -> NoiseBatches:
        config = self.config
        return NoiseBatches(config.seed, first_step, total_steps, config.unet_batch, len(self.latents),
                            config.caption_dropout, self.scheduler.config.num_train_timesteps,
                            tuple(self.latents.shape[1:]), self.noiser)

    def planned_steps(self) -> int:
        """The step count that fits ``unet_minutes``, timed on copies of the models."""
        unet, text_encoder = deepcopy(self.unet), deepcopy(self.text_encoder)
        optimizer = make_optimizer(self.parameters(unet, text_encoder), self.config.unet_lr, 0.01, self.device)
        probe_batches = iter(load(self.batches(0, 10**9), self.config.data_workers, self.device))
        return steps_for_budget(self.config.unet_minutes,
                                lambda _: self.step(unet, text_encoder, optimizer, next(probe_batches)), self.device)

    def train(self, log: LossLog) -> None:
        config, device = self.config, self.device
        unet, text_encoder = self.unet, self.text_encoder
        ema_unet, ema_text = ExponentialMovingAverage(unet, config.ema_decay), ExponentialMovingAverage(text_encoder, config.ema_decay)
        optimizer = make_optimizer(self.parameters(unet, text_encoder), config.unet_lr, 0.01, device)
        checkpoint_path = config.run_dir / "checkpoint.pt"
        start, total = 0, config.unet_steps
        if checkpoint_path.exists():
            state = torch.load(checkpoint_path, weights_only=False, map_location="cpu")
            unet.load_state_dict(state["unet"])
            text_encoder.load_state_dict(state["text_encoder"])
            ema_unet.average.load_state_dict(state["ema_unet"])
            ema_text.average.load_state_dict(state["ema_text_encoder"])
            optimizer.load_state_dict(state["optimizer"])
            start = state["step"]
            total = state.get("total_steps", total) if config.unet_minutes > 0 else total
        elif config.unet_minutes > 0:
            total = self.planned_steps()
        unet.train()
        text_encoder.train()
        batches = load(self.batches(start, total), config.data_workers, device)
        progress = tqdm(zip(range(start, total), batches), desc="unet", initial=start, total=total, mininterval=20)
        began = time.time()
        for step, batch in progress:
            lr = cosine_lr(step, total, config.warmup_steps, config.unet_lr)
            set_lr(optimizer, lr)
            loss = self.step(unet, text_encoder, optimizer, batch)
            ema_unet.update(unet, step)
            ema_text.update(text_encoder, step)
            log.write("unet", step, loss, lr, time.time() - began)
            began = time.time()
            if (step + 1) % config.checkpoint_every == 0 or step + 1 == total:
                save_atomically({
                    "unet": cpu_state(unet), "text_encoder": cpu_state(text_encoder),
                    "ema_unet": cpu_state(ema_unet.average), "ema_text_encoder": cpu_state(ema_text.average),
                    "optimizer": optimizer.state_dict(), "step": step + 1, "total_steps": total, "config": asdict(config),
                }, checkpoint_path)
                progress.set_postfix(loss=log.flush(), refresh=False)
        log.flush()


def export_pipeline(run_dir: Path, output_dir: Path, size_name: str = "full") -> StableDiffusionPipeline:
    """Write a standard StableDiffusionPipeline folder from the run's VAE and EMA weights."""
    size = SIZES[size_name]
    tuned = run_dir / "vae_decoder_tuned"  # written by decoder.finetune_decoder, same encoder
    vae = AutoencoderKL.from_pretrained(tuned if (tuned / "config.json").exists() else run_dir / "vae")
    pool_path = run_dir / "latent_pool.pt"
    vae.register_to_config(scaling_factor=torch.load(pool_path, weights_only=False, map_location="cpu")["scaling_factor"])
    tokenizer = build_tokenizer(run_dir / "tokenizer_files")
    state = torch.load(run_dir / "checkpoint.pt", weights_only=False, map_location="cpu")
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
    if config.device.startswith("cuda"):
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
        torch.backends.cudnn.benchmark = True
    config.run_dir.mkdir(parents=True, exist_ok=True)
    log = LossLog(config.run_dir / "loss.csv")
    vae = train_vae(config, log).requires_grad_(False)
    pool = build_latent_pool(config, vae)
    DiffusionTrainer(config, pool).train(log)
    if config.decoder_steps > 0:
        from .decoder import finetune_decoder

        finetune_decoder(config, config.decoder_steps)
