"""Image-to-image and inpainting through the imitated APIs: A1111's `img2img` with the real `webuiapi`, OpenAI's
`images.edit` with the real `openai` package, against the shared real server."""
from __future__ import annotations

import base64
import io

import httpx
import numpy as np
import openai
import pytest
from PIL import Image, ImageDraw, ImageOps

from tests.compat_clients import SMALL, a1111_client, openai_client


def picture() -> Image.Image:
    """A 64x64 test picture: a blue sky over green ground with a red sun."""
    image = Image.new("RGB", (64, 64), (70, 120, 220))
    draw = ImageDraw.Draw(image)
    draw.rectangle((0, 40, 63, 63), fill=(40, 160, 60))
    draw.ellipse((8, 8, 24, 24), fill=(230, 40, 30))
    return image


def right_half_mask() -> Image.Image:
    mask = Image.new("L", (64, 64), 0)
    ImageDraw.Draw(mask).rectangle((32, 0, 63, 63), fill=255)
    return mask


def halves_changed(before: Image.Image, after: Image.Image) -> tuple[float, float]:
    """Mean absolute change of the left and the right half, 0-255."""
    difference = np.abs(np.asarray(after.convert("RGB"), dtype=float) - np.asarray(before, dtype=float))
    return difference[:, :28].mean(), difference[:, 36:].mean()


def job_of(server, info: dict) -> dict:
    return httpx.get(f"{server.base_url}/api/jobs/{info['session_ids'][0]}").json()


def test_webuiapi_img2img_reworks_the_picture_and_counts_the_steps_that_run(server):
    api = a1111_client(server)
    result = api.img2img(images=[picture()], prompt="a sunny meadow", denoising_strength=0.5, steps=10, seed=5,
                         **SMALL)
    assert len(result.images) == 1 and result.images[0].size == (64, 64)
    assert result.info["denoising_strength"] == 0.5 and "Denoising strength: 0.5" in result.info["infotexts"][0]
    assert result.parameters["init_images"] is None  # not echoed back, as A1111
    job = job_of(server, result.info)
    assert job["status"] == "completed" and job["metadata"]["mode"] == "img2img"
    assert job["total_steps"] == 5  # int(steps × strength) steps really run


def test_webuiapi_inpainting_repaints_the_white_half_and_keeps_the_black_one(server):
    api = a1111_client(server)
    result = api.img2img(images=[picture()], mask_image=right_half_mask(), prompt="a dark forest",
                         denoising_strength=1.0, mask_blur=0, steps=8, seed=6, **SMALL)
    kept, repainted = halves_changed(picture(), result.images[0])
    assert repainted > 3 * kept, (kept, repainted)
    assert job_of(server, result.info)["metadata"]["mode"] == "inpaint"
    inverted = api.img2img(images=[picture()], mask_image=right_half_mask(), inpainting_mask_invert=1,
                           prompt="a dark forest", denoising_strength=1.0, mask_blur=0, steps=8, seed=6, **SMALL)
    repainted_left, kept_right = halves_changed(picture(), inverted.images[0])
    assert repainted_left > 3 * kept_right, (repainted_left, kept_right)


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"prompt": "x"}, "init_images"),
        ({"prompt": "x", "init_images": ["bm90IGFuIGltYWdl"]}, "init_images"),
        ({"prompt": "x", "init_images": ["{image}"], "denoising_strength": 1.5}, "denoising_strength"),
        ({"prompt": "x", "init_images": ["{image}"], "mask": "bm90IGFuIGltYWdl", "inpainting_mask_invert": 1}, "mask"),
    ],
)
def test_bad_img2img_fields_get_422_naming_them(server, body, field):
    buffer = io.BytesIO()
    picture().save(buffer, format="PNG")
    encoded = base64.b64encode(buffer.getvalue()).decode()
    body = {key: ([encoded] if value == ["{image}"] else value) for key, value in body.items()}
    response = httpx.post(f"{server.base_url}/sdapi/v1/img2img", json={**body, **SMALL}, timeout=60)
    assert response.status_code == 422, response.text
    assert field in [problem["loc"][-1] for problem in response.json()["detail"]]


def png_bytes(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def test_openai_edit_with_a_transparent_mask_repaints_only_there(server):
    mask = picture().convert("RGBA")
    mask.putalpha(ImageOps.invert(right_half_mask()))  # transparent right half = repaint
    response = openai_client(server).images.edit(
        image=("picture.png", png_bytes(picture()), "image/png"), mask=("mask.png", png_bytes(mask), "image/png"),
        prompt="a dark forest", size="64x64", response_format="b64_json",
    )
    (item,) = response.data
    with Image.open(io.BytesIO(base64.b64decode(item.b64_json))) as edited:
        kept, repainted = halves_changed(picture(), edited)
    assert repainted > 3 * kept, (kept, repainted)


def test_openai_edit_without_a_mask_reworks_the_whole_image(server):
    response = openai_client(server).images.edit(
        image=("picture.png", png_bytes(picture()), "image/png"), prompt="a sunny meadow", n=2, response_format="url"
    )
    assert len(response.data) == 2
    fetched = httpx.get(response.data[0].url)
    with Image.open(io.BytesIO(fetched.content)) as image:
        assert image.size == (64, 64) and "Denoising strength: 0.75" in image.info["parameters"]


def test_openai_edit_errors_in_openais_shape(server):
    client = openai_client(server)
    with pytest.raises(openai.BadRequestError) as raised:
        client.images.edit(image=("mask.png", png_bytes(picture()), "image/png"),
                           mask=("mask.png", png_bytes(right_half_mask()), "image/png"), prompt="x")
    assert raised.value.param == "mask" and "transparency" in raised.value.message
    with pytest.raises(openai.BadRequestError) as raised:
        client.images.edit(image=("x.png", b"not an image", "image/png"), prompt="x")
    assert raised.value.param == "image"
    response = httpx.post(f"{server.base_url}/v1/images/edits", data={"prompt": "x"})
    assert response.status_code == 400 and response.json()["error"]["param"] == "image"

