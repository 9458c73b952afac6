"""ArtworkGenerator: load any diffusers text-to-image model and run it with a step callback and cancel,
from the prompt alone, from an input image, or repainting a masked part of it, with LoRAs.

Used directly as in the websocket guide::

    generator = ArtworkGenerator(model_id=config["model"]["base_model"], device=config["model"]["device"])
    generator.load_model()
    images = generator.generate(prompt="A beautiful sunset", session_id="my-session-123")

and by the generation process (app/pipeline/process.py), which passes its own `on_step` and `should_stop`.
Image-to-image and inpainting: app/pipeline/image_modes.py; LoRAs: app/pipeline/lora_adapters.py.
"""
from __future__ import annotations

import copy
import logging
import threading
import time
from collections.abc import Callable, Sequence
from contextlib import nullcontext
from pathlib import Path
from typing import Any

from PIL import Image

from .cpu_speed import cpu_inference, onednn_for_call, onednn_pays_off
from .devices import place_on_device, resolve_device, resolve_dtype
from .failures import is_out_of_memory, release_memory
from .image_modes import ImageRow, ModePipelines, finished_images, mode_arguments, row_inputs, unchanged_images
from .loading import ProgressCallback, load_pipeline
from .lora_adapters import LoraAdapters, denoiser_layers
from .lora_files import library_lora_ref
from .progress_sink import session_progress_sink
from .schedulers import make_scheduler, supported_schedulers
from .sources import ModelSource, resolve_source
from .values import (
    DEFAULT_SCHEDULER,
    SCHEDULER_NAMES,
    LoraRef,
    ModelOptions,
    SizeLimits,
    denoising_steps,
    display_name,
    family_of_folder,
    image_seed,
    inspect_size_limits,
    random_seed,
    size_limits_for,
)

log = logging.getLogger(__name__)

StepCallback = Callable[[int, int, Any], None]
"""on_step(step, total_steps, latents): called in the generating thread after each denoising step."""

class GenerationCancelledError(Exception):
    """The generation was stopped by request before it finished."""


class ArtworkGenerator:
    def __init__(
        self,
        model_id: str | None = None,
        device: str = "auto",
        dtype: str = "auto",
        cpu_threads: int | None = None,
        options: ModelOptions | None = None,
        download_progress: ProgressCallback | None = None,
        lora_dir: str | Path | None = None,
    ) -> None:
        if model_id is None:
            from ..config import load_config

            model_id = load_config().model.base_model
        self.model_id = model_id
        self.requested_device = device
        self._device: str | None = None if device == "auto" else device
        self.dtype_name = dtype
        self.cpu_threads = cpu_threads
        self.options = options or ModelOptions()
        self.download_progress = download_progress
        self.pipeline: Any = None
        self.lora_dir = Path(lora_dir) if lora_dir is not None else None
        self.modes: ModePipelines | None = None  # the pipelines of every mode, once loaded
        self.loras: LoraAdapters | None = None
        self.lora_layers: dict[str, int] = {}  # the denoiser's layers a LoRA may adapt -> in-width
        self.base_scheduler: Any = None
        self.family: str | None = family_of_folder(Path(model_id))
        self.size_limits = inspect_size_limits(model_id)
        self._preview_decoders: dict[str | None, Any] = {}
        self._unused_schedulers: dict[str, Any] = {}  # name -> one never stepped, to copy per job
        self._large_denoiser = True  # oneDNN pays off for it at any size (cpu_speed.py)
        self._lock = threading.Lock()

    @property
    def is_loaded(self) -> bool:
        return self.pipeline is not None

    @property
    def device(self) -> str:
        """The device in use; "auto" until load_model has looked (that needs torch, which loads slowly)."""
        return self._device or self.requested_device

    @property
    def model_name(self) -> str:
        return display_name(self.model_id)

    def source(self) -> ModelSource:
        """Where the model comes from; raises ModelUnavailable naming what is missing."""
        return resolve_source(self.model_id, self.options.single_file_config)

    def load_model(self) -> None:
        import torch

        self._device = resolve_device(self.requested_device)
        if self.cpu_threads is not None and self.device == "cpu":
            torch.set_num_threads(self.cpu_threads)
        dtype = resolve_dtype(self.dtype_name, self.device)
        started = time.perf_counter()
        source = self.source()
        pipeline = load_pipeline(source, dtype, self.download_progress)
        place_on_device(pipeline, self.device, self.options)
        pipeline.set_progress_bar_config(disable=True)
        self.base_scheduler = pipeline.scheduler  # per-request schedulers are built from this one
        self._unused_schedulers.clear()
        try:
            from .previews import model_family

            self.family = model_family(pipeline)
        except ValueError:
            self.family = None
        self._large_denoiser = onednn_pays_off(pipeline)
        self.lora_layers = denoiser_layers(pipeline)
        self.modes = ModePipelines(pipeline)
        self.loras = LoraAdapters(pipeline, self.lora_dir)
        self.pipeline = pipeline
        self.size_limits = self._limits_of(pipeline)
        seconds = time.perf_counter() - started
        log.info("loaded %s (%s) on %s in %.1fs", self.model_id, source.kind, self.device, seconds)

    def _limits_of(self, pipeline: Any) -> SizeLimits:
        denoiser = getattr(pipeline, "unet", None) or getattr(pipeline, "transformer", None)
        config = getattr(denoiser, "config", None)
        sample_size = getattr(config, "sample_size", None)
        if not isinstance(sample_size, int):
            sample_size = getattr(pipeline, "default_sample_size", None)
        scale = int(getattr(pipeline, "vae_scale_factor", 8))
        if not isinstance(sample_size, int):
            return self.size_limits
        return size_limits_for(sample_size, scale, self.family, getattr(config, "pos_embed_max_size", None))

    def supported_schedulers(self) -> tuple[str, ...]:
        """Scheduler names this model accepts (judged from its folder's family before it is loaded).

        Called on the event loop (health, submit). Until the model is loaded this must not import
        diffusers: a first `import diffusers` racing the loading thread's leaves names missing there.
        """
        if self.base_scheduler is not None:
            return supported_schedulers(self.base_scheduler)
        if self.family is not None:
            return supported_schedulers(self.family)
        return SCHEDULER_NAMES

    def _fresh_scheduler(self, name: str) -> Any:
        """A scheduler no job has stepped: a copy of one built for this name (diffusers' `from_config`
        costs several times what a deep copy does)."""
        unused = self._unused_schedulers.get(name)
        if unused is None:
            unused = self._unused_schedulers[name] = make_scheduler(name, self.base_scheduler)
        return copy.deepcopy(unused)

    def preview_decoder(self, taesd_dir: str | Path | None = None) -> Any:
        """The preview method for the loaded model (TAESD when its folder is on disk), built once."""
        from .previews import PreviewDecoder

        key = str(taesd_dir) if taesd_dir else None
        decoder = self._preview_decoders.get(key)
        if decoder is None:
            decoder = self._preview_decoders[key] = PreviewDecoder.for_pipeline(self.pipeline, taesd_dir)
        return decoder

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
        scheduler: str | None = None,
        on_step: StepCallback | None = None,
        should_stop: Callable[[], bool] | None = None,
        init_image: Image.Image | None = None,
        strength: float = 0.75,
        mask_image: Image.Image | None = None,
        mask_blur: int = 4,
        loras: Sequence[LoraRef | tuple[str, float]] = (),
        rows: Sequence[ImageRow | tuple[str, str, int]] | None = None,
    ) -> list[Image.Image]:
        """Generate `num_images` images; image i uses seed + i (so any one can be reproduced alone).

        `scheduler` is a name from `SCHEDULER_NAMES` (None: the model's own); every call
        gets a fresh scheduler built from the model's original one, so no sampler state leaks between jobs.
        With `init_image` the job reworks it (`strength` 0-1: `int(steps × strength)` steps run; 0 returns
        it as it is); with `mask_image` too it repaints the white part (black is kept; `mask_blur` softens
        the edge). Without `width`/`height` an input keeps its aspect ratio at the model's native area.
        `loras`: (name, weight) pairs of files in `lora_dir`, or `LoraRef`s naming their content hash.
        `rows`: one `ImageRow` (prompt, negative prompt, seed, and its own init image and mask) per image
        instead of `prompt`, `negative_prompt`, `seed`, `num_images`, `init_image` and `mask_image` (the jobs
        of a batch, app/pipeline/batch_run.py); the other settings are shared, and all rows are of one mode.
        """
        import torch

        if not self.is_loaded:
            self.load_model()
        if rows is None:
            base_seed = random_seed() if seed is None else seed
            rows = [ImageRow(prompt, negative_prompt, image_seed(base_seed, i), init_image, mask_image)
                    for i in range(num_images)]
        rows = [ImageRow(*row) for row in rows]
        inputs = row_inputs(rows, strength, mask_blur)
        first_init = inputs[0].init_image
        if first_init is not None and not (width and height):
            width, height = self.size_limits.with_aspect(*first_init.size)
        width = width or self.size_limits.default_width
        height = height or self.size_limits.default_height
        problems = self.size_limits.problems(width, height)
        if problems:
            raise ValueError("; ".join(message for _, message in problems))
        assert self.modes is not None and self.loras is not None
        pipeline = self.modes.for_mode(inputs[0].mode)
        total_steps = denoising_steps(num_inference_steps, strength if first_init is not None else None)
        if total_steps == 0:
            return unchanged_images(inputs, width, height)
        lora_refs = tuple(library_lora_ref(lora, self.lora_dir) for lora in loras)
        fresh_scheduler = self._fresh_scheduler(scheduler or DEFAULT_SCHEDULER)
        if on_step is None and session_id is not None:
            on_step = self._session_progress(session_id)
        generator_device = "cpu" if self.device == "mps" else self.device
        generators = [torch.Generator(generator_device).manual_seed(row.seed) for row in rows]
        negatives = [row.negative_prompt for row in rows]
        last_reported = 0

        def callback(pipe: Any, step: int, timestep: Any, tensors: dict[str, Any]) -> dict[str, Any]:
            nonlocal last_reported
            # Some schedulers (PNDM) run a step more than asked: report on the asked scale, each step once.
            actual = pipe.num_timesteps or total_steps
            reported = min((step + 1) * total_steps // actual, total_steps)
            if on_step is not None and reported > last_reported:
                last_reported = reported
                on_step(reported, total_steps, tensors.get("latents"))
            if should_stop is not None and should_stop():
                pipe._interrupt = True
            return tensors

        arguments = mode_arguments(pipeline, inputs, width, height, num_inference_steps, self.family)
        out_of_memory: BaseException | None = None
        try:
            scale = int(getattr(pipeline, "vae_scale_factor", 8))
            use_onednn = onednn_for_call(self._large_denoiser, len(rows), width, height, scale)
            with self._lock, cpu_inference(use_onednn) if self.device == "cpu" else nullcontext():
                self.loras.activate(lora_refs)
                pipeline.scheduler = fresh_scheduler
                output = pipeline(
                    prompt=[row.prompt for row in rows],
                    negative_prompt=negatives if any(negatives) else None,
                    num_inference_steps=num_inference_steps,
                    guidance_scale=guidance_scale,
                    generator=generators,
                    callback_on_step_end=callback,
                    **arguments,
                )
        except Exception as error:
            if not is_out_of_memory(error):
                raise
            out_of_memory = error.with_traceback(None)  # its frames hold the failed call's tensors
        if out_of_memory is not None:
            release_memory()
            raise out_of_memory
        if should_stop is not None and should_stop():
            raise GenerationCancelledError("cancelled")
        return finished_images(list(output.images), arguments)

    @staticmethod
    def _session_progress(session_id: str) -> StepCallback | None:
        sink = session_progress_sink()
        if sink is None:
            return None
        return lambda step, total, _latents: sink(session_id, step, total)
