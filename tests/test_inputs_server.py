"""Input images and LoRAs on the embedded model's server: an image-to-image job from a gallery image
(strength 0 keeps it, more strength changes it more), bad inputs answered 413/422 naming the field, and
inputs kept with the job so a restart re-runs it from the same pixels."""
from __future__ import annotations

import base64
import io

import httpx
import numpy as np
import pytest
from PIL import Image

from tests.server_jobs import pixels, run_job
from tests.ws_client import WsClient, for_session, is_terminal


def png_bytes(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


async def test_image_to_image_from_a_gallery_image(server):
    async with httpx.AsyncClient(base_url=server.base_url) as http, WsClient(server.ws_url) as ws:
        drawn = (await run_job(http, ws, prompt="a red circle on a blue background", num_inference_steps=20, seed=9))[-1]
        name = drawn["image_urls"][0].rsplit("/", 1)[-1]
        gallery = (await http.get("/api/gallery", params={"limit": 200})).json()["items"]
        assert name in {item["name"] for item in gallery}
        source = pixels(drawn["image_paths"][0]).astype(float)

        distance = {}
        for strength in (0.0, 0.3, 1.0):
            done = (await run_job(http, ws, prompt="a green square", init_image=name, strength=strength,
                                  num_inference_steps=20, seed=10))[-1]
            assert done["type"] == "generation_complete", done
            assert done["metadata"]["mode"] == "img2img" and done["metadata"]["init_image"]
            assert (done["metadata"]["width"], done["metadata"]["height"]) == source.shape[1::-1]
            distance[strength] = np.abs(pixels(done["image_paths"][0]).astype(float) - source).mean()
        assert distance[0.0] == 0  # no step runs: the input as it is
        assert distance[0.3] < distance[1.0]  # a light touch stays nearer the input than a full repaint
        item = next(i for i in (await http.get("/api/gallery")).json()["items"] if i["session_id"] == done["session_id"])
        assert item["input_urls"]["init_image"] == f"/api/uploads/{done['metadata']['init_image']}"
        stored = await http.get(item["input_urls"]["init_image"])
        assert stored.status_code == 200
        assert (np.asarray(Image.open(io.BytesIO(stored.content)).convert("RGB")) == source).all()


def test_bad_uploads_are_413_or_422_naming_the_problem(server):
    url = f"{server.base_url}/api/uploads"
    not_an_image = httpx.post(url, files={"file": ("notes.png", b"just some text", "image/png")})
    assert not_an_image.status_code == 422
    (problem,) = not_an_image.json()["detail"]
    assert problem["loc"] == ["body", "file"] and "not a PNG, JPEG or WebP image" in problem["msg"]

    huge = httpx.post(url, files={"file": ("huge.png", png_bytes(Image.new("L", (5000, 5000))), "image/png")})
    assert huge.status_code == 422 and "5000×5000, over the 4096-pixel limit" in huge.text

    heavy = httpx.post(url, files={"file": ("heavy.png", b"\0" * 20_000_001, "image/png")}, timeout=60)
    assert heavy.status_code == 413 and "over the 20.0 MB limit" in heavy.json()["detail"]
    assert httpx.post(url).status_code == 422  # no file at all
    assert httpx.get(f"{url}/../ai-artist.sqlite3").status_code == 404
    assert httpx.get(f"{url}/missing.png").status_code == 404


@pytest.mark.parametrize(
    ("body", "field", "message"),
    [
        ({"mask_image": "abc.png"}, "mask_image", "a mask needs an init_image"),
        ({"init_image": "no-such-upload.png"}, "init_image", "no upload or gallery image is called"),
        ({"init_image": "bm90IGFuIGltYWdl"}, "init_image", "not a PNG, JPEG or WebP image"),
        ({"loras": [{"name": "no-such-lora"}]}, "loras", "unknown LoRA 'no-such-lora'"),
        ({"prompt": "a cat <lora:no-such-lora:0.5>"}, "prompt", "unknown LoRA 'no-such-lora'"),
        ({"loras": [{"name": "x", "weight": 9}]}, "weight", "less than or equal to 4"),
        ({"strength": 1.5}, "strength", "less than or equal to 1"),
        ({"mask_blur": -1}, "mask_blur", "greater than or equal to 0"),
    ],
)
def test_bad_inputs_on_generate_are_422_naming_the_field(server, body, field, message):
    response = httpx.post(f"{server.base_url}/api/generate", json={"prompt": "a cat", **body})
    assert response.status_code == 422, response.text
    problems = {error["loc"][-1]: error["msg"] for error in response.json()["detail"]}
    assert field in problems and message in problems[field], problems


def test_a_mask_of_another_shape_is_refused(server):
    url = f"{server.base_url}/api/uploads"
    wide = httpx.post(url, files={"file": ("w.png", png_bytes(Image.new("RGB", (128, 64))), "image/png")}).json()
    tall = httpx.post(url, files={"file": ("t.png", png_bytes(Image.new("L", (64, 128), 255)), "image/png")}).json()
    response = httpx.post(f"{server.base_url}/api/generate",
                          json={"prompt": "a cat", "init_image": wide["name"], "mask_image": tall["name"]})
    assert response.status_code == 422
    (problem,) = response.json()["detail"]
    assert problem["loc"][-1] == "mask_image" and "not the same aspect ratio" in problem["msg"]


async def test_a_crash_mid_job_reruns_it_from_the_same_inputs(start_server, tmp_path):
    data_dir = tmp_path / "data"
    first = start_server(data_dir=data_dir)
    init = Image.fromarray(np.random.RandomState(4).randint(0, 256, (64, 64, 3), np.uint8))
    mask = Image.new("L", (64, 64), 0)
    mask.paste(255, (0, 0, 32, 64))

    body = {"prompt": "a sun", "num_inference_steps": 150, "seed": 3, "strength": 1.0, "mask_blur": 0,
            "init_image": base64.b64encode(png_bytes(init)).decode(),
            "mask_image": "data:image/png;base64," + base64.b64encode(png_bytes(mask)).decode()}
    session_id = httpx.post(f"{first.base_url}/api/generate", json=body).json()["session_id"]
    async with WsClient(first.ws_url) as ws:
        await ws.subscribe(session_id)
        started = await ws.recv_until(for_session(session_id, lambda m: m.get("step", 0) >= 2))
    assert next(m for m in started if m["type"] == "generation_started")["total_steps"] == 150
    first.kill()

    second = start_server(data_dir=data_dir)
    async with WsClient(second.ws_url) as ws:
        await ws.subscribe(session_id)
        done = (await ws.recv_until(for_session(session_id, is_terminal), timeout=300))[-1]
    assert done["type"] == "generation_complete", done
    assert done["metadata"]["mode"] == "inpaint"
    result = pixels(done["image_paths"][0]).astype(int)
    assert np.abs(result[:, 32:] - np.asarray(init).astype(int)[:, 32:]).max() <= 1  # the same input, kept
    view = httpx.get(f"{second.base_url}/api/jobs/{session_id}").json()
    assert view["attempts"] == 2 and set(view["input_urls"]) == {"init_image", "mask_image"}
    assert view["request"]["init_image"] == done["metadata"]["init_image"]  # stored by name, not as base64
