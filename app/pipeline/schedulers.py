"""Per-request samplers under stable, UI-friendly names.

A scheduler is stateful (step index, solver history), so every request gets a fresh
one built with `from_config` from the model's *original* scheduler config.  That
config carries the model's noise schedule and `prediction_type` (epsilon,
v_prediction, flow), so an SD 2.x v-prediction model keeps predicting v with any
sampler.

SD 1.x/2.x and SDXL are denoising-diffusion models and accept every name.  SD3 and
Flux are flow-matching models: only samplers with a flow-matching mode apply
("euler" is FlowMatchEulerDiscreteScheduler; "unipc" and "dpmpp_2m" run with flow
sigmas).  Asking such a model for "ddim" raises `UnsupportedSchedulerError`.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from .values import (
    DEFAULT_SCHEDULER,
    FLOW_MATCHING_SCHEDULER_NAMES,
    SCHEDULER_NAMES,
    schedulers_for_family,
)

if TYPE_CHECKING:  # diffusers is imported where it is used
    from diffusers.schedulers.scheduling_utils import SchedulerMixin


class UnsupportedSchedulerError(ValueError):
    """A known scheduler name that the model's family cannot use."""


def _as_config(base_config: Any) -> dict[str, Any]:
    """Accept a scheduler, its `.config` (FrozenDict) or a plain mapping."""
    config = getattr(base_config, "config", base_config)
    if not isinstance(config, Mapping):
        raise TypeError(f"expected a scheduler or its config, got {type(base_config).__name__}")
    config = dict(config)
    # Only configs read from scheduler_config.json carry `_class_name`; an instance knows its class.
    # (A plain config is judged without importing diffusers.)
    if not isinstance(base_config, Mapping):
        from diffusers.schedulers.scheduling_utils import SchedulerMixin

        if isinstance(base_config, SchedulerMixin):
            config["_class_name"] = type(base_config).__name__
    return config


def is_flow_matching_config(base_config: Any) -> bool:
    config = _as_config(base_config)
    class_name = str(config.get("_class_name", ""))
    return (
        class_name.startswith("FlowMatch")
        or config.get("prediction_type") == "flow_prediction"
        or bool(config.get("use_flow_sigmas", False))
        # a nameless FlowMatch* config: a flow shift and no beta schedule
        or (not class_name and "shift" in config and "beta_schedule" not in config)
    )


def _unknown_name_error(name: str) -> ValueError:
    return ValueError(f"unknown scheduler {name!r}; allowed names: {', '.join(SCHEDULER_NAMES)}")


def _default_scheduler(config: dict[str, Any]) -> SchedulerMixin:
    import diffusers
    from diffusers.schedulers.scheduling_utils import SchedulerMixin

    class_name = config.get("_class_name")
    scheduler_class = getattr(diffusers, str(class_name), None) if class_name else None
    if scheduler_class is None or not issubclass(scheduler_class, SchedulerMixin):
        raise ValueError(
            f"cannot rebuild the model's own scheduler from a config naming {class_name!r}; "
            "pass the model's scheduler itself, or its config as read from scheduler_config.json"
        )
    return scheduler_class.from_config(config)


@functools.cache
def _karras_dpm_solver() -> type[SchedulerMixin]:
    """DPM++ 2M with Karras sigmas that always starts at the first of its timesteps.

    On a schedule with a very large sigma_max (cosine betas, as the embedded model's), Karras sigmas map
    several of the first sigmas to the same timestep; diffusers then finds the second of those as the
    starting step and steps past the end of its sigmas (IndexError). Text-to-image starts at the first;
    image-to-image pipelines set their own begin index after `set_timesteps`, which still wins.
    """
    import diffusers

    class KarrasDPMSolverMultistepScheduler(diffusers.DPMSolverMultistepScheduler):
        def set_timesteps(self, *args: Any, **kwargs: Any) -> None:
            super().set_timesteps(*args, **kwargs)
            self.set_begin_index(0)

    return KarrasDPMSolverMultistepScheduler


def _diffusion_scheduler(name: str, config: dict[str, Any]) -> SchedulerMixin:
    import diffusers

    # use_karras_sigmas is set explicitly both ways: a model whose own config turns it on
    # must not leak Karras sigmas into the samplers that are not named "karras".
    if name == "euler":
        return diffusers.EulerDiscreteScheduler.from_config(config, use_karras_sigmas=False)
    if name == "euler_a":
        return diffusers.EulerAncestralDiscreteScheduler.from_config(config)
    if name in ("dpmpp_2m", "dpmpp_2m_karras"):
        solver = _karras_dpm_solver() if name == "dpmpp_2m_karras" else diffusers.DPMSolverMultistepScheduler
        return solver.from_config(
            config,
            algorithm_type="dpmsolver++",
            solver_order=2,
            use_karras_sigmas=name == "dpmpp_2m_karras",
        )
    if name == "ddim":
        return diffusers.DDIMScheduler.from_config(config)
    if name == "unipc":
        return diffusers.UniPCMultistepScheduler.from_config(config, use_karras_sigmas=False)
    raise _unknown_name_error(name)


def _flow_scheduler(name: str, config: dict[str, Any]) -> SchedulerMixin:
    import diffusers

    # FlowMatchEuler calls its static shift "shift"; the multistep solvers call it "flow_shift".
    # Dynamic shifting (Flux: `mu` from the image size) carries over under the same key names.
    flow = {
        "use_flow_sigmas": True,
        "prediction_type": "flow_prediction",
        "flow_shift": float(config.get("shift", 1.0)),
        "use_karras_sigmas": False,
    }
    if name == "euler":
        return diffusers.FlowMatchEulerDiscreteScheduler.from_config(config, use_karras_sigmas=False)
    if name == "dpmpp_2m":
        return diffusers.DPMSolverMultistepScheduler.from_config(config, algorithm_type="dpmsolver++", solver_order=2, **flow)
    if name == "unipc":
        return diffusers.UniPCMultistepScheduler.from_config(config, **flow)
    raise UnsupportedSchedulerError(
        f"scheduler {name!r} does not support flow-matching models (SD3, Flux); "
        f"choose one of: {', '.join(FLOW_MATCHING_SCHEDULER_NAMES)}"
    )


def make_scheduler(name: str, base_config: Any) -> SchedulerMixin:
    """A fresh scheduler called `name`, configured from the model's own scheduler config.

    `base_config` is the model's original scheduler (preferred) or its `.config`; keep it
    from load time, because assigning `pipe.scheduler` replaces `pipe.scheduler.config`.
    Raises ValueError (naming the allowed names) for an unknown name and
    UnsupportedSchedulerError (a ValueError) for a name the model family cannot use.
    """
    normalized = name.strip().lower() if isinstance(name, str) else name
    if normalized not in SCHEDULER_NAMES:
        raise _unknown_name_error(name)
    config = _as_config(base_config)
    if normalized == DEFAULT_SCHEDULER:
        return _default_scheduler(config)
    if is_flow_matching_config(config):
        return _flow_scheduler(normalized, config)
    return _diffusion_scheduler(normalized, config)


def supported_schedulers(pipe_or_family: Any) -> tuple[str, ...]:
    """Scheduler names usable with a pipeline (judged by its scheduler) or a family name."""
    if isinstance(pipe_or_family, str):
        return schedulers_for_family(pipe_or_family)
    scheduler = getattr(pipe_or_family, "scheduler", pipe_or_family)
    return FLOW_MATCHING_SCHEDULER_NAMES if is_flow_matching_config(scheduler) else SCHEDULER_NAMES
