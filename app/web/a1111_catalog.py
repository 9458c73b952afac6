"""What the AUTOMATIC1111-compatible API lists: checkpoints (our models), samplers and schedulers (ours under
A1111's names), and how an A1111 checkpoint title or sampler name is found among them."""
from __future__ import annotations

from pathlib import Path

from ..engine import Engine
from ..pipeline.values import A1111_SAMPLER_NAMES, a1111_sampler_name, sampler_from_a1111
from ..protocol import KnownModel
from .a1111_models import SamplerItem, SchedulerItem, SDModelItem

AUTOMATIC = "automatic"
KARRAS = "karras"
KARRAS_SAMPLER = "dpmpp_2m_karras"


def model_name_of(model: KnownModel) -> str:
    """A1111's `model_name`: the checkpoint's name without its file extension."""
    return Path(model.name).stem if model.kind == "single_file" else model.name


def checkpoints(engine: Engine) -> list[SDModelItem]:
    return [
        SDModelItem(title=model.name, model_name=model_name_of(model), filename=model.model)
        for model in engine.models().models
    ]


def find_checkpoint(engine: Engine, title: str) -> KnownModel | None:
    """The model an A1111 client means by `title` (its title, model name or file name; a "[hash]" suffix
    is ignored; any case)."""
    wanted = title.strip()
    if wanted.endswith("]") and " [" in wanted:
        wanted = wanted.rsplit(" [", 1)[0]
    wanted = wanted.lower()
    for model in engine.models().models:
        if wanted in (model.name.lower(), model_name_of(model).lower(), model.model.lower()):
            return model
    return None


def current_checkpoint(engine: Engine) -> KnownModel:
    current = engine.health().model.id
    return next(model for model in engine.models().models if model.model == current)


def samplers(engine: Engine) -> list[SamplerItem]:
    """The loaded model's samplers under A1111's names (our names as aliases)."""
    items = []
    for ours in engine.health().model.schedulers:
        options = {"scheduler": KARRAS} if ours == KARRAS_SAMPLER else {}
        items.append(SamplerItem(name=a1111_sampler_name(ours), aliases=[ours], options=options))
    return items


def schedulers(engine: Engine) -> list[SchedulerItem]:
    items = [SchedulerItem(name=AUTOMATIC, label="Automatic")]
    if KARRAS_SAMPLER in engine.health().model.schedulers:
        items.append(SchedulerItem(name=KARRAS, label="Karras", default_rho=7.0))
    return items


def resolve_sampler(
    name: str | None, scheduler: str | None, allowed: list[str]
) -> tuple[str | None, list[tuple[str, str]]]:
    """Our sampler for an A1111 `sampler_name` + `scheduler` (None: the model's own), and the problems found.

    A1111 1.9+ sends "DPM++ 2M" with scheduler "karras"; older clients send "DPM++ 2M Karras".
    """
    problems: list[tuple[str, str]] = []
    ours = sampler_from_a1111(name) if name else None
    names = ", ".join(A1111_SAMPLER_NAMES[sampler] for sampler in allowed if sampler in A1111_SAMPLER_NAMES)
    if name and ours is None:
        problems.append(("sampler_name", f"unknown sampler {name!r}; this model has: {names}"))
    schedule = (scheduler or AUTOMATIC).strip().lower()
    if schedule == KARRAS:
        if ours in ("dpmpp_2m", KARRAS_SAMPLER):
            ours = KARRAS_SAMPLER
        else:
            problems.append(("scheduler", "scheduler 'karras' works only with sampler DPM++ 2M here"))
    elif schedule != AUTOMATIC:
        problems.append(("scheduler", f"unknown scheduler {scheduler!r}; allowed: {AUTOMATIC}, {KARRAS}"))
    if ours is not None and ours not in allowed:
        message = f"sampler {a1111_sampler_name(ours)!r} is not available for this model; it has: {names}"
        problems.append(("sampler_name", message))
    return ours, problems
