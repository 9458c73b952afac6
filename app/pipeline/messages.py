"""What the server and its generation process say to each other over their pipe (pickled dataclasses).

Server -> process: `RunJob` (or `RunBatch`: compatible jobs in one pipeline call), `CancelJob`,
`SetPreviews` (someone started or stopped watching a running job's previews), `Shutdown`.
Process -> server: `DownloadProgress` and then `ModelLoaded` or `LoadFailed` once at start; per job
(also per job of a batch) `StepDone` after every denoising step, `PreviewReady` when a preview was
rendered, and exactly one outcome (`JobFinished`, `JobCancelled` or `JobFailed`).

Fields marked "timing" are `time.perf_counter()` stamps (CLOCK_MONOTONIC on Linux: one clock for both
processes) and durations that nothing in the server decides on: the benchmarks in bench/ read them to
tell how long a message took to reach the server and how long the pipeline call itself took.

A job carries everything it needs by value (its input images as PNG bytes, its LoRAs by name and
content hash), so the same `JobSpec` can travel to a generation process on another machine.

This pipe is internal to one machine; the public wire format is app/protocol.py.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from ..config import PreviewSettings
from ..protocol import GenerationMetadata
from .values import LoraRef, ModelOptions, SizeLimits


@dataclass(frozen=True)
class ModelSpec:
    """Everything the process needs to load its model (it reads no config or environment of its own)."""

    model_id: str
    device: str
    dtype: str
    cpu_threads: int | None
    options: ModelOptions
    log_file: str | None = None
    lora_dir: str | None = None  # where the LoRAs jobs name are (model.lora_dir)


@dataclass(frozen=True)
class InputImage:
    """An input image of a job: the name it is stored under on the server (`<data_dir>/inputs/`), which
    goes into the result's metadata, and its pixels as PNG bytes."""

    name: str
    png: bytes


@dataclass(frozen=True)
class JobSpec:
    session_id: str
    prompt: str
    negative_prompt: str
    num_inference_steps: int
    guidance_scale: float
    num_images: int
    seed: int
    width: int
    height: int
    scheduler: str | None
    previews: PreviewSettings
    images_dir: str
    init_image: InputImage | None = None  # image-to-image, or the picture to inpaint
    mask_image: InputImage | None = None  # inpainting: white = repaint, black = keep
    strength: float = 0.75
    mask_blur: int = 4
    loras: tuple[LoraRef, ...] = ()
    previews_watched: bool = True  # render previews from the start (someone watches); SetPreviews changes it


# ----------------------------------------------------------------------------- server -> process


@dataclass(frozen=True)
class RunJob:
    job: JobSpec


@dataclass(frozen=True)
class RunBatch:
    """Jobs that can share one pipeline call (same model, size, steps, scheduler, guidance, mode, LoRAs:
    app/engine/batching.py decides); each still reports and ends on its own."""

    jobs: tuple[JobSpec, ...]


@dataclass(frozen=True)
class CancelJob:
    session_id: str


@dataclass(frozen=True)
class SetPreviews:
    """Render previews of this job from its next step on (`watched`), or stop rendering them."""

    session_id: str
    watched: bool


@dataclass(frozen=True)
class Shutdown:
    """Stop the running job at its next step, then exit."""


# ----------------------------------------------------------------------------- process -> server


@dataclass(frozen=True)
class DownloadProgress:
    downloaded_bytes: int
    total_bytes: int | None


@dataclass(frozen=True)
class ModelLoaded:
    device: str
    family: str | None
    size_limits: SizeLimits
    schedulers: tuple[str, ...]
    seconds: float
    modes: tuple[str, ...] = ("txt2img",)  # of app.pipeline.values.MODES
    supports_lora: bool = False
    lora_layers: dict[str, int] = field(default_factory=dict)  # denoiser layer -> in-width, to check LoRAs


@dataclass(frozen=True)
class LoadFailed:
    error: str  # what the artist reads in GET /api/health


@dataclass(frozen=True)
class StepDone:
    session_id: str
    step: int
    total_steps: int
    at: float  # timing: when the diffusion callback fired


@dataclass(frozen=True)
class PreviewReady:
    session_id: str
    step: int
    jpeg: bytes
    width: int
    height: int
    render_seconds: float  # timing: spent rendering it


@dataclass(frozen=True)
class JobFinished:
    session_id: str
    image_names: tuple[str, ...]
    metadata: GenerationMetadata
    entered_at: float  # timing: the pipeline call began
    left_at: float  # timing: and returned


@dataclass(frozen=True)
class JobCancelled:
    session_id: str
    entered_at: float  # timing
    left_at: float  # timing


@dataclass(frozen=True)
class JobFailed:
    session_id: str
    error: str
    entered_at: float  # timing
    left_at: float  # timing


JobOutcome = JobFinished | JobCancelled | JobFailed
