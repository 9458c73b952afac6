"""Phase 4 (optional): fine-tune only the VAE decoder.

The encoder stays frozen, so the latent space the UNet was trained on does
not move; the decoder just gets better at turning those latents back into
flat, accurate colours. Resumable like the other phases.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from diffusers import AutoencoderKL
from tqdm import tqdm

from .train import LossLog, TrainConfig, cosine_lr, images_to_tensor, resume_model_checkpoint, save_atomically
from .scenes import sample_training_example

DECODER_PHASE = 4
TUNED_VAE_DIR = "vae_decoder_tuned"


def decoder_parameters(vae: AutoencoderKL) -> list[torch.nn.Parameter]:
    return [*vae.post_quant_conv.parameters(), *vae.decoder.parameters()]


def reconstruction_loss(reconstruction: torch.Tensor, images: torch.Tensor) -> torch.Tensor:
    colour_loss = F.l1_loss(F.avg_pool2d(reconstruction, 8), F.avg_pool2d(images, 8))
    return F.l1_loss(reconstruction, images) + F.mse_loss(reconstruction, images) + 2.0 * colour_loss


def finetune_decoder(config: TrainConfig, steps: int, batch: int = 8, peak_lr: float = 3e-4) -> Path:
    output = config.run_dir / TUNED_VAE_DIR
    if steps <= 0:
        return output
    vae = AutoencoderKL.from_pretrained(config.run_dir / "vae")
    vae.requires_grad_(False)
    parameters = decoder_parameters(vae)
    for parameter in parameters:
        parameter.requires_grad_(True)
    optimizer = torch.optim.AdamW(parameters, lr=peak_lr, weight_decay=0.0)
    checkpoint_path = config.run_dir / "decoder_checkpoint.pt"
    start = resume_model_checkpoint(checkpoint_path, vae, optimizer)
    log = LossLog(config.run_dir / "loss.csv")
    progress = tqdm(range(start, steps), desc="decoder", initial=start, total=steps, mininterval=20)
    for step in progress:
        began = time.time()
        rng = np.random.default_rng([config.seed, DECODER_PHASE, step])
        images = images_to_tensor([sample_training_example(rng)[0] for _ in range(batch)])
        with torch.no_grad():
            latents = vae.encode(images).latent_dist.mode()
        lr = cosine_lr(step, steps, 20, peak_lr)
        for group in optimizer.param_groups:
            group["lr"] = lr
        loss = reconstruction_loss(vae.decode(latents).sample, images)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        log.write("decoder", step, loss.item(), lr, time.time() - began)
        progress.set_postfix(loss=f"{loss.item():.4f}", refresh=False)
        if (step + 1) % config.checkpoint_every == 0 or step + 1 == steps:
            save_atomically({"model": vae.state_dict(), "optimizer": optimizer.state_dict(), "step": step + 1},
                            checkpoint_path)
    vae.eval().save_pretrained(output)
    return output
