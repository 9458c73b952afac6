"""The studio's model picker with NiceGUI's simulated `User` on the real engine: listing, switching
(loading -> ready), readable errors, and hub download progress from real `model_loading` messages
(the real huggingface_hub download path against the local fake hub of `tests/fake_hub.py`)."""
from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from nicegui import ui
from nicegui.testing.user import User

from app.testing.tiny_models import build_tiny_pipeline
from components.model_picker import download_text, format_bytes
from tests.fake_hub import FakeHub

from .conftest import engine
from .test_studio_user import (
    JOB_TIMEOUT_RETRIES,
    element,
    fill_and_generate,
    open_studio,
)

SECOND_MODEL = "second-sd"
HUB_REPO = "tiny-org/tiny-sd"


@pytest.fixture(scope="module")
def second_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Another tiny SD pipeline (other weights), built once for the module."""
    return build_tiny_pipeline("sd", tmp_path_factory.mktemp("picker-models") / SECOND_MODEL, seed=1)


def install_local_model(tmp_path: Path, model: Path) -> Path:
    """Put `model` where the engine looks for local models (<data_dir>/models), as a link."""
    models = tmp_path / "data" / "models"
    models.mkdir(parents=True, exist_ok=True)
    (models / model.name).symlink_to(model, target_is_directory=True)
    return model.resolve()


async def wait_until(condition: Callable[[], bool], what: str, timeout: float = 60.0) -> None:
    """Poll a condition on what the page shows (the download runs in another thread)."""
    deadline = asyncio.get_running_loop().time() + timeout
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, f"timed out waiting until {what}"
        await asyncio.sleep(0.05)


def picker_state(user: User) -> str:
    return element(user, "picker-state").text


async def test_the_picker_lists_the_models_and_switches_loading_then_ready(
    user: User, tmp_path: Path, second_model: Path
) -> None:
    second = install_local_model(tmp_path, second_model)
    await open_studio(user)
    current = engine().health().model.id
    select = element(user, "model-select")
    assert isinstance(select, ui.select)
    assert select.value == current, "the picker shows the loaded model"
    known = {model.model for model in engine().models().models}
    assert set(select.options) == known | {current}, "the current model and every known local one"
    assert str(second) in select.options, "the one in <data>/models"
    assert select.options[str(second)] == f"{SECOND_MODEL} · folder"
    assert picker_state(user) == "Ready"

    select.set_value(str(second))  # the artist picks the other model
    assert engine().health().model.id == str(second), "picking a model switches the engine"
    await user.should_see(marker="picker-state", content="Loading…", retries=1)
    await user.should_see(marker="model-state", content="Loading model…", retries=1)  # the header too
    await user.should_see(f"Loading {SECOND_MODEL}…")
    assert not select.enabled, "no second switch while one loads"

    await user.should_see(marker="picker-state", content="Ready", retries=JOB_TIMEOUT_RETRIES)
    await user.should_see(marker="model-name", content=SECOND_MODEL, retries=1)
    assert engine().health().model.state == "ready"
    assert select.value == str(second) and select.enabled
    assert current in select.options, "the previous model stays in the list, to switch back"
    assert "euler" in element(user, "scheduler").options, "samplers follow the new model"
    limits = engine().size_limits
    for key in element(user, "size").options:
        width, height = (int(side) for side in key.split("x"))
        assert not limits.problems(width, height), f"preset {key} is not valid for the new model"

    card = await fill_and_generate(user, "on the second model", steps=10)
    with user.scope(marker=card):
        await user.should_see("Done", retries=JOB_TIMEOUT_RETRIES)
    user.find(marker="result-image").click()
    with user.scope(marker="image-dialog"):
        await user.should_see(SECOND_MODEL)  # the image says which model made it


async def test_a_bad_reference_says_what_is_wrong_and_a_failed_load_shows_its_error(
    user: User, tmp_path: Path, model_dir: Path
) -> None:
    await open_studio(user)
    current = engine().health().model.id
    missing = tmp_path / "nowhere" / "model"
    user.find(marker="model-reference").type(str(missing))
    user.find(marker="model-load").click()
    await user.should_see("Cannot load this model")
    await user.should_see("no such local folder or file", retries=1)
    assert engine().health().model.id == current and picker_state(user) == "Ready", "nothing was switched"
    assert element(user, "model-reference").value == str(missing), "the typed text stays, to fix it"

    not_a_pipeline = tmp_path / "just-a-folder"
    not_a_pipeline.mkdir()
    element(user, "model-reference").set_value(str(not_a_pipeline))
    user.find(marker="model-reference").trigger("keydown.enter")  # Enter loads too
    await user.should_see("model_index.json is missing")

    broken = tmp_path / "broken-model"
    broken.mkdir()
    (broken / "model_index.json").write_text('{"_class_name": "StableDiffusionPipeline", "unet": ["diffusers", "UNet2DConditionModel"]}')
    element(user, "model-reference").set_value(str(broken))
    user.find(marker="model-load").click()
    await user.should_see(marker="picker-state", content="Failed", retries=JOB_TIMEOUT_RETRIES)
    error = engine().health().model.error
    assert error, "the engine reports why"
    await user.should_see(marker="model-error", content=error, retries=1)  # the engine's text, in the picker
    assert element(user, "model-reference").value in ("", None), "a started switch clears the field"

    element(user, "model-select").set_value(current)  # back to a model that works, from the list
    await user.should_see(marker="picker-state", content="Ready", retries=JOB_TIMEOUT_RETRIES)
    await user.should_not_see(marker="model-error", retries=1)
    assert Path(engine().health().model.id) == model_dir.resolve()


@pytest.fixture
def local_hub(second_model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeHub]:
    """huggingface_hub pointed at a gated fake hub serving `HUB_REPO`, with a fresh cache.

    This process imported huggingface_hub long before this test, so for the engine here the endpoint
    and cache are set on the module (what HF_ENDPOINT / HF_HOME would have given at import); the
    generation process that downloads the model reads them from the environment, set here as well.
    """
    from huggingface_hub import constants, hf_api

    with FakeHub({HUB_REPO: second_model}, gate=threading.Event()) as hub:
        monkeypatch.setenv("HF_ENDPOINT", hub.endpoint)
        monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))
        monkeypatch.setenv("HF_HUB_OFFLINE", "0")
        monkeypatch.setenv("HF_HUB_DISABLE_XET", "1")
        monkeypatch.setattr(constants, "ENDPOINT", hub.endpoint)
        monkeypatch.setattr(constants, "HUGGINGFACE_CO_URL_TEMPLATE", hub.endpoint + "/{repo_id}/resolve/{revision}/{filename}")
        monkeypatch.setattr(hf_api.api, "endpoint", hub.endpoint)
        monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hf-home" / "hub"))
        monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
        monkeypatch.setattr(constants, "HF_HUB_DISABLE_XET", True)
        try:
            yield hub
        finally:
            hub.gate.set()  # type: ignore[union-attr]


@pytest.mark.slow
async def test_a_hub_download_shows_its_progress_then_the_model_is_ready(
    user: User, local_hub: FakeHub, second_model: Path, tmp_path: Path
) -> None:
    expected_total = sum(file.stat().st_size for file in second_model.rglob("*") if file.is_file())
    await open_studio(user)
    await user.should_not_see(marker="model-download", retries=1)
    user.find(marker="model-reference").type(HUB_REPO)
    user.find(marker="model-load").click()
    await user.should_see(marker="picker-state", content="Loading…", retries=1)

    # model_loading messages arrive from the download's watcher thread; configs come, weights wait
    await user.should_see(marker="download-text", content=f"of {format_bytes(expected_total)}",
                          retries=JOB_TIMEOUT_RETRIES)
    bar: Any = element(user, "download-progress")
    await wait_until(lambda: bar.value > 0, "the bar shows the downloaded configs")
    assert bar.value < 1, "the weights are still held back"
    downloaded = round(bar.value * expected_total)  # no await since reading the bar: the same message
    assert element(user, "download-text").text == download_text(downloaded, expected_total)

    local_hub.gate.set()  # type: ignore[union-attr]  # the weights may come now
    await user.should_see(marker="picker-state", content="Ready", retries=JOB_TIMEOUT_RETRIES)
    await user.should_not_see(marker="model-download", retries=1)  # progress goes once the model is ready
    await user.should_see(marker="model-name", content=HUB_REPO, retries=1)
    health = engine().health().model
    assert health.id == HUB_REPO and health.state == "ready"
    assert (tmp_path / "hf-home" / "hub" / "models--tiny-org--tiny-sd").is_dir(), "in the standard cache"
    assert any("/resolve/" in request for request in local_hub.requests)


def test_download_text_reads_naturally() -> None:
    assert download_text(1_500_000, 4_000_000) == "Downloading 1.5 MB of 4.0 MB (38 %)"
    assert download_text(512, None) == "Downloading 512 B"
    assert format_bytes(2_500_000_000) == "2.5 GB"
