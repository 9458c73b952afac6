"""Inpainting in the studio in Debian's chromium, against a real server: upload a picture, paint a mask
with the mouse, generate, and see the progress bar, the live preview and the result (which kept the
unpainted part); the same on a phone-sized page."""
from __future__ import annotations

import uuid
from collections.abc import Callable
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image
from playwright.sync_api import Page, expect

from tests.fixtures.browser import JOB_TIMEOUT_MS
from tests.server_process import ServerProcess
from tests.ui.studio_page import generate_with_ctrl_enter, job_card, track_progress_values, wait_until_ready

pytestmark = [pytest.mark.browser, pytest.mark.slow]


def paint_left_half(page: Page) -> None:
    canvas = page.locator("canvas[data-painted]")
    canvas.scroll_into_view_if_needed()
    box = canvas.bounding_box()
    assert box is not None
    page.mouse.move(box["x"] + box["width"] * 0.1, box["y"] + box["height"] * 0.1)
    page.mouse.down()
    for row in np.linspace(0.1, 0.9, 6):
        page.mouse.move(box["x"] + box["width"] * 0.1, box["y"] + box["height"] * row, steps=3)
        page.mouse.move(box["x"] + box["width"] * 0.35, box["y"] + box["height"] * row, steps=3)
    page.mouse.up()


@pytest.mark.parametrize("viewport", [(1280, 900), (390, 844)], ids=["desktop", "phone"])
def test_upload_paint_a_mask_generate_and_see_progress_preview_and_result(
    server: ServerProcess, open_page: Callable[..., Page], artifacts: Path, tmp_path: Path, viewport
) -> None:
    width, height = viewport
    page = open_page(server.base_url + "/", width=width, height=height)
    wait_until_ready(page)
    picture = tmp_path / "input.png"
    Image.fromarray(np.random.RandomState(5).randint(0, 256, (128, 128, 3), np.uint8)).save(picture)

    page.get_by_text("Start from a picture").click()
    page.locator(".q-uploader input[type=file]").set_input_files(picture)
    canvas = page.locator("canvas[data-painted]")
    expect(canvas).to_be_visible(timeout=JOB_TIMEOUT_MS)
    expect(page.get_by_alt_text("Input image")).to_have_js_property("complete", True)
    page.get_by_role("switch", name="Paint a mask").click()
    expect(canvas).to_have_css("pointer-events", "auto")  # the brush is on
    paint_left_half(page)
    expect(canvas).to_have_attribute("data-painted", "yes")
    expect(page.get_by_text("Repaints the painted part, keeps the rest")).to_be_visible()
    for name in ("Strength", "Steps"):  # to the top: 100 steps, all of them run
        slider = page.get_by_role("slider", name=name)
        slider.scroll_into_view_if_needed()
        box = slider.bounding_box()
        assert box is not None
        slider.click(position={"x": box["width"] - 1, "y": box["height"] / 2})
    expect(page.get_by_role("slider", name="Steps")).to_have_attribute("aria-valuenow", "100")
    expect(page.get_by_role("slider", name="Strength")).to_have_attribute("aria-valuenow", "1")
    page.screenshot(path=artifacts / f"studio-mask-{width}.png", full_page=True)

    track_progress_values(page)
    prompt = f"a painted sky {uuid.uuid4().hex[:6]}"
    generate_with_ctrl_enter(page, prompt)
    card = job_card(page, prompt)
    expect(card).to_be_visible()
    expect(card.locator("img[src*='/preview.jpg']")).to_be_visible(timeout=JOB_TIMEOUT_MS)
    expect(card.get_by_role("progressbar")).to_have_attribute("aria-valuenow", "1", timeout=JOB_TIMEOUT_MS)
    expect(card.get_by_text("step 100/100")).to_be_visible()
    result = card.locator("img[src^='/images/']")
    expect(result).to_be_visible()
    expect(result).to_have_js_property("complete", True)
    seen = page.evaluate("window.progressSeen")
    assert any(0 < value < 1 for value in seen), f"the bar never showed a step in between: {seen}"

    job = next(item for item in httpx.get(f"{server.base_url}/api/jobs").json()["items"]
               if item["request"]["prompt"] == prompt)
    assert job["metadata"]["mode"] == "inpaint" and job["total_steps"] == 100
    with Image.open(job["image_paths"][0]) as image:
        result_pixels = np.asarray(image.convert("RGB")).astype(int)
    with Image.open(picture) as original:
        kept = np.asarray(original.convert("RGB").resize(image.size, Image.Resampling.LANCZOS)).astype(int)
    right = result_pixels.shape[1] * 3 // 4
    assert np.abs(result_pixels[:, right:] - kept[:, right:]).max() <= 2  # the unpainted side is kept
    page.screenshot(path=artifacts / f"studio-inpainted-{width}.png", full_page=True)
