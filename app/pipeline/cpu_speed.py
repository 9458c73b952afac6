"""CPU settings for fast inference, applied around each pipeline call on the CPU.

With a small model (the embedded one) both settings make a generation markedly faster
(`bench/bench_embedded_model.py`; figures in docs/embedded-model.md): denormals flushed to
zero, and oneDNN convolutions off, since oneDNN pays a fixed cost per convolution that
dominates tensors this small. A large model (SD 1.5's UNet) needs oneDNN, so it stays on
above SMALL_DENOISER_PARAMETERS.

A small model's call on many latent pixels (a batch of jobs, app/pipeline/batch_run.py, or a large
image) needs oneDNN too: PyTorch's own convolutions slow down far more than in proportion there.
Measured with the embedded model (20 steps, 2 threads): 8 images of 64×64 as one call took 5.3-5.8 s
with them and 2.2 s with oneDNN, one image 0.7 s and 0.9 s; a 128×128 image 1.7 s either way. So
oneDNN is on from ONEDNN_LATENT_PIXELS (rows × the latents' height × width) up.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

SMALL_DENOISER_PARAMETERS = 50_000_000
ONEDNN_LATENT_PIXELS = 4 * 16 * 16  # a batch of 4 at the embedded model's 64×64 (latents 16×16)


def denoiser_parameters(pipeline: Any) -> int:
    denoiser = getattr(pipeline, "unet", None) or getattr(pipeline, "transformer", None)
    return sum(p.numel() for p in denoiser.parameters()) if denoiser is not None else 0


def onednn_pays_off(pipeline: Any) -> bool:
    """Whether oneDNN pays off for this pipeline whatever the call (a large denoiser)."""
    return denoiser_parameters(pipeline) >= SMALL_DENOISER_PARAMETERS


def onednn_for_call(large_denoiser: bool, rows: int, width: int, height: int, vae_scale_factor: int) -> bool:
    """Whether a call of `rows` images of `width`×`height` runs faster with oneDNN (the embedded model's VAE
    scales by 4: 64×64 pixels are 16×16 latents)."""
    latent_pixels = rows * (width // vae_scale_factor) * (height // vae_scale_factor)
    return large_denoiser or latent_pixels >= ONEDNN_LATENT_PIXELS


@contextmanager
def cpu_inference(use_onednn: bool) -> Iterator[None]:
    """Denormals flushed (for this thread: the setting is per thread) and oneDNN on or off for the call;
    both put back afterwards (flushing is off by default, and a caller's own float code, like hypothesis in
    the tests, refuses to run in a thread where it leaked)."""
    import torch

    torch.set_flush_denormal(True)
    was_enabled = torch.backends.mkldnn.enabled
    torch.backends.mkldnn.enabled = use_onednn
    try:
        yield
    finally:
        torch.backends.mkldnn.enabled = was_enabled
        torch.set_flush_denormal(False)
