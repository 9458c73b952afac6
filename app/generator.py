"""ArtworkGenerator: load any diffusers text-to-image model and run it with a step callback and cancel.

Used directly as in the websocket guide::

    generator = ArtworkGenerator(model_id=config["model"]["base_model"], device=config["model"]["device"])
    generator.load_model()
    images = generator.generate(prompt="A beautiful sunset", session_id="my-session-123")

and by the job worker, which passes its own `on_step` and `should_stop`.
"""
from __future__ import annotations

import json
import logging
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image

from .events import EventBus, bus as default_bus
from .protocol import GenerationProgress, progress_text

log = logging.getLogger(__name__)

StepCallback = Callable[[int, int, Any], None]
"""on_step(step, total_steps, latents): called in the generating thread after each denoising step."""

SINGLE_FILE_SUFFIXES = (".safetensors", ".ckpt")


class GenerationCancelled(Exception):
    """The generation was stopped by request before it finished."""


@dataclass(frozen=True)
class SizeLimits:
    default_width: int
    default_height: int
    minimum: int
    maximum: int
    multiple: int = 8

    def problems(self, width: int, height: int) -> list[tuple[str, str]]:
        """(field, message) for each dimension this model cannot generate."""
        found = []
        for name, value in (("width", width), ("height", height)):
            if value % self.multiple:
                found.append((name, f"{name} {value} is not a multiple of {self.multiple}"))
            elif not self.minimum <= value <= self.maximum:
                found.append((name, f"{name} {value} is outside this model's range {self.minimum}-{self.maximum}"))
        return found


GENERIC_LIMITS = SizeLimits(512, 512, 64, 2048)


def resolve_device(device: str) -> str:
    import torch

    if device != "auto":
        return device
    if torch.cuda.is_available():
        return "cuda"
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        return "mps"
    return "cpu"


def resolve_dtype(dtype: str, device: str) -> Any:
    import torch

    if dtype == "auto":
        return torch.float16 if device in ("cuda", "mps") else torch.float32
    return getattr(torch, dtype)


def inspect_size_limits(model_id: str) -> SizeLimits:
    """Read a local model folder's configs (no weights) to find its native and allowed sizes."""
    folder = Path(model_id)
    if not (folder / "model_index.json").is_file():
        return GENERIC_LIMITS
    try:
        vae_config = json.loads((folder / "vae" / "config.json").read_text())
        scale = 2 ** (len(vae_config.get("block_out_channels", [0, 0, 0, 0])) - 1)
        denoiser = next(
            (folder / name / "config.json" for name in ("unet", "transformer") if (folder / name / "config.json").is_file()),
            None,
        )
        sample_size = json.loads(denoiser.read_text()).get("sample_size") if denoiser else None
    except (OSError, ValueError):
        return GENERIC_LIMITS
    if not isinstance(sample_size, int):
        return GENERIC_LIMITS
    native = sample_size * scale
    return SizeLimits(native, native, minimum=max(8 * scale, 32), maximum=max(native * 4, 256), multiple=8)


def random_seed() -> int:
    return random.SystemRandom().randrange(0, 2**32)


class ArtworkGenerator:
    def __init__(
        self,
        model_id: str | None = None,
        device: str = "auto",
        dtype: str = "auto",
        events: EventBus | None = None,
        cpu_threads: int | None = None,
    ) -> None:
        if model_id is None:
            from .config import load_config

            model_id = load_config().model.base_model
        self.model_id = model_id
        self.requested_device = device
        self.device = resolve_device(device)
        self.dtype_name = dtype
        self.cpu_threads = cpu_threads
        self.events = events or default_bus
        self.pipeline: Any = None
        self.size_limits = inspect_size_limits(model_id)
        self._lock = threading.Lock()

    @property
    def is_loaded(self) -> bool:
        return self.pipeline is not None

    @property
    def model_name(self) -> str:
        return Path(self.model_id).name if Path(self.model_id).exists() else self.model_id

    def load_model(self) -> None:
        from diffusers import AutoPipelineForText2Image, DiffusionPipeline

        import torch

        if self.cpu_threads is not None and self.device == "cpu":
            torch.set_num_threads(self.cpu_threads)
        dtype = resolve_dtype(self.dtype_name, self.device)
        started = time.perf_counter()
        source = Path(self.model_id)
        if source.suffix in SINGLE_FILE_SUFFIXES:
            from diffusers import StableDiffusionPipeline

            pipeline = StableDiffusionPipeline.from_single_file(str(source), dtype=dtype)
        else:
            try:
                pipeline = AutoPipelineForText2Image.from_pretrained(self.model_id, dtype=dtype)
            except ValueError:
                pipeline = DiffusionPipeline.from_pretrained(self.model_id, dtype=dtype)
        pipeline.to(self.device)
        pipeline.set_progress_bar_config(disable=True)
        self.pipeline = pipeline
        self.size_limits = self._limits_of(pipeline)
        log.info("loaded %s on %s in %.1fs", self.model_id, self.device, time.perf_counter() - started)

    def _limits_of(self, pipeline: Any) -> SizeLimits:
        denoiser = getattr(pipeline, "unet", None) or getattr(pipeline, "transformer", None)
        sample_size = getattr(getattr(denoiser, "config", None), "sample_size", None)
        scale = int(getattr(pipeline, "vae_scale_factor", 8))
        if not isinstance(sample_size, int):
            return self.size_limits
        native = sample_size * scale
        return SizeLimits(native, native, minimum=max(8 * scale, 32), maximum=max(native * 4, 256), multiple=8)

    def generate(
        self,
        prompt: str,
        negative_prompt: str = "",
        num_inference_steps: int = 30,
        guidance_scale: float = 7.5,
        num_images: int = 1,
        seed: int | None = None,
        width: int | None = None,
        height: int | None = None,
        session_id: str | None = None,
        *,
        on_step: StepCallback | None = None,
        should_stop: Callable[[], bool] | None = None,
    ) -> list[Image.Image]:
        """Generate `num_images` images; image i uses seed + i (so any one can be reproduced alone)."""
        import torch

        if not self.is_loaded:
            self.load_model()
        width = width or self.size_limits.default_width
        height = height or self.size_limits.default_height
        problems = self.size_limits.problems(width, height)
        if problems:
            raise ValueError("; ".join(message for _, message in problems))
        base_seed = random_seed() if seed is None else seed
        if on_step is None and session_id is not None:
            on_step = self._session_progress(session_id)
        generator_device = "cpu" if self.device == "mps" else self.device
        generators = [torch.Generator(generator_device).manual_seed(base_seed + i) for i in range(num_images)]

        last_reported = 0

        def callback(pipe: Any, step: int, timestep: Any, tensors: dict[str, Any]) -> dict[str, Any]:
            nonlocal last_reported
            # Some schedulers (PNDM) run a step more than asked: report on the asked scale, each step once.
            actual = getattr(pipe, "_num_timesteps", None) or num_inference_steps
            reported = min((step + 1) * num_inference_steps // actual, num_inference_steps)
            if on_step is not None and reported > last_reported:
                last_reported = reported
                on_step(reported, num_inference_steps, tensors.get("latents"))
            if should_stop is not None and should_stop():
                pipe._interrupt = True
            return tensors

        with self._lock:
            output = self.pipeline(
                prompt=[prompt] * num_images,
                negative_prompt=[negative_prompt] * num_images if negative_prompt else None,
                num_inference_steps=num_inference_steps,
                guidance_scale=guidance_scale,
                width=width,
                height=height,
                generator=generators,
                callback_on_step_end=callback,
            )
        if should_stop is not None and should_stop():
            raise GenerationCancelled("cancelled")
        return list(output.images)

    def _session_progress(self, session_id: str) -> StepCallback:
        def publish(step: int, total: int, _latents: Any) -> None:
            self.events.publish_threadsafe(
                GenerationProgress(
                    session_id=session_id, step=step, total_steps=total, message=progress_text(step, total)
                )
            )

        return publish


def describe_failure(error: BaseException) -> str:
    """A message an artist can act on, for any exception a generation raised."""
    text = str(error) or type(error).__name__
    if "out of memory" in text.lower() or type(error).__name__ == "OutOfMemoryError":
        return (
            "Out of memory: try fewer images per batch, a smaller width/height, or enable model CPU offload "
            f"or attention slicing in config.yaml ({text.splitlines()[0]})"
        )
    return f"{type(error).__name__}: {text}"
