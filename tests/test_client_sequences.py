"""Open WebUI's and SillyTavern's calls, replayed with httpx in the order and shape they send them (their image
routers against an A1111 server, and Open WebUI's against an OpenAI one), on the shared real server."""
from __future__ import annotations

import asyncio
import base64
import io
import json
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
from PIL import Image

SILLYTAVERN_AUTH = {"Authorization": "Basic " + base64.b64encode(b"user:password").decode()}  # getBasicAuthHeader(auth)


def png_size(data: str) -> tuple[int, int]:
    """Decode as Open WebUI's get_image_data does: a data: URL or bare base64."""
    encoded = data.split(",", 1)[1] if "," in data else data
    with Image.open(io.BytesIO(base64.b64decode(encoded))) as image:
        assert image.format == "PNG"
        return image.size


async def until(check: Callable[[], Awaitable[Any]], timeout: float = 120) -> Any:
    """Poll a state of the server until `check` returns something truthy."""
    async with asyncio.timeout(timeout):
        while not (value := await check()):
            await asyncio.sleep(0.05)
        return value


async def test_open_webui_automatic1111_engine(server):
    async with httpx.AsyncClient(base_url=server.base_url, headers={"authorization": ""}, timeout=300) as http:
        assert (await http.get("/sdapi/v1/options")).status_code == 200  # verify_url
        models = [{"id": m["title"], "name": m["model_name"]} for m in (await http.get("/sdapi/v1/sd-models")).json()]
        assert models[0] == {"id": "ai-artist-tiny", "name": "ai-artist-tiny"}
        # set_image_model: reads the options, posts them all back only when the model differs
        options = (await http.get("/sdapi/v1/options")).json()
        if models[0]["id"] != options["sd_model_checkpoint"]:
            changed = {**options, "sd_model_checkpoint": models[0]["id"]}
            (await http.post("/sdapi/v1/options", json=changed)).raise_for_status()
        # image_generations: get_image_model, then txt2img with its small body
        model = (await http.get("/sdapi/v1/options")).json()["sd_model_checkpoint"]
        assert model == "ai-artist-tiny"
        data = {"prompt": "open webui asks for a lighthouse", "batch_size": 2, "width": 64, "height": 64,
                "steps": 8, "negative_prompt": "text"}
        res = (await http.post("/sdapi/v1/txt2img", json=data)).json()
        assert [png_size(image) for image in res["images"]] == [(64, 64), (64, 64)]
        assert json.loads(res["info"])["negative_prompt"] == "text"  # kept as the file's metadata


async def test_open_webui_openai_engine(server):
    headers = {"Authorization": "Bearer sk-anything", "Content-Type": "application/json"}
    async with httpx.AsyncClient(base_url=server.base_url, headers=headers, timeout=300) as http:
        data = {"model": "dall-e-2", "prompt": "open webui asks for a boat", "n": 1, "size": "64x64",
                "response_format": "b64_json"}
        res = (await http.post("/v1/images/generations", json=data)).json()
        assert [png_size(image["b64_json"]) for image in res["data"]] == [(64, 64)]
        # models whose answers are URLs: Open WebUI fetches them with the same Authorization header
        res = (await http.post("/v1/images/generations", json={**data, "response_format": "url"})).json()
        fetched = await http.get(res["data"][0]["url"], headers={"Authorization": headers["Authorization"]})
        assert fetched.headers["content-type"] == "image/png"


def sillytavern_body(prompt: str, steps: int) -> dict[str, Any]:
    """What SillyTavern's stable-diffusion extension sends to its server, which forwards it as it is."""
    return {
        "url": "http://127.0.0.1:7860", "auth": "", "prompt": prompt, "negative_prompt": "lowres, bad anatomy",
        "sampler_name": "DPM++ 2M", "scheduler": "karras", "steps": steps, "cfg_scale": 7, "width": 64,
        "height": 64, "restore_faces": False, "enable_hr": False, "hr_upscaler": "Latent", "hr_scale": 1.0,
        "hr_additional_modules": [], "denoising_strength": 0.7, "hr_second_pass_steps": 0,
        "override_settings": {"CLIP_stop_at_last_layers": 1, "sd_vae": "Automatic", "forge_additional_modules": []},
        "override_settings_restore_afterwards": True, "clip_skip": 1, "alwayson_scripts": {}, "save_images": True,
        "send_images": True, "sd_vae": "Automatic",
    }


async def test_sillytavern_setup_set_model_and_generate(server):
    async with httpx.AsyncClient(base_url=server.base_url, headers=SILLYTAVERN_AUTH, timeout=300) as http:
        assert (await http.get("/sdapi/v1/options")).is_success  # /ping
        upscalers = [x["name"] for x in (await http.get("/sdapi/v1/upscalers")).json()]
        latent = [x["name"] for x in (await http.get("/sdapi/v1/latent-upscale-modes")).json()]
        upscalers[1:1] = latent
        vaes = [r.json() for r in await asyncio.gather(http.get("/sdapi/v1/sd-vae"), http.get("/sdapi/v1/sd-modules"))]
        assert isinstance(vaes[0], list)
        samplers = [x["name"] for x in (await http.get("/sdapi/v1/samplers")).json()]
        schedulers = [x["name"] for x in (await http.get("/sdapi/v1/schedulers")).json()]
        assert "DPM++ 2M" in samplers and "karras" in schedulers
        models = [{"value": x["title"], "text": x["title"]} for x in (await http.get("/sdapi/v1/sd-models")).json()]
        current = (await http.get("/sdapi/v1/options")).json()["sd_model_checkpoint"]  # /get-model
        assert current in [model["value"] for model in models]
        # /set-model: post the option, then wait (at most 10 polls) for progress 0 and job_count 0
        (await http.post("/sdapi/v1/options", json={"sd_model_checkpoint": current})).raise_for_status()
        for _ in range(10):
            state = (await http.get("/sdapi/v1/progress")).json()
            if state["progress"] == 0.0 and state["state"]["job_count"] == 0:
                break
        else:
            raise AssertionError("the server never read as ready after set-model")
        # /generate: options first (is it Forge?), then txt2img
        body = sillytavern_body("sillytavern draws a castle", steps=6)
        if "forge_preset" not in (await http.get("/sdapi/v1/options")).json():
            del body["override_settings"]["forge_additional_modules"]
        data = (await http.post("/sdapi/v1/txt2img", json=body)).json()
        assert png_size(data["images"][0]) == (64, 64)
        assert json.loads(data["info"])["sampler_name"] == "DPM++ 2M Karras"


async def test_sillytavern_interrupts_when_its_user_goes_away(server):
    """SillyTavern's server calls /interrupt when its browser closes the request, then aborts its own call."""
    prompt = "sillytavern's user closes the tab"
    async with httpx.AsyncClient(base_url=server.base_url, headers=SILLYTAVERN_AUTH, timeout=300) as http:

        async def running_job() -> dict | None:
            items = (await http.get("/api/jobs", params={"limit": 200})).json()["items"]
            return next((j for j in items if j["request"]["prompt"] == prompt and j["step"] > 0), None)

        generate = asyncio.create_task(http.post("/sdapi/v1/txt2img", json=sillytavern_body(prompt, steps=150)))
        job = await until(running_job)
        assert (await http.post("/sdapi/v1/interrupt")).is_success
        generate.cancel()  # controller.abort()
        assert await until(lambda: _status_if_ended(http, job["session_id"])) == "cancelled"
        ready = (await http.get("/sdapi/v1/progress")).json()
        assert ready["progress"] == 0 and ready["state"]["job_count"] == 0
        # and the next request is served as usual
        data = (await http.post("/sdapi/v1/txt2img", json=sillytavern_body("the next one", steps=4))).json()
        assert len(data["images"]) == 1


async def _status_if_ended(http: httpx.AsyncClient, session_id: str) -> str | None:
    status = (await http.get(f"/api/jobs/{session_id}")).json()["status"]
    return status if status not in ("queued", "running") else None
