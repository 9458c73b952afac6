"""Every model family through the whole server flow, offline: a tiny random pipeline of each architecture
(SD 1.x, SDXL, SD3, Flux, and an SD single-file checkpoint) served by a real server; progress to the
last step, previews for a previews subscriber, cancel, images saved with their metadata.
"""
from __future__ import annotations

import shutil
from pathlib import Path

import httpx
import pytest
from PIL import Image

from app.pipeline.png import read_png_metadata
from app.pipeline.schedulers import FLOW_MATCHING_SCHEDULER_NAMES, SCHEDULER_NAMES
from app.testing.tiny_models import TINY_IMAGE_SIZE
from tests.fixtures.family_servers import SERVED
from tests.server_jobs import run_job, submit
from tests.ws_client import WsClient, for_session, is_terminal

pytestmark = pytest.mark.slow  # servers (or an engine) of its own

FLOW = ("sd3", "flux")


@pytest.mark.parametrize("family", SERVED)
async def test_family_generates_with_progress_previews_metadata_and_cancels(family, family_servers):
    server = family_servers[family]
    health = httpx.get(f"{server.base_url}/api/health").json()["model"]
    assert health["state"] == "ready", health
    assert health["family"] == ("sd" if family == "single_file" else family)
    size = {"width": TINY_IMAGE_SIZE, "height": TINY_IMAGE_SIZE}

    async with httpx.AsyncClient(base_url=server.base_url) as http, WsClient(server.ws_url) as ws:
        messages = await run_job(http, ws, previews=True, num_inference_steps=4, seed=11, scheduler="euler", **size)
        done = messages[-1]
        assert done["type"] == "generation_complete", done
        progress = [m["step"] for m in messages if m["type"] == "generation_progress"]
        assert progress == [1, 2, 3, 4] and all(m["total_steps"] == 4 for m in messages if "total_steps" in m)
        previews = [m for m in messages if m["type"] == "generation_preview"]
        assert [m["step"] for m in previews] == [1, 2, 3, 4]
        # the linear preview has the latent's size: the image / 8 (Flux latents unpacked first)
        assert {(m["width"], m["height"]) for m in previews} == {(TINY_IMAGE_SIZE // 8, TINY_IMAGE_SIZE // 8)}

        metadata = done["metadata"]
        assert metadata["scheduler"] == "euler" and metadata["seed"] == 11
        assert metadata["model"] == Path(server.model_dir).name
        (path,) = done["image_paths"]
        with Image.open(path) as image:
            assert image.size == (TINY_IMAGE_SIZE, TINY_IMAGE_SIZE)
        parameters, stored = read_png_metadata(path)
        assert "Sampler: Euler," in parameters and stored.model == metadata["model"]

        long_job = await submit(http, num_inference_steps=150, **size)
        await ws.subscribe(long_job)
        await ws.recv_until(for_session(long_job, lambda m: m["type"] == "generation_progress"))
        assert (await http.post(f"/api/jobs/{long_job}/cancel")).status_code == 200
        ended = (await ws.recv_until(for_session(long_job, is_terminal)))[-1]
        assert ended["type"] == "generation_cancelled"
        job = (await http.get(f"/api/jobs/{long_job}")).json()
        assert job["status"] == "cancelled" and job["step"] < 150


@pytest.mark.parametrize("family", SERVED)
def test_sizes_and_schedulers_are_validated_against_the_family(family, family_servers):
    server = family_servers[family]
    model = httpx.get(f"{server.base_url}/api/health").json()["model"]
    flow = family in FLOW
    assert model["schedulers"] == list(FLOW_MATCHING_SCHEDULER_NAMES if flow else SCHEDULER_NAMES)

    odd = httpx.post(f"{server.base_url}/api/generate", json={"prompt": "x", "width": 72, "height": 64})
    if flow:  # 2x2 latent patches: sizes in multiples of 16
        assert odd.status_code == 422, odd.text
        (problem,) = odd.json()["detail"]
        assert problem["loc"][-1] == "width" and "multiple of 16" in problem["msg"]
        ddim = httpx.post(f"{server.base_url}/api/generate", json={"prompt": "x", "scheduler": "ddim"})
        assert ddim.status_code == 422 and ddim.json()["detail"][0]["loc"][-1] == "scheduler"
    else:
        assert odd.status_code == 200, odd.text
        httpx.post(f"{server.base_url}/api/jobs/{odd.json()['session_id']}/cancel")


def test_single_file_without_configs_fails_naming_what_is_missing(family_servers, single_file_checkpoint, tmp_path):
    server = family_servers["single_file"]
    lonely = tmp_path / "lonely.safetensors"
    shutil.copy(single_file_checkpoint, lonely)
    answer = httpx.post(f"{server.base_url}/api/model", json={"model": str(lonely)})
    assert answer.status_code == 202, answer.text
    health = server.wait_until(lambda h: h["model"]["state"] != "loading", timeout=120)
    assert health["model"]["state"] == "error"
    assert "single_file_config" in health["model"]["error"] and str(lonely) in health["model"]["error"]
    refused = httpx.post(f"{server.base_url}/api/generate", json={"prompt": "x"})
    session_id = refused.json()["session_id"]
    job = server.wait_until(lambda _h: httpx.get(f"{server.base_url}/api/jobs/{session_id}").json()["status"] != "queued")
    assert httpx.get(f"{server.base_url}/api/jobs/{session_id}").json()["error"].startswith("the model could not be loaded")
    assert job["model"]["state"] == "error"
