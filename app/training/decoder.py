"""Phase 4 (optional): fine-tune only the VAE decoder.

The encoder stays frozen, so the latent space the UNet was trained on does
not move; the decoder just gets better at turning those latents back into
flat, accurate colours. Resumable like the other phases.
"""

from __future__ import annotations

import time
from pathlib import Path

import torch
from diffusers import AutoencoderKL
from tqdm import tqdm

from .batches import DECODER_PHASE, SceneBatches, load
from .loss_log import LossLog
from .train import (
    TrainConfig,
    cosine_lr,
    cpu_state,
    images_to_device,
    make_optimizer,
    reconstruction_loss,
    resume_model_checkpoint,
    save_atomically,
    set_lr,
)

TUNED_VAE_DIR = "vae_decoder_tuned"


def decoder_parameters(vae: AutoencoderKL) -> list[torch.nn.Parameter]:
    return [*vae.post_quant_conv.parameters(), *vae.decoder.parameters()]


def finetune_decoder(config: TrainConfig, steps: int, batch: int = 8, peak_lr: float = 3e-4) -> Path:
    output = config.run_dir / TUNED_VAE_DIR
    if steps <= 0:
        return output
    device = torch.device(config.device)
    vae = AutoencoderKL.from_pretrained(config.run_dir / "vae")
    vae.requires_grad_(False)
    parameters = decoder_parameters(vae)
    for parameter in parameters:
        parameter.requires_grad_(True)
    optimizer = make_optimizer(parameters, peak_lr, 0.0, device)
    checkpoint_path = config.run_dir / "decoder_checkpoint.pt"
    start = int(resume_model_checkpoint(checkpoint_path, vae, optimizer).get("step", 0))
    vae.to(device)
    log = LossLog(config.run_dir / "loss.csv")
    batches = load(SceneBatches(config.seed, DECODER_PHASE, start, steps, batch), config.data_workers, device)
    progress = tqdm(zip(range(start, steps), batches), desc="decoder", initial=start, total=steps, mininterval=20)
    began = time.time()
    for step, uint8_images in progress:
        images = images_to_device(uint8_images, device)
        with torch.no_grad():
            latents = vae.encode(images).latent_dist.mode()
        lr = cosine_lr(step, steps, 20, peak_lr)
        set_lr(optimizer, lr)
        loss = reconstruction_loss(vae.decode(latents).sample, images)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        log.write("decoder", step, loss, lr, time.time() - began)
        began = time.time()
        if (step + 1) % config.checkpoint_every == 0 or step + 1 == steps:
            save_atomically({"model": cpu_state(vae), "optimizer": optimizer.state_dict(), "step": step + 1},
                            checkpoint_path)
            progress.set_postfix(loss=log.flush(), refresh=False)
    log.flush()
    vae.eval().save_pretrained(output)
    return output
