"""CPU settings for fast inference, applied around each pipeline call on the CPU.

With a small model (the embedded one) both settings make a generation markedly faster
(`bench/bench_embedded_model.py`; figures in docs/embedded-model.md): denormals flushed to
zero, and oneDNN convolutions off, since oneDNN pays a fixed cost per convolution that
dominates tensors this small. A large model (SD 1.5's UNet) needs oneDNN, so it stays on
above SMALL_DENOISER_PARAMETERS.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

SMALL_DENOISER_PARAMETERS = 50_000_000


def denoiser_parameters(pipeline: Any) -> int:
    denoiser = getattr(pipeline, "unet", None) or getattr(pipeline, "transformer", None)
    return sum(p.numel() for p in denoiser.parameters()) if denoiser is not None else 0


def onednn_pays_off(pipeline: Any) -> bool:
    return denoiser_parameters(pipeline) >= SMALL_DENOISER_PARAMETERS


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
