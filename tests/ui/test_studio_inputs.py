"""The studio's input area and LoRA picker with NiceGUI's simulated `User` on the real engine: start from a
gallery image ("Use as input") or an upload, paint a mask (the painter's change event, as its canvas
sends it), pick a LoRA with a weight, and see each job run in that mode with its input beside the result."""
from __future__ import annotations

import base64
import io
from pathlib import Path

from nicegui.elements.upload_files import SmallFileUpload
from nicegui.testing.user import User
from PIL import Image

from app.testing.tiny_lora import build_tiny_lora

from .conftest import engine
from .test_studio_user import JOB_TIMEOUT_RETRIES, element, fill_and_generate, open_studio


def png_bytes(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def job_of(prompt: str):
    return next(view for view in engine().jobs().items if view.request.prompt == prompt)


async def test_use_as_input_from_the_gallery_then_image_to_image_shows_the_input_beside_it(user: User) -> None:
    await open_studio(user)
    first = await fill_and_generate(user, "a yellow star", steps=10)
    with user.scope(marker=first):
        await user.should_see("Done", retries=JOB_TIMEOUT_RETRIES)
    source = job_of("a yellow star").image_urls[0]
    await user.should_see(marker="gallery-thumb", retries=20)
    user.find(marker="gallery-thumb").click()
    with user.scope(marker="image-dialog"):
        await user.should_see("a yellow star")
        user.find(marker="use-as-input").click()
    await user.should_see("The picture is the input of the next job")
    assert element(user, "mask-painter").props["src"] == source
    element(user, "strength").set_value(0.5)
    second = await fill_and_generate(user, "a yellow star, reworked", steps=10)
    with user.scope(marker=second):
        await user.should_see("Done", retries=JOB_TIMEOUT_RETRIES)
        await user.should_see("step 5/5")  # int(10 × 0.5) steps really run: the bar ends at 100 %
        assert element(user, "progress").value == 1.0
    view = job_of("a yellow star, reworked")
    assert view.metadata.mode == "img2img" and view.metadata.strength == 0.5 and view.total_steps == 5
    await user.should_see(marker="gallery-input", retries=20)  # the gallery shows what it started from
    assert element(user, "gallery-input").source == view.input_urls["init_image"]
    user.find(marker=view.image_urls[0].rsplit("/", 1)[-1]).click()  # the new image's thumbnail
    with user.scope(marker="image-dialog"):
        await user.should_see("Image to image")
        assert element(user, "dialog-init-image").source == view.input_urls["init_image"]


async def test_an_upload_with_a_painted_mask_inpaints(user: User) -> None:
    await open_studio(user)
    picture = Image.new("RGB", (96, 64), (30, 120, 200))
    upload = user.find(marker="input-upload").elements.pop()
    with user.client:
        await upload.handle_uploads([SmallFileUpload("sky.png", "image/png", png_bytes(picture))])
    await user.should_see(marker="mask-painter", retries=20)
    assert element(user, "mask-painter").props["src"].startswith("/api/uploads/")
    mask = Image.new("RGBA", (96, 64), (0, 0, 0, 0))
    mask.paste((255, 255, 255, 255), (0, 0, 48, 64))
    user.find(marker="mask-painter").trigger("change", {"mask": "data:image/png;base64,"
                                                       + base64.b64encode(png_bytes(mask)).decode()})
    await user.should_see("Repaints the painted part, keeps the rest")
    element(user, "strength").set_value(1.0)
    card = await fill_and_generate(user, "a cloud in the sky", steps=10)
    with user.scope(marker=card):
        await user.should_see("Done", retries=JOB_TIMEOUT_RETRIES)
    view = job_of("a cloud in the sky")
    assert view.metadata.mode == "inpaint" and view.metadata.mask_blur == 4
    assert (view.metadata.width, view.metadata.height) == engine().size_limits.with_aspect(96, 64)
    user.find(marker="remove-input").click()
    again = await fill_and_generate(user, "just a prompt again", steps=10)
    with user.scope(marker=again):
        await user.should_see("Done", retries=JOB_TIMEOUT_RETRIES)
    assert job_of("just a prompt again").metadata.mode == "txt2img"


async def test_a_picked_lora_with_its_weight_goes_with_the_job(user: User, model_dir: Path, tmp_path: Path) -> None:
    build_tiny_lora(model_dir, tmp_path / "data" / "loras" / "ink.safetensors", seed=2)
    await open_studio(user)
    picker = element(user, "loras")
    await user.should_see(marker="lora-hint", retries=20)
    for _ in range(50):
        if picker.options:
            break
        await user.should_see(marker="loras", retries=1)
    assert "ink" in picker.options
    picker.set_value(["ink"])
    await user.should_see(marker="lora-weight ink", retries=20)
    element(user, "lora-weight-slider").set_value(0.6)
    card = await fill_and_generate(user, "an inked fox", steps=10)
    with user.scope(marker=card):
        await user.should_see("Done", retries=JOB_TIMEOUT_RETRIES)
    (used,) = job_of("an inked fox").metadata.loras
    assert (used.name, used.weight) == ("ink", 0.6) and len(used.hash) == 12
