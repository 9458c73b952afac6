"""Per-request schedulers: names map to the right samplers, keep the model's noise schedule,
refuse what a family cannot run, and actually drive every tiny pipeline reproducibly."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from diffusers import (
    DDIMScheduler,
    DPMSolverMultistepScheduler,
    EulerAncestralDiscreteScheduler,
    EulerDiscreteScheduler,
    FlowMatchEulerDiscreteScheduler,
    PNDMScheduler,
    UniPCMultistepScheduler,
)

from app.pipeline.schedulers import (
    FLOW_MATCHING_SCHEDULER_NAMES,
    SCHEDULER_NAMES,
    UnsupportedSchedulerError,
    make_scheduler,
    supported_schedulers,
)
from app.testing.tiny_models import FAMILIES
from tests.fixtures.families import generation_kwargs, load_tiny_pipeline

pytestmark = pytest.mark.usefixtures("torch_single_thread")

# The model's own schedulers, as a generator keeps them from load time.
SD15_SCHEDULER = PNDMScheduler(
    beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", skip_prk_steps=True, steps_offset=1
)
FLUX_SCHEDULER = FlowMatchEulerDiscreteScheduler(shift=3.0, use_dynamic_shifting=True, base_shift=0.5, max_shift=1.15)

DIFFUSION_CLASSES = {
    "default": PNDMScheduler,
    "euler": EulerDiscreteScheduler,
    "euler_a": EulerAncestralDiscreteScheduler,
    "dpmpp_2m": DPMSolverMultistepScheduler,
    "dpmpp_2m_karras": DPMSolverMultistepScheduler,
    "ddim": DDIMScheduler,
    "unipc": UniPCMultistepScheduler,
}


def test_required_names_are_offered() -> None:
    assert {"default", "euler", "euler_a", "dpmpp_2m_karras", "ddim", "unipc"} <= set(SCHEDULER_NAMES)
    assert set(DIFFUSION_CLASSES) == set(SCHEDULER_NAMES)


@pytest.mark.parametrize("name", SCHEDULER_NAMES)
@pytest.mark.parametrize("prediction_type", ["epsilon", "v_prediction"])
def test_diffusion_samplers_keep_the_models_schedule(name: str, prediction_type: str) -> None:
    base = PNDMScheduler.from_config(SD15_SCHEDULER.config, prediction_type=prediction_type)

    scheduler = make_scheduler(name, base)

    assert type(scheduler) is DIFFUSION_CLASSES[name] or type(scheduler).__bases__ == (DIFFUSION_CLASSES[name],)
    assert scheduler.config.prediction_type == prediction_type
    assert scheduler.config.beta_schedule == "scaled_linear"
    assert scheduler.config.beta_end == pytest.approx(0.012)
    if "use_karras_sigmas" in scheduler.config:
        assert scheduler.config.use_karras_sigmas == name.endswith("_karras")
    if isinstance(scheduler, DPMSolverMultistepScheduler):
        assert scheduler.config.algorithm_type == "dpmsolver++"
        assert scheduler.config.solver_order == 2


def test_model_karras_setting_does_not_leak_into_plain_samplers() -> None:
    karras_base = EulerDiscreteScheduler.from_config(SD15_SCHEDULER.config, use_karras_sigmas=True)

    assert make_scheduler("euler", karras_base).config.use_karras_sigmas is False
    assert make_scheduler("dpmpp_2m", karras_base).config.use_karras_sigmas is False
    assert make_scheduler("default", karras_base).config.use_karras_sigmas is True


def test_dpmpp_2m_karras_runs_every_step_on_a_cosine_schedule() -> None:
    """The embedded model's schedule (cosine betas, v-prediction): Karras sigmas put its first steps on one
    timestep, and diffusers used to start at the second of them and fail with an IndexError."""
    import torch

    cosine = DPMSolverMultistepScheduler(
        beta_schedule="squaredcos_cap_v2", prediction_type="v_prediction", steps_offset=1
    )
    for steps in (6, 20, 30):
        scheduler = make_scheduler("dpmpp_2m_karras", cosine)
        scheduler.set_timesteps(steps)
        assert len(set(scheduler.timesteps.tolist())) < steps  # the duplicated timesteps are there
        sample = torch.ones(1, 4, 8, 8)
        for timestep in scheduler.timesteps:
            sample = scheduler.step(torch.zeros_like(sample), timestep, sample).prev_sample
        assert scheduler.step_index == steps and torch.isfinite(sample).all()


def test_each_call_returns_a_fresh_scheduler() -> None:
    first, second = make_scheduler("default", SD15_SCHEDULER), make_scheduler("default", SD15_SCHEDULER)
    assert type(first) is PNDMScheduler
    assert first is not SD15_SCHEDULER and first is not second
    public = lambda config: {k: v for k, v in config.items() if not k.startswith("_")}  # noqa: E731
    assert public(first.config) == public(SD15_SCHEDULER.config)


@pytest.mark.parametrize("name", ["", "Euler a", "k_euler", "dpm++", "lcm"])
def test_unknown_name_raises_value_error_listing_allowed_names(name: str) -> None:
    with pytest.raises(ValueError) as error:
        make_scheduler(name, SD15_SCHEDULER)
    assert not isinstance(error.value, UnsupportedSchedulerError)
    for allowed in SCHEDULER_NAMES:
        assert allowed in str(error.value)


def test_names_are_matched_case_insensitively() -> None:
    assert isinstance(make_scheduler(" DDIM ", SD15_SCHEDULER), DDIMScheduler)


@pytest.mark.parametrize("name", sorted(set(SCHEDULER_NAMES) - set(FLOW_MATCHING_SCHEDULER_NAMES)))
def test_flow_matching_models_refuse_diffusion_only_samplers(name: str) -> None:
    with pytest.raises(UnsupportedSchedulerError, match="flow-matching") as error:
        make_scheduler(name, FLUX_SCHEDULER)
    assert isinstance(error.value, ValueError)
    for allowed in FLOW_MATCHING_SCHEDULER_NAMES:
        assert allowed in str(error.value)


def test_flow_matching_samplers_keep_shift_and_dynamic_shifting() -> None:
    euler = make_scheduler("euler", FLUX_SCHEDULER)
    assert type(euler) is FlowMatchEulerDiscreteScheduler and euler.config.use_dynamic_shifting

    for name, cls in (("unipc", UniPCMultistepScheduler), ("dpmpp_2m", DPMSolverMultistepScheduler)):
        scheduler = make_scheduler(name, FLUX_SCHEDULER)
        assert type(scheduler) is cls
        assert scheduler.config.use_flow_sigmas is True
        assert scheduler.config.prediction_type == "flow_prediction"
        assert scheduler.config.flow_shift == pytest.approx(3.0)
        assert scheduler.config.use_dynamic_shifting is True


def test_bare_config_mapping_is_understood_without_a_class_name() -> None:
    flux_mapping = {k: v for k, v in FLUX_SCHEDULER.config.items() if not k.startswith("_")}
    assert type(make_scheduler("euler", flux_mapping)) is FlowMatchEulerDiscreteScheduler
    assert supported_schedulers(FLUX_SCHEDULER) == FLOW_MATCHING_SCHEDULER_NAMES
    with pytest.raises(UnsupportedSchedulerError):
        make_scheduler("ddim", flux_mapping)
    with pytest.raises(ValueError, match="pass the model's scheduler itself"):
        make_scheduler("default", flux_mapping)
    with_name = {**flux_mapping, "_class_name": "FlowMatchEulerDiscreteScheduler"}  # as read from JSON
    assert type(make_scheduler("default", with_name)) is FlowMatchEulerDiscreteScheduler


def test_supported_schedulers_by_family_name() -> None:
    assert supported_schedulers("sd") == SCHEDULER_NAMES
    assert supported_schedulers("SDXL") == SCHEDULER_NAMES
    assert supported_schedulers("sd3") == FLOW_MATCHING_SCHEDULER_NAMES
    assert supported_schedulers("flux") == FLOW_MATCHING_SCHEDULER_NAMES
    with pytest.raises(ValueError, match="unknown model family"):
        supported_schedulers("kandinsky")


@pytest.mark.parametrize("family", FAMILIES)
def test_every_supported_sampler_runs_the_family(family: str, tiny_pipeline_dirs: dict[str, Path]) -> None:
    pipe = load_tiny_pipeline(tiny_pipeline_dirs[family])
    model_config = pipe.scheduler.config
    names = supported_schedulers(pipe)
    assert names == supported_schedulers(family)

    for name in names:
        pipe.scheduler = make_scheduler(name, model_config)
        image = np.asarray(pipe(**generation_kwargs(steps=2)).images[0])
        assert image.shape == (64, 64, 3), name
        assert image.std() > 0, name
        # A replaced scheduler must not change what the pipeline is judged to support.
        assert supported_schedulers(pipe) == names


@pytest.mark.parametrize("family", FAMILIES)
def test_same_seed_same_image_other_seed_or_sampler_differs(family: str, tiny_pipeline_dirs: dict[str, Path]) -> None:
    pipe = load_tiny_pipeline(tiny_pipeline_dirs[family])
    model_config = pipe.scheduler.config

    def render(seed: int, scheduler: str) -> np.ndarray:
        pipe.scheduler = make_scheduler(scheduler, model_config)
        return np.asarray(pipe(**generation_kwargs(seed=seed, steps=3)).images[0]).astype(np.int16)

    reference = render(seed=1, scheduler="euler")
    assert np.array_equal(render(seed=1, scheduler="euler"), reference)
    assert np.abs(render(seed=2, scheduler="euler") - reference).max() > 0
    assert np.abs(render(seed=1, scheduler="unipc") - reference).max() > 0
