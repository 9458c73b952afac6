"""Image-to-image, inpainting and LoRAs for every family through the whole server flow, offline: an upload,
`init_image`/`mask_image`/`loras` on POST /api/generate, progress to the steps that really run, previews,
cancel, the A1111 fields in the PNG, and a LoRA of another family refused before it is queued.
(The servers are the per-family ones of test_families_server.py: tests/fixtures/family_servers.py.)
"""
from __future__ import annotations

import base64
import io

import httpx
import numpy as np
import pytest
from PIL import Image

from app.pipeline.lora_files import content_hash, short_hash
from app.pipeline.png import read_png_metadata
from app.pipeline.values import FAMILIES
from app.testing.tiny_lora import build_tiny_lora
from app.testing.tiny_models import TINY_IMAGE_SIZE
from tests.server_jobs import pixels, run_job, submit
from tests.ws_client import WsClient, for_session, is_terminal

pytestmark = pytest.mark.slow  # the per-family servers

SIDE = TINY_IMAGE_SIZE
SIZE = {"width": SIDE, "height": SIDE}
FOREIGN = {"sd": "sdxl", "sdxl": "sd", "sd3": "flux", "flux": "sd"}  # a LoRA of a family that does not fit


def png_bytes(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def upload(server, image: Image.Image) -> dict:
    answer = httpx.post(f"{server.base_url}/api/uploads", files={"file": ("input.png", png_bytes(image), "image/png")})
    assert answer.status_code == 200, answer.text
    return answer.json()


@pytest.fixture(scope="module")
def family_loras(family_servers, tiny_pipeline_dirs) -> dict[str, str]:
    """family -> name of a tiny LoRA for it, put in every family server's LoRA folder."""
    names = {}
    for family in FAMILIES:
        names[family] = f"tiny-{family}"
        for server in family_servers.values():
            build_tiny_lora(tiny_pipeline_dirs[family], server.data_dir / "loras" / f"tiny-{family}.safetensors",
                            seed=5, scale=3)
    return names


@pytest.mark.parametrize("family", FAMILIES)
async def test_image_to_image_inpainting_and_loras_through_the_server(family, family_servers, family_loras):
    server = family_servers[family]
    assert httpx.get(f"{server.base_url}/api/health").json()["model"]["modes"] == ["txt2img", "img2img", "inpaint"]
    init = Image.fromarray(np.random.RandomState(3).randint(0, 256, (SIDE, SIDE, 3), np.uint8))
    stored = upload(server, init)
    assert (stored["width"], stored["height"]) == (SIDE, SIDE)
    assert httpx.get(server.base_url + stored["url"]).status_code == 200

    async with httpx.AsyncClient(base_url=server.base_url) as http, WsClient(server.ws_url) as ws:
        messages = await run_job(http, ws, previews=True, init_image=stored["name"], strength=0.5,
                                 num_inference_steps=4, seed=3, **SIZE)
        done = messages[-1]
        assert done["type"] == "generation_complete", done
        started = next(m for m in messages if m["type"] == "generation_started")
        assert started["total_steps"] == 2  # int(4 × 0.5): the bar reaches 100 %
        assert [(m["step"], m["total_steps"]) for m in messages if m["type"] == "generation_progress"] == [(1, 2), (2, 2)]
        assert [m["step"] for m in messages if m["type"] == "generation_preview"] == [1, 2]
        metadata = done["metadata"]
        assert metadata["mode"] == "img2img" and metadata["strength"] == 0.5 and metadata["init_image"]
        parameters, _ = read_png_metadata(done["image_paths"][0])
        assert "Denoising strength: 0.5" in parameters and f"Init image: {metadata['init_image']}" in parameters
        view = (await http.get(f"/api/jobs/{done['session_id']}")).json()
        assert view["step"] == view["total_steps"] == 2
        assert (await http.get(view["input_urls"]["init_image"])).status_code == 200

        mask = Image.new("L", (SIDE, SIDE), 0)
        mask.paste(255, (0, 0, SIDE // 2, SIDE))
        mask_url = "data:image/png;base64," + base64.b64encode(png_bytes(mask)).decode()
        messages = await run_job(http, ws, init_image=stored["name"], mask_image=mask_url, strength=1.0,
                                 mask_blur=0, num_inference_steps=3, seed=4, **SIZE)
        done = messages[-1]
        assert done["type"] == "generation_complete", done
        assert done["metadata"]["mode"] == "inpaint" and done["metadata"]["mask_blur"] == 0
        result, original = pixels(done["image_paths"][0]).astype(int), np.asarray(init).astype(int)
        assert np.abs(result[:, SIDE // 2:] - original[:, SIDE // 2:]).max() <= 1  # black: kept
        assert np.abs(result[:, :SIDE // 2] - original[:, :SIDE // 2]).mean() > 20  # white: repainted
        assert "Mask blur: 0" in read_png_metadata(done["image_paths"][0])[0]

        name = family_loras[family]
        lora_hash = short_hash(content_hash(server.data_dir / "loras" / f"{name}.safetensors"))
        listed = {item["name"]: item for item in (await http.get("/api/loras")).json()["items"]}
        assert listed[name]["fits"] and listed[name]["hash"] == lora_hash
        assert not listed[family_loras[FOREIGN[family]]]["fits"]
        messages = await run_job(http, ws, prompt=f"a painting of a cat <lora:{name}:0.8>", num_inference_steps=2,
                                 seed=5, **SIZE)
        done = messages[-1]
        assert done["type"] == "generation_complete", done
        assert done["metadata"]["prompt"] == "a painting of a cat"
        assert done["metadata"]["loras"] == [{"name": name, "weight": 0.8, "hash": lora_hash}]
        parameters, _ = read_png_metadata(done["image_paths"][0])
        assert f"<lora:{name}:0.8>" in parameters and f'Lora hashes: "{name}: {lora_hash}"' in parameters

        foreign = family_loras[FOREIGN[family]]
        refused = await http.post("/api/generate", json={"prompt": "x", "loras": [{"name": foreign}], **SIZE})
        assert refused.status_code == 422, refused.text
        (problem,) = refused.json()["detail"]
        assert problem["loc"][-1] == "loras" and f"LoRA {foreign!r} does not fit" in problem["msg"]

        long_job = await submit(http, init_image=stored["name"], strength=1.0, num_inference_steps=150, **SIZE)
        await ws.subscribe(long_job)
        await ws.recv_until(for_session(long_job, lambda m: m["type"] == "generation_progress"))
        assert (await http.post(f"/api/jobs/{long_job}/cancel")).status_code == 200
        assert (await ws.recv_until(for_session(long_job, is_terminal)))[-1]["type"] == "generation_cancelled"


def test_a_dedicated_inpainting_checkpoint_inpaints_and_refuses_other_modes_before_queueing(start_server, tmp_path):
    from app.testing.tiny_inpainting import build_tiny_inpainting_pipeline

    model = build_tiny_inpainting_pipeline(tmp_path / "tiny-sd-inpainting")
    server = start_server(model=model, env={"HF_HUB_OFFLINE": "1"})
    health = httpx.get(f"{server.base_url}/api/health").json()["model"]
    assert health["state"] == "ready" and health["modes"] == ["inpaint"]
    init = upload(server, Image.new("RGB", (SIDE, SIDE), (200, 40, 40)))
    mask = upload(server, Image.new("L", (SIDE, SIDE), 255))
    for body, field, mode in (({}, "init_image", "text-to-image"), ({"init_image": init["name"]}, "init_image",
                                                                      "image-to-image")):
        refused = httpx.post(f"{server.base_url}/api/generate", json={"prompt": "x", **body, **SIZE})
        assert refused.status_code == 422, refused.text
        (problem,) = refused.json()["detail"]
        assert problem["loc"][-1] == field and f"cannot do {mode} (it can do: inpainting)" in problem["msg"]
    assert httpx.get(f"{server.base_url}/api/jobs").json()["total"] == 0  # nothing was queued
    answer = httpx.post(f"{server.base_url}/api/generate", json={
        "prompt": "x", "init_image": init["name"], "mask_image": mask["name"], "strength": 1.0,
        "num_inference_steps": 3, **SIZE})
    assert answer.status_code == 200, answer.text
    session_id = answer.json()["session_id"]
    job_url = f"{server.base_url}/api/jobs/{session_id}"
    server.wait_until(lambda _h: httpx.get(job_url).json()["status"] not in ("queued", "running"))
    job = httpx.get(job_url).json()
    assert job["status"] == "completed" and job["metadata"]["mode"] == "inpaint", job
