"""Step-indexed training data, made in ``DataLoader`` workers.

Every batch is a pure function of ``(seed, phase, step)``: the same batch for
any number of workers and after a resume. Workers only draw scenes and
noise on the CPU; the training loop moves the tensors to its device.
"""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from .caption_noise import CaptionNoiser
from .scenes import sample_training_example

VAE_PHASE, POOL_PHASE, UNET_PHASE, DECODER_PHASE = 1, 2, 3, 4


class SceneBatches(Dataset):
    """Scene images for step ``first_step + i``; the VAE phase crops them, the last fifth stays whole."""

    def __init__(self, seed: int, phase: int, first_step: int, total_steps: int, batch: int, crop: int | None = None) -> None:
        self.seed, self.phase, self.first_step, self.total_steps = seed, phase, first_step, total_steps
        self.batch, self.crop = batch, crop

    def __len__(self) -> int:
        return self.total_steps - self.first_step

    def __getitem__(self, index: int) -> torch.Tensor:
        step = self.first_step + index
        rng = np.random.default_rng([self.seed, self.phase, step])
        whole_images = self.crop is None or step >= self.total_steps * 0.8
        batch = self.batch if self.crop is None or not whole_images else max(1, self.batch // 4)
        images = np.stack([sample_training_example(rng)[0] for _ in range(batch)])
        if not whole_images:
            top, left = (int(v) for v in rng.integers(0, images.shape[1] - self.crop + 1, size=2))
            images = images[:, top:top + self.crop, left:left + self.crop]
        return torch.from_numpy(np.ascontiguousarray(images))


class PoolChunks(Dataset):
    """Chunk ``i`` of the latent pool's scenes: (uint8 images, captions)."""

    def __init__(self, seed: int, pool_size: int, chunk: int) -> None:
        self.seed, self.pool_size, self.chunk = seed, pool_size, chunk

    def __len__(self) -> int:
        return -(-self.pool_size // self.chunk)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, list[str]]:
        rng = np.random.default_rng([self.seed, POOL_PHASE, index])
        count = min(self.chunk, self.pool_size - index * self.chunk)
        examples = [sample_training_example(rng) for _ in range(count)]
        return torch.from_numpy(np.stack([image for image, _ in examples])), [caption for _, caption in examples]


class NoiseBatches(Dataset):
    """For diffusion step ``first_step + i``: pool indices, dropped captions, noise and timesteps.

    With a ``noiser``, also the rows' token ids (``ids``), some of them with caption noise.
    """

    def __init__(self, seed: int, first_step: int, total_steps: int, batch: int, pool_length: int,
                 caption_dropout: float, num_timesteps: int, latent_shape: tuple[int, ...],
                 noiser: CaptionNoiser | None = None) -> None:
        self.seed, self.first_step, self.total_steps, self.batch = seed, first_step, total_steps, batch
        self.pool_length, self.caption_dropout = pool_length, caption_dropout
        self.num_timesteps, self.latent_shape, self.noiser = num_timesteps, latent_shape, noiser

    def __len__(self) -> int:
        return self.total_steps - self.first_step

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        rng = np.random.default_rng([self.seed, UNET_PHASE, self.first_step + index])
        generator = torch.Generator().manual_seed(int(rng.integers(0, 2**62)))
        indices = rng.integers(0, self.pool_length, size=self.batch)
        batch = {
            "index": torch.from_numpy(indices),
            "dropped": torch.from_numpy(rng.random(self.batch) < self.caption_dropout),
            "noise": torch.randn((self.batch, *self.latent_shape), generator=generator),
            "timesteps": torch.randint(0, self.num_timesteps, (self.batch,), generator=generator),
        }
        if self.noiser is not None:
            caption_rng = np.random.default_rng([self.seed, UNET_PHASE, self.first_step + index, 1])
            batch["ids"] = torch.tensor(self.noiser.token_ids(indices, caption_rng))
        return batch


def load(dataset: Dataset, workers: int, device: torch.device) -> DataLoader:
    """Items in order, ``workers`` processes ahead of the training loop."""
    return DataLoader(dataset, batch_size=None, shuffle=False, num_workers=workers,
                      prefetch_factor=4 if workers else None, pin_memory=device.type == "cuda")
