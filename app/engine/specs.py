"""A stored job turned into the `JobSpec` a generation process runs (here, or on a remote worker): its
input images and LoRAs by value, sizes defaulted from the model, the seed drawn when none was asked."""
from __future__ import annotations

from ..config import PreviewSettings
from ..pipeline.messages import InputImage, JobSpec
from ..pipeline.values import LoraRef, SizeLimits, random_seed
from ..protocol import GenerateRequest
from .inputs import InputProblem, InputStore
from .loras import LoraLibrary
from .store import JobRecord


def job_spec(
    record: JobRecord,
    size_limits: SizeLimits,
    previews: PreviewSettings,
    images_dir: str,
    inputs: InputStore,
    loras: LoraLibrary,
    previews_watched: bool = True,
) -> JobSpec:
    """Raises InputProblem when an input image or LoRA the job names is gone. `previews_watched`: whether
    someone watches the job's previews now (they are rendered only then)."""
    request = record.request

    def read(name: str | None) -> InputImage | None:
        return None if name is None else InputImage(name, inputs.read(name))

    return JobSpec(
        session_id=record.id,
        prompt=request.prompt,
        negative_prompt=request.negative_prompt,
        num_inference_steps=request.num_inference_steps,
        guidance_scale=request.guidance_scale,
        num_images=request.num_images,
        seed=request.seed if request.seed is not None else random_seed(),
        width=request.width or size_limits.default_width,
        height=request.height or size_limits.default_height,
        scheduler=request.scheduler,
        previews=previews,
        images_dir=images_dir,
        init_image=read(request.init_image),
        mask_image=read(request.mask_image),
        strength=request.strength,
        mask_blur=request.mask_blur,
        loras=lora_refs(request, loras),
        previews_watched=previews_watched,
    )


def lora_refs(request: GenerateRequest, loras: LoraLibrary) -> tuple[LoraRef, ...]:
    """The job's LoRAs with the content hash of the files the server has now (the generation process,
    here or on another machine, checks it loads the same ones)."""
    refs = []
    for wanted in request.loras:
        lora = loras.get(wanted.name)
        if lora is None or lora.problem is not None:
            raise InputProblem(f"the LoRA {wanted.name!r} is no longer in {loras.folder}")
        refs.append(LoraRef(wanted.name, lora.sha256, wanted.weight))
    return tuple(refs)
