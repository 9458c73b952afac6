"""The AUTOMATIC1111-compatible API through the real `webuiapi` package, against the shared real server."""
from __future__ import annotations

import json

import httpx
import numpy as np
import pytest

from tests.compat_clients import SMALL, a1111_client


def test_txt2img_blocks_until_done_and_answers_like_a1111(server):
    api = a1111_client(server)
    result = api.txt2img(
        prompt="a red circle", negative_prompt="blurry", seed=1234, steps=6, cfg_scale=6.5,
        sampler_name="DPM++ 2M", scheduler="karras", batch_size=2, n_iter=2, **SMALL,
    )
    assert len(result.images) == 4 and all(image.size == (64, 64) for image in result.images)
    info = result.info
    assert info["seed"] == 1234 and info["all_seeds"] == [1234, 1235, 1236, 1237]
    assert info["prompt"] == "a red circle" and info["all_prompts"] == ["a red circle"] * 4
    assert (info["width"], info["height"], info["steps"], info["cfg_scale"]) == (64, 64, 6, 6.5)
    assert info["sampler_name"] == "DPM++ 2M Karras"
    assert len(info["infotexts"]) == 4
    for seed, text, image in zip(info["all_seeds"], info["infotexts"], result.images):
        assert text.startswith("a red circle\nNegative prompt: blurry\nSteps: 6, Sampler: DPM++ 2M Karras")
        assert f"Seed: {seed}," in text and image.info["parameters"] == text  # the PNG carries its own text
    assert result.parameters["prompt"] == "a red circle" and result.parameters["n_iter"] == 2
    # Each iteration was a job of ours, completed with its batch, in the gallery.
    assert len(info["session_ids"]) == 2
    for session_id in info["session_ids"]:
        job = httpx.get(f"{server.base_url}/api/jobs/{session_id}").json()
        assert job["status"] == "completed" and len(job["image_urls"]) == 2
        assert job["request"]["scheduler"] == "dpmpp_2m_karras"
    gallery = {item["name"]: item for item in httpx.get(f"{server.base_url}/api/gallery").json()["items"]}
    second = httpx.get(f"{server.base_url}/api/jobs/{info['session_ids'][1]}").json()
    assert gallery[second["image_urls"][1].rsplit("/", 1)[-1]]["metadata"]["seed"] == 1237


def test_random_seed_and_send_images_false(server):
    api = a1111_client(server)
    result = api.txt2img(prompt="a blue square", seed=-1, steps=3, send_images=False, **SMALL)
    assert result.images == []
    assert 0 <= result.info["seed"] < 2**32 and result.info["all_seeds"] == [result.info["seed"]]
    again = api.txt2img(prompt="a blue square", seed=-1, steps=3, **SMALL)
    assert again.info["seed"] != result.info["seed"]


def test_the_same_seed_gives_the_same_pixels_and_image_i_is_seed_plus_i(server):
    api = a1111_client(server)
    batch = api.txt2img(prompt="a green tree", seed=77, steps=4, batch_size=2, **SMALL)
    alone = api.txt2img(prompt="a green tree", seed=78, steps=4, **SMALL)
    difference = np.abs(np.asarray(batch.images[1], dtype=int) - np.asarray(alone.images[0], dtype=int))
    assert difference.max() <= 2


def test_lists_models_samplers_schedulers_and_empty_lists(server):
    api = a1111_client(server)
    models = api.get_sd_models()
    assert {"title", "model_name", "hash", "sha256", "filename", "config"} <= set(models[0])
    assert api.util_get_current_model() == "ai-artist-tiny" == models[0]["title"]
    names = ["Default", "Euler", "Euler a", "DPM++ 2M", "DPM++ 2M Karras", "DDIM", "UniPC"]
    assert api.util_get_sampler_names() == sorted(names)
    euler_a = next(item for item in api.get_samplers() if item["name"] == "Euler a")
    assert euler_a == {"name": "Euler a", "aliases": ["euler_a"], "options": {}}
    assert api.util_get_scheduler_names() == ["automatic", "karras"]
    lists = (api.get_upscalers, api.get_sd_vae, api.get_loras, api.get_latent_upscale_modes, api.get_hypernetworks)
    for empty in lists:
        assert empty() == []
    assert api.get_embeddings() == {"loaded": {}, "skipped": {}}
    assert api.get_scripts() == {"txt2img": [], "img2img": []}
    assert httpx.post(f"{server.base_url}/sdapi/v1/refresh-checkpoints").status_code == 200


def test_options_keep_what_clients_store_and_name_the_model(server):
    api = a1111_client(server)
    api.set_options({"CLIP_stop_at_last_layers": 2, "samples_format": "png"})
    options = api.get_options()
    assert options["CLIP_stop_at_last_layers"] == 2 and options["samples_format"] == "png"
    assert options["sd_model_checkpoint"] == "ai-artist-tiny"
    api.set_options({"sd_model_checkpoint": "ai-artist-tiny"})  # the loaded one: nothing to switch
    response = httpx.post(f"{server.base_url}/sdapi/v1/options", json={"sd_model_checkpoint": "no-such-model"})
    assert response.status_code == 422
    (problem,) = response.json()["detail"]
    assert problem["loc"][-1] == "sd_model_checkpoint" and "ai-artist-tiny" in problem["msg"]


def test_idle_progress_reads_as_ready(server):
    api = a1111_client(server)
    progress = api.get_progress()
    assert progress["progress"] == 0 and progress["state"]["job_count"] == 0 and progress["current_image"] is None
    api.util_wait_for_ready(check_interval=0.1)  # returns at once when idle


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"prompt": ""}, "prompt"),
        ({"prompt": "x", "steps": 0}, "steps"),
        ({"prompt": "x", "cfg_scale": 99}, "cfg_scale"),
        ({"prompt": "x", "batch_size": 9}, "batch_size"),
        ({"prompt": "x", "n_iter": 0}, "n_iter"),
        ({"prompt": "x", "width": 100}, "width"),
        ({"prompt": "x", "height": 512}, "height"),
        ({"prompt": "x", "seed": 2**32}, "seed"),
        ({"prompt": "x", "sampler_name": "LMS"}, "sampler_name"),
        ({"prompt": "x", "sampler_name": "Euler", "scheduler": "karras"}, "scheduler"),
        ({"prompt": "x", "scheduler": "exponential"}, "scheduler"),
        ({"prompt": "x", "enable_hr": True}, "enable_hr"),
        ({"prompt": "x", "script_name": "x/y/z plot"}, "script_name"),
        ({"prompt": "x", "override_settings": {"sd_model_checkpoint": "other"}}, "override_settings"),
    ],
)
def test_bad_txt2img_fields_get_422_naming_them(server, body, field):
    response = httpx.post(f"{server.base_url}/sdapi/v1/txt2img", json=body, timeout=60)
    assert response.status_code == 422, response.text
    assert field in [problem["loc"][-1] for problem in response.json()["detail"]]


def test_unknown_fields_are_accepted_and_ignored(server):
    body = {"prompt": "a yellow star", "steps": 3, "restore_faces": True, "tiling": False, "styles": [],
            "alwayson_scripts": {}, "hr_upscaler": "Latent", "clip_skip": 2, "url": "x", "auth": "", **SMALL}
    response = httpx.post(f"{server.base_url}/sdapi/v1/txt2img", json=body, timeout=120)
    assert response.status_code == 200, response.text
    assert len(response.json()["images"]) == 1 and json.loads(response.json()["info"])["steps"] == 3
