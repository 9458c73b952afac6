"""Bodies of the AUTOMATIC1111-compatible API (`/sdapi/v1/*`), with A1111's field names and shapes
(its `modules/api/models.py`). Requests accept and ignore fields they do not know: A1111 clients send many.
"""
from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class _Lenient(BaseModel):
    model_config = ConfigDict(extra="ignore")


class Txt2ImgRequest(_Lenient):
    """`POST /sdapi/v1/txt2img`. Omitted `width`/`height`/`steps`: the model's native size, 30 steps."""

    prompt: str = ""
    negative_prompt: str = ""
    styles: list[str] = Field(default_factory=list)
    seed: int = Field(-1, description="-1: a random seed.")
    sampler_name: str | None = Field(None, description="Euler, Euler a, DPM++ 2M, DPM++ 2M Karras, DDIM, UniPC.")
    sampler_index: str | None = Field(None, description="Deprecated alias of sampler_name.")
    scheduler: str | None = Field(None, description="automatic, or karras (with DPM++ 2M).")
    batch_size: int = Field(1, description="Images per iteration (one job each iteration).")
    n_iter: int = Field(1, ge=1, le=100, description="Iterations: one queued job each.")
    steps: int | None = None
    cfg_scale: float = 7.0
    width: int | None = None
    height: int | None = None
    denoising_strength: float | None = None
    enable_hr: bool = False
    restore_faces: bool | None = None
    tiling: bool | None = None
    override_settings: dict[str, Any] = Field(default_factory=dict)
    override_settings_restore_afterwards: bool = True
    script_name: str | None = None
    script_args: list[Any] = Field(default_factory=list)
    send_images: bool = True
    save_images: bool = False
    alwayson_scripts: dict[str, Any] = Field(default_factory=dict)


class Img2ImgRequest(Txt2ImgRequest):
    """`POST /sdapi/v1/img2img`: image-to-image from `init_images[0]`, inpainting with `mask` (white =
    repaint). Omitted `width`/`height`: the input's aspect ratio at the model's native area."""

    init_images: list[str] | None = Field(
        None, description="Base64 images (a `data:` prefix is fine); the first is used."
    )
    denoising_strength: float | None = Field(0.75, description="How much to change the image, 0 to 1.")
    mask: str | None = Field(None, description="Base64 mask: white = repaint, black = keep.")
    mask_blur: int = 4
    inpainting_mask_invert: int = Field(0, description="1: black = repaint.")
    inpainting_fill: int = Field(1, description="Accepted and ignored (the masked part starts from the image).")
    resize_mode: int = Field(0, description="Accepted and ignored (the input is resized to width × height).")
    include_init_images: bool = Field(False, description="Echo `init_images` and `mask` in `parameters`.")


class ImageResponse(BaseModel):
    """Answer of txt2img: the images as base64 PNG (no `data:` prefix), the request, and `info` as a JSON string."""

    images: list[str]
    parameters: dict[str, Any]
    info: str


class GenerationInfo(BaseModel):
    """What `info` holds (A1111's `Processed.js()` subset)."""

    prompt: str
    all_prompts: list[str]
    negative_prompt: str
    all_negative_prompts: list[str]
    seed: int
    all_seeds: list[int]
    width: int
    height: int
    sampler_name: str
    cfg_scale: float
    steps: int
    batch_size: int
    sd_model_name: str
    job_timestamp: str
    index_of_first_image: int = 0
    styles: list[str] = Field(default_factory=list)
    denoising_strength: float | None = Field(None, description="img2img only.")
    infotexts: list[str]
    session_ids: list[str] = Field(description="AI Artist's jobs, one per iteration (GET /api/jobs/{id}).")


class ProgressState(BaseModel):
    skipped: bool = False
    interrupted: bool = False
    job: str = ""
    job_count: int = 0
    job_timestamp: str = "0"
    job_no: int = 0
    sampling_step: int = 0
    sampling_steps: int = 0


class ProgressResponse(BaseModel):
    """`GET /sdapi/v1/progress`. Idle: progress 0 and job_count 0 (clients read that as ready)."""

    progress: float = Field(description="0 to 1.")
    eta_relative: float = Field(description="Seconds left.")
    state: ProgressState
    current_image: str | None = Field(None, description="The latest live preview, base64 (a JPEG), or null.")
    textinfo: str | None = None


class Empty(BaseModel):
    pass


class OptionsUpdate(BaseModel):
    """`POST /sdapi/v1/options`: `sd_model_checkpoint` switches the model (the call returns once it is loaded);
    other keys are stored and read back, and change nothing else."""

    model_config = ConfigDict(extra="allow")

    sd_model_checkpoint: str | None = None


class SamplerItem(BaseModel):
    name: str
    aliases: list[str]
    options: dict[str, Any] = Field(default_factory=dict)


class SchedulerItem(BaseModel):
    name: str
    label: str
    aliases: list[str] | None = None
    default_rho: float | None = None
    need_inner_model: bool | None = None


class SDModelItem(BaseModel):
    model_config = ConfigDict(protected_namespaces=())

    title: str
    model_name: str
    hash: str | None = None
    sha256: str | None = None
    filename: str
    config: str | None = None


class LoraItem(BaseModel):
    name: str
    alias: str
    path: str
    metadata: dict[str, Any] = Field(default_factory=dict)


class EmbeddingsResponse(BaseModel):
    loaded: dict[str, Any] = Field(default_factory=dict)
    skipped: dict[str, Any] = Field(default_factory=dict)


class ScriptsList(BaseModel):
    txt2img: list[str] = Field(default_factory=list)
    img2img: list[str] = Field(default_factory=list)


class PNGInfoRequest(_Lenient):
    image: str = Field(description="A PNG as base64, with or without a `data:` prefix.")


class PNGInfoResponse(BaseModel):
    info: str = Field(description="The `parameters` text.")
    items: dict[str, Any] = Field(description="The image's other text chunks (ours: `ai_artist`, the JSON metadata).")
    parameters: dict[str, str] = Field(description="`info` parsed: Prompt, Negative prompt, Steps, Sampler, ...")
