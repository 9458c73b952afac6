"""Pydantic models of every REST body and every WebSocket message: the one source of the protocol.

docs/protocol.md is generated from these models (`python -m app.protocol_doc`). Longer than 300 lines
on purpose: the whole wire format reads in one place, in the order the doc presents it.
"""
from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal, Union, get_args

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationInfo, field_validator

JobStatus = Literal["queued", "running", "completed", "failed", "cancelled"]
TERMINAL_STATUSES: frozenset[str] = frozenset({"completed", "failed", "cancelled"})
ModelState = Literal["loading", "ready", "error"]
SIZE_MULTIPLE = 8
"""Widths and heights are multiples of this (a model may need a larger multiple: its SizeLimits)."""
GenerationMode = Literal["txt2img", "img2img", "inpaint"]
MAX_INPUT_TEXT = 40_000_000  # a data: URL or base64 string of an input image (its bytes are checked again)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


# --------------------------------------------------------------------------- REST bodies


class LoraRequest(_Strict):
    """One LoRA to apply, by the name `GET /api/loras` lists."""

    name: str = Field(min_length=1, max_length=128, description="A LoRA's name: its file in model.lora_dir without `.safetensors`.")
    weight: float = Field(1.0, ge=-4, le=4, description="How strongly it applies (1 = as trained, 0 = not at all).")


class GenerateRequest(_Strict):
    """Body of `POST /api/generate`. Only `prompt` is required.

    With `init_image` the job reworks that picture (image-to-image); with `mask_image` too it repaints the
    mask's white part (inpainting). Input images are kept with the job; its view names them as stored
    (the name of `GET /api/uploads/{name}`), whatever form they were sent in.
    """

    prompt: str = Field(min_length=1, max_length=2000, description="What to draw.")
    negative_prompt: str = Field("", max_length=2000, description="What to avoid.")
    num_inference_steps: int = Field(30, ge=1, le=150, description="Denoising steps.")
    guidance_scale: float = Field(7.5, ge=0, le=30, description="Classifier-free guidance scale.")
    num_images: int = Field(1, ge=1, le=8, description="Images in the batch.")
    seed: int | None = Field(None, ge=0, le=2**32 - 1, description="Fixed seed; random when omitted.")
    width: int | None = Field(None, description="Multiple of 8 within the model's limits; model default when omitted.")
    height: int | None = Field(None, description="Multiple of 8 within the model's limits; model default when omitted.")
    scheduler: str | None = Field(
        None,
        description="Sampler name (default, euler, euler_a, dpmpp_2m, dpmpp_2m_karras, ddim, unipc; SD3/Flux: "
        "default, euler, dpmpp_2m, unipc); the model's own when omitted. `GET /api/health` lists the loaded "
        "model's names.",
    )
    init_image: str | None = Field(
        None,
        max_length=MAX_INPUT_TEXT,
        description="The picture to start from: an upload's name (`POST /api/uploads`), a gallery image's name, a "
        "`data:` URL or a base64 string (PNG, JPEG or WebP). Without width/height the result keeps its aspect "
        "ratio at the model's native area.",
    )
    strength: float = Field(
        0.75,
        ge=0,
        le=1,
        description="With `init_image`: how much to change it. `int(steps × strength)` denoising steps run; 0 keeps "
        "the input as it is, 1 replaces it (only its size and a faint trace of its layout remain).",
    )
    mask_image: str | None = Field(
        None,
        max_length=MAX_INPUT_TEXT,
        description="Inpainting (needs `init_image`, same aspect ratio; resized as needed): white = repaint, black = "
        "keep, grey = in between. Same forms as `init_image`; transparent pixels count as black.",
    )
    mask_blur: int = Field(4, ge=0, le=64, description="Pixels of blur on the mask's edge, so the repainted part blends in.")
    loras: list[LoraRequest] = Field(
        default_factory=list,
        max_length=8,
        description="LoRAs to apply, names from `GET /api/loras`. AUTOMATIC1111's `<lora:name:0.8>` in the prompt "
        "works too (removed from the text the model sees, added here).",
    )

    @field_validator("mask_image")
    @classmethod
    def _mask_needs_an_image(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is not None and not info.data.get("init_image"):
            raise ValueError("a mask needs an init_image to repaint; send init_image too")
        return value

    @field_validator("prompt")
    @classmethod
    def _prompt_not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("prompt must contain more than whitespace")
        return value

    @field_validator("width", "height")
    @classmethod
    def _multiple_of_eight(cls, value: int | None) -> int | None:
        if value is not None and (value <= 0 or value % SIZE_MULTIPLE):
            raise ValueError(f"must be a positive multiple of {SIZE_MULTIPLE}")
        return value


class GenerateResponse(BaseModel):
    session_id: str
    status: Literal["queued"] = "queued"
    position: int = Field(description="1 = next to start.")


class LoraUse(BaseModel):
    name: str
    weight: float
    hash: str = Field(description="AUTOMATIC1111's short hash: the first 12 hex digits of the SHA-256 of the tensor data.")


class GenerationMetadata(BaseModel):
    prompt: str
    negative_prompt: str
    seed: int
    num_inference_steps: int
    guidance_scale: float
    model: str
    width: int
    height: int
    scheduler: str | None = None
    created_at: datetime
    duration_seconds: float
    mode: GenerationMode = "txt2img"
    strength: float | None = Field(None, description="Denoising strength (image-to-image and inpainting).")
    mask_blur: int | None = Field(None, description="Inpainting: pixels of blur on the mask's edge.")
    init_image: str | None = Field(None, description="The stored input image's name (`GET /api/uploads/{name}`).")
    mask_image: str | None = Field(None, description="The stored mask's name (`GET /api/uploads/{name}`).")
    loras: list[LoraUse] = Field(default_factory=list)


class JobView(BaseModel):
    """A job as `GET /api/jobs/{id}` reports it."""

    session_id: str
    status: JobStatus
    request: GenerateRequest
    model: str
    seed: int | None
    step: int
    total_steps: int
    eta_seconds: float | None
    position: int | None = Field(None, description="Queue position while queued.")
    image_paths: list[str]
    image_urls: list[str]
    error: str | None
    attempts: int
    metadata: GenerationMetadata | None = None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    input_urls: dict[str, str] = Field(
        default_factory=dict, description="Where the job's input images are served, by role (init_image, mask_image)."
    )
    worker: str | None = Field(None, description="The name of the worker it runs (or ran) on; null before it started.")


class JobPage(BaseModel):
    items: list[JobView]
    total: int
    offset: int
    limit: int


class GalleryItem(BaseModel):
    name: str
    url: str
    path: str
    session_id: str
    index: int
    metadata: GenerationMetadata
    input_urls: dict[str, str] = Field(
        default_factory=dict, description="Where its input images are served, by role (init_image, mask_image)."
    )


class GalleryPage(BaseModel):
    items: list[GalleryItem]
    total: int
    offset: int
    limit: int


class UploadResponse(BaseModel):
    """`POST /api/uploads`: an input image, stored under a name any job can use."""

    name: str = Field(description="Pass as `init_image` or `mask_image` to POST /api/generate.")
    width: int
    height: int
    url: str = Field(description="Where the server serves it (`GET /api/uploads/{name}`).")


class LoraInfo(BaseModel):
    name: str = Field(description="What to pass as `loras[].name`, or in `<lora:name:weight>`.")
    hash: str = Field(description="AUTOMATIC1111's short hash (first 12 hex digits of the tensor data's SHA-256).")
    sha256: str
    size_bytes: int
    families: list[str] = Field(description="The model families its header says it is for (empty: cannot tell).")
    fits: bool = Field(description="Whether it fits the loaded model (judged from its header).")
    problem: str | None = Field(None, description="Why it does not fit, or why the file cannot be used.")


class LoraList(BaseModel):
    """`GET /api/loras`: the `.safetensors` files in model.lora_dir."""

    lora_dir: str
    items: list[LoraInfo]


class ModelHealth(BaseModel):
    id: str
    state: ModelState
    device: str | None
    error: str | None = None
    family: str | None = Field(None, description="sd, sdxl, sd3 or flux once known.")
    schedulers: list[str] = Field(default_factory=list, description="Scheduler names this model accepts.")
    process_id: int | None = Field(
        None, description="Operating-system id of the generation process that holds the model (null while none runs)."
    )
    modes: list[GenerationMode] = Field(
        default_factory=list, description="What the loaded model can do: txt2img, img2img, inpaint (empty until loaded)."
    )


class QueueHealth(BaseModel):
    pending: int
    running: int


WorkerState = Literal["loading", "idle", "busy", "gone"]


class WorkerView(BaseModel):
    """One generation worker, as `GET /api/workers` lists it: a process of this server or a remote one."""

    id: str
    name: str
    host: str
    device: str | None
    model: str = Field(
        description="The model it holds (or is loading): a local worker's model id, a remote worker's model name "
        "(what jobs are routed by)."
    )
    state: WorkerState = Field(description="gone: a remote worker that stopped sending heartbeats.")
    session_id: str | None = Field(None, description="The job it runs while busy.")
    jobs_done: int
    last_seen: datetime


class WorkersHealth(BaseModel):
    total: int
    idle: int
    busy: int
    loading: int
    gone: int
class PreviewHealth(BaseModel):
    """Live previews since the server started: they are rendered only while someone watches a job."""

    rendered: int = Field(0, description="Previews the generation process rendered and the server received.")
    watched_jobs: int = Field(0, description="Unfinished jobs someone watches now (their previews are rendered).")


class Health(BaseModel):
    status: Literal["ok"] = "ok"
    model: ModelHealth
    queue: QueueHealth
    workers: WorkersHealth
    previews: PreviewHealth = PreviewHealth()


class ErrorBody(BaseModel):
    detail: str


class ModelSwitchRequest(_Strict):
    """Body of `POST /api/model`."""

    model: str = Field(
        min_length=1,
        max_length=1000,
        description="A Hugging Face hub id (owner/name), a local diffusers folder, or a .safetensors/.ckpt file.",
    )


class ModelSwitchResponse(BaseModel):
    model: str = Field(description="The model now loading (as resolved: absolute path or hub id).")
    state: ModelState
    failed_jobs: list[str] = Field(
        default_factory=list,
        description="Jobs that were waiting for the previous model; they fail with a reason (submit them again).",
    )


class KnownModel(BaseModel):
    model: str = Field(description="What to POST to /api/model.")
    name: str
    kind: Literal["folder", "single_file", "hub"]


class ModelList(BaseModel):
    """`GET /api/models`: the current model and the local ones found under assets/models and <data_dir>/models."""

    current: ModelHealth
    models: list[KnownModel]


# --------------------------------------------------------------------------- client -> server


class PingMessage(_Strict):
    type: Literal["ping"]


class SubscribeMessage(_Strict):
    type: Literal["subscribe"]
    session_id: str
    after_seq: int | None = Field(None, ge=0, description="Replay every stored message with a larger seq.")
    previews: bool = Field(False, description="Also send generation_preview messages.")


class UnsubscribeMessage(_Strict):
    type: Literal["unsubscribe"]
    session_id: str


class CancelMessage(_Strict):
    type: Literal["cancel"]
    session_id: str


ClientMessage = Annotated[
    Union[PingMessage, SubscribeMessage, UnsubscribeMessage, CancelMessage], Field(discriminator="type")
]
client_message_adapter: TypeAdapter[ClientMessage] = TypeAdapter(ClientMessage)


def client_message_types() -> tuple[str, ...]:
    """The `type` of every message a client may send, in the order of the `ClientMessage` union."""
    union = get_args(ClientMessage)[0]
    return tuple(get_args(model.model_fields["type"].annotation)[0] for model in get_args(union))


# --------------------------------------------------------------------------- server -> client


class PongMessage(BaseModel):
    type: Literal["pong"] = "pong"


class ErrorMessage(BaseModel):
    type: Literal["error"] = "error"
    error: str
    session_id: str | None = None


class SubscribedMessage(BaseModel):
    type: Literal["subscribed"] = "subscribed"
    session_id: str
    status: JobStatus
    last_seq: int


class UnsubscribedMessage(BaseModel):
    type: Literal["unsubscribed"] = "unsubscribed"
    session_id: str


class SessionMessage(BaseModel):
    """Base of every message about one generation session; `seq` grows by one per message."""

    session_id: str
    seq: int = 0


class GenerationQueued(SessionMessage):
    type: Literal["generation_queued"] = "generation_queued"
    position: int


class GenerationStarted(SessionMessage):
    type: Literal["generation_started"] = "generation_started"
    total_steps: int
    model: str
    worker: str = Field("", description="The name of the worker running it (again, after a worker died).")


class GenerationProgress(SessionMessage):
    type: Literal["generation_progress"] = "generation_progress"
    step: int
    total_steps: int
    message: str
    eta_seconds: float | None = None


class GenerationPreview(SessionMessage):
    type: Literal["generation_preview"] = "generation_preview"
    step: int
    image: str = Field(description="A small JPEG as a data: URL.")
    image_url: str = Field(
        description="The same preview served by the server (latest of the running job; 404 once it ended)."
    )
    width: int
    height: int


class GenerationComplete(SessionMessage):
    type: Literal["generation_complete"] = "generation_complete"
    image_paths: list[str]
    image_urls: list[str]
    metadata: GenerationMetadata


class GenerationError(SessionMessage):
    type: Literal["generation_error"] = "generation_error"
    error: str


class GenerationCancelled(SessionMessage):
    type: Literal["generation_cancelled"] = "generation_cancelled"


class ModelLoading(BaseModel):
    """Sent to every /ws client about every half second while a model downloads from the hub, and once when done."""

    type: Literal["model_loading"] = "model_loading"
    model: str
    downloaded_bytes: int
    total_bytes: int | None = Field(None, description="An estimate; null when the hub did not tell.")


SessionEvent = Union[
    GenerationQueued,
    GenerationStarted,
    GenerationProgress,
    GenerationPreview,
    GenerationComplete,
    GenerationError,
    GenerationCancelled,
]
TERMINAL_EVENTS: tuple[type[SessionMessage], ...] = (GenerationComplete, GenerationError, GenerationCancelled)

ServerMessage = Annotated[
    Union[PongMessage, ErrorMessage, SubscribedMessage, UnsubscribedMessage, ModelLoading, SessionEvent],
    Field(discriminator="type"),
]
server_message_adapter: TypeAdapter[ServerMessage] = TypeAdapter(ServerMessage)


def progress_text(step: int, total_steps: int) -> str:
    percent = round(100 * step / total_steps) if total_steps else 0
    return f"Generating... {percent}%"
