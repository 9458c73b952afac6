"""Shared fixtures for the per-family model tests: tiny random pipelines built once per session.

Import the fixtures into a test module (`from tests.conftest_families import ...`).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import torch

from app.tiny_models import FAMILIES, TINY_IMAGE_SIZE, build_tiny_pipeline

PROMPT = "a painting of a cat"

# Each module that imports a session fixture gets its own fixture definition, so builds
# and loads are cached here to happen once per process.
_built_dirs: dict[str, Path] = {}
_loaded_pipelines: dict[str, Any] = {}


@contextmanager
def single_torch_thread() -> Iterator[None]:
    """Run tiny models on one thread: on a shared 2-core box, thread hand-offs cost ~30x the math."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


@pytest.fixture
def torch_single_thread() -> Iterator[None]:
    with single_torch_thread():
        yield


@pytest.fixture(scope="session")
def tiny_pipeline_dirs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """family -> folder of a saved tiny random pipeline ("sd", "sdxl", "sd3", "flux")."""
    if not _built_dirs:
        root = tmp_path_factory.mktemp("tiny_pipelines")
        with single_torch_thread():
            for family in FAMILIES:
                _built_dirs[family] = build_tiny_pipeline(family, root / family, seed=0)
    return dict(_built_dirs)


@pytest.fixture(scope="session")
def tiny_pipelines(tiny_pipeline_dirs: dict[str, Path]) -> dict[str, Any]:
    """family -> a loaded tiny pipeline shared by the session; tests must not swap its components."""
    if not _loaded_pipelines:
        for family, path in tiny_pipeline_dirs.items():
            _loaded_pipelines[family] = load_tiny_pipeline(path)
    return dict(_loaded_pipelines)


def load_tiny_pipeline(path: Path):
    """A fresh pipeline from a tiny folder, the way the server loads any text-to-image model."""
    from diffusers import AutoPipelineForText2Image

    pipe = AutoPipelineForText2Image.from_pretrained(path, local_files_only=True)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def generation_kwargs(seed: int = 0, steps: int = 2, height: int = TINY_IMAGE_SIZE, width: int = TINY_IMAGE_SIZE):
    return {
        "prompt": PROMPT,
        "num_inference_steps": steps,
        "height": height,
        "width": width,
        "generator": torch.Generator("cpu").manual_seed(seed),
    }
