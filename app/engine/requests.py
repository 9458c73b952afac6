"""A generation request made ready to queue: its inputs stored, its LoRAs gathered, and every field checked
against the loaded model, each problem named by its field (the faces turn them into 422s or messages).

In two parts, because storing an input decodes an image (slow for a big one) while the checks against
the model are quick:

- `prepare`: store the init and mask images (app/engine/inputs.py) and name them by their stored names;
  take AUTOMATIC1111's `<lora:name:weight>` tags out of the prompt into `loras`. Safe in any thread.
- `check`: against the model the generation process reported (modes, sizes, samplers, LoRA layers) and
  the LoRA folder; fills width/height from the input's aspect ratio when omitted. On the event loop.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from ..pipeline.lora_files import parse_prompt_loras
from ..pipeline.values import SizeLimits, mode_of
from ..protocol import GenerateRequest, LoraRequest
from .inputs import InputProblem, InputStore, StoredInput, same_aspect
from .loras import LoraLibrary

Problems = list[tuple[str, str]]
MODE_NAMES = {"txt2img": "text-to-image", "img2img": "image-to-image", "inpaint": "inpainting"}


@dataclass(frozen=True)
class PreparedRequest:
    """`request` with its inputs stored (named by their stored names) and its prompt's LoRA tags moved
    into `loras`; `problems` found on the way (field, message)."""

    request: GenerateRequest
    init: StoredInput | None = None
    mask: StoredInput | None = None
    problems: Problems = field(default_factory=list)
    lora_fields: dict[str, str] = field(default_factory=dict)  # LoRA name -> the field that asked for it


class ModelFacts(Protocol):
    """What the engine knows of the loaded model (`PipelineProcess`): reported once it loaded."""

    model_name: str
    family: str | None
    size_limits: SizeLimits
    modes: tuple[str, ...] | None
    supports_lora: bool | None
    lora_layers: dict[str, int]

    def supported_schedulers(self) -> tuple[str, ...]: ...


def prepare(request: GenerateRequest, inputs: InputStore) -> PreparedRequest:
    problems: Problems = []
    stored: dict[str, StoredInput] = {}
    for role in ("init_image", "mask_image"):
        reference = getattr(request, role)
        if reference is None:
            continue
        try:
            stored[role] = inputs.store_for(reference, role)
        except InputProblem as problem:
            problems.append((role, f"{role}: {problem}"))
    prompt, tagged = parse_prompt_loras(request.prompt)
    named = {lora.name for lora in request.loras}
    lora_fields = {lora.name: "loras" for lora in request.loras}
    loras = list(request.loras)
    for name, weight in tagged:
        if name not in named:  # an explicit `loras` entry wins over a tag of the same name
            named.add(name)
            lora_fields[name] = "prompt"
            loras.append(LoraRequest(name=name, weight=weight))
    if tagged and not prompt.strip():
        problems.append(("prompt", "the prompt holds only LoRA tags; describe what to draw too"))
        prompt = request.prompt
    updates = {"prompt": prompt, "loras": loras}
    updates.update({role: item.name for role, item in stored.items()})
    return PreparedRequest(
        request.model_copy(update=updates), stored.get("init_image"), stored.get("mask_image"), problems, lora_fields
    )


def check(prepared: PreparedRequest, model: ModelFacts, loras: LoraLibrary) -> tuple[GenerateRequest, Problems]:
    """The request as it will be queued, and every problem with it on this model."""
    request, problems = prepared.request, list(prepared.problems)
    updates: dict[str, object] = {}
    limits = model.size_limits
    width, height = request.width, request.height
    if prepared.init is not None and not (width and height):
        width, height = limits.with_aspect(prepared.init.width, prepared.init.height)
        updates.update(width=width, height=height)
    problems += limits.problems(width or limits.default_width, height or limits.default_height)
    if request.scheduler is not None:
        name = request.scheduler.strip().lower()
        allowed = model.supported_schedulers()
        if name in allowed:
            updates["scheduler"] = name
        else:
            problems.append(("scheduler", f"scheduler {request.scheduler!r} is not available for model "
                                          f"{model.model_name!r}; allowed: {', '.join(allowed)}"))
    if prepared.init is not None and prepared.mask is not None and not same_aspect(prepared.init, prepared.mask):
        problems.append(("mask_image", f"the mask is {prepared.mask.width}×{prepared.mask.height} and the image "
                                       f"{prepared.init.width}×{prepared.init.height}: not the same aspect ratio"))
    problems += _mode_problems(request, model)
    problems += _lora_problems(prepared, model, loras)
    return request.model_copy(update=updates), problems


def _mode_problems(request: GenerateRequest, model: ModelFacts) -> Problems:
    mode = mode_of(request.init_image is not None, request.mask_image is not None)
    if model.modes is None or mode in model.modes:
        return []
    field_name = {"txt2img": "init_image", "img2img": "init_image", "inpaint": "mask_image"}[mode]
    can = ", ".join(MODE_NAMES[name] for name in model.modes) or "nothing"
    return [(field_name, f"model {model.model_name!r} cannot do {MODE_NAMES[mode]} (it can do: {can})")]


def _lora_problems(prepared: PreparedRequest, model: ModelFacts, loras: LoraLibrary) -> Problems:
    problems: Problems = []
    for wanted in prepared.request.loras:
        field_name = prepared.lora_fields.get(wanted.name, "loras")
        if model.supports_lora is False:
            problems.append((field_name, f"model {model.model_name!r} cannot use LoRAs (asked for {wanted.name!r})"))
            continue
        lora = loras.get(wanted.name)
        if lora is None:
            known = ", ".join(loras.names()) or "none"
            problems.append((field_name, f"unknown LoRA {wanted.name!r}: no {wanted.name}.safetensors in "
                                         f"{loras.folder} (GET /api/loras lists: {known})"))
            continue
        misfit = lora.misfit(model.family, model.lora_layers)
        if misfit is not None:
            problems.append((field_name, f"LoRA {wanted.name!r} does not fit model {model.model_name!r}: {misfit}"))
    return problems
