"""Per-request schedulers through a real server: validated at submit, applied per job, reproducible, recorded."""
from __future__ import annotations

import httpx
import numpy as np

from app.pipeline.png import read_png_metadata
from app.pipeline.schedulers import SCHEDULER_NAMES
from tests.server_jobs import pixels, run_job
from tests.ws_client import WsClient

BODY = {"prompt": "a lighthouse in a storm", "num_inference_steps": 4, "seed": 1234}


async def test_same_seed_and_scheduler_give_equal_pixels_and_another_scheduler_changes_them(server):
    async with httpx.AsyncClient(base_url=server.base_url) as http, WsClient(server.ws_url) as ws:
        first = (await run_job(http, ws, **BODY, scheduler="euler_a"))[-1]
        again = (await run_job(http, ws, **BODY, scheduler="Euler_A"))[-1]
        other = (await run_job(http, ws, **BODY, scheduler="ddim"))[-1]
        default = (await run_job(http, ws, **BODY))[-1]
    for done in (first, again, other, default):
        assert done["type"] == "generation_complete", done
    assert first["image_paths"] != again["image_paths"]
    assert np.array_equal(pixels(first["image_paths"][0]), pixels(again["image_paths"][0]))
    assert not np.array_equal(pixels(first["image_paths"][0]), pixels(other["image_paths"][0]))
    assert not np.array_equal(pixels(first["image_paths"][0]), pixels(default["image_paths"][0]))

    assert first["metadata"]["scheduler"] == again["metadata"]["scheduler"] == "euler_a"
    assert other["metadata"]["scheduler"] == "ddim" and default["metadata"]["scheduler"] == "default"
    parameters, stored = read_png_metadata(other["image_paths"][0])
    assert "Sampler: DDIM" in parameters and stored.scheduler == "ddim"  # A1111's name in its format


async def test_every_scheduler_name_runs_on_an_sd_model(server):
    async with httpx.AsyncClient(base_url=server.base_url) as http, WsClient(server.ws_url) as ws:
        for name in SCHEDULER_NAMES:
            done = (await run_job(http, ws, prompt="a tree", num_inference_steps=3, seed=5, scheduler=name))[-1]
            assert done["type"] == "generation_complete", (name, done)
            assert done["metadata"]["scheduler"] == name


def test_unknown_scheduler_is_a_422_naming_the_field_and_the_allowed_names(server):
    response = httpx.post(f"{server.base_url}/api/generate", json={"prompt": "x", "scheduler": "heun_pp"})
    assert response.status_code == 422, response.text
    (problem,) = response.json()["detail"]
    assert problem["loc"][-1] == "scheduler"
    assert "heun_pp" in problem["msg"]
    for name in SCHEDULER_NAMES:
        assert name in problem["msg"]


def test_health_lists_the_models_scheduler_names(server):
    model = httpx.get(f"{server.base_url}/api/health").json()["model"]
    assert model["family"] == "sd"
    assert model["schedulers"] == list(SCHEDULER_NAMES)
