"""The studio and /test/websocket in Debian's chromium, driven by Playwright, against real servers.

Each test waits on conditions (Playwright's `expect`), never on sleeps, and fails on any console error.
Screenshots go to test-artifacts/; with UPDATE_DOCS_SCREENSHOT=1 the studio's also to docs/images/studio.png.
"""
from __future__ import annotations

import os
import re
import uuid
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Page, expect

from tests.fixtures.browser import JOB_TIMEOUT_MS
from tests.server_process import PROJECT_ROOT, ServerProcess, free_port
from tests.ui.studio_page import generate_with_ctrl_enter, job_card, track_progress_values, wait_until_ready

pytestmark = [pytest.mark.browser, pytest.mark.slow]

DOCS_SCREENSHOT = PROJECT_ROOT / "docs" / "images" / "studio.png"
# While a server is down on purpose, the browser reports the refused connections; nothing else is allowed.
OUTAGE_NOISE = re.compile(r"ERR_CONNECTION_REFUSED|WebSocket connection to .* failed|Failed to load resource")


def test_generate_on_the_studio_the_bar_reaches_100_percent_and_the_image_appears(
    server: ServerProcess, open_page: Callable[..., Page], artifacts: Path
) -> None:
    page = open_page(server.base_url + "/")
    wait_until_ready(page)
    track_progress_values(page)
    prompt = f"a lighthouse at dusk {uuid.uuid4().hex[:6]}"
    generate_with_ctrl_enter(page, prompt)
    card = job_card(page, prompt)
    expect(card).to_be_visible()
    expect(card.get_by_role("progressbar")).to_have_attribute("aria-valuenow", "1", timeout=JOB_TIMEOUT_MS)
    expect(card.get_by_text("step 30/30")).to_be_visible()
    image = card.locator("img[src^='/images/']")
    expect(image).to_be_visible()
    expect(image).to_have_js_property("complete", True)
    seen = page.evaluate("window.progressSeen")
    assert any(0 < value < 1 for value in seen), f"the bar never showed a step in between: {seen}"
    name = image.get_attribute("src").rsplit("/", 1)[-1]
    thumbnail = page.locator(f".gallery-thumb img[src='/images/{name}']")
    expect(thumbnail).to_be_visible()
    thumbnail.click()
    dialog = page.locator(".q-dialog")
    expect(dialog.get_by_text(prompt)).to_be_visible()
    expect(dialog.locator("a[download]")).to_have_attribute("href", f"/images/{name}")
    page.screenshot(path=artifacts / "studio-dialog.png")
    page.keyboard.press("Escape")
    expect(dialog).to_be_hidden()
    page.screenshot(path=artifacts / "studio.png", full_page=True)
    if os.environ.get("UPDATE_DOCS_SCREENSHOT"):  # opt-in: a test run leaves the working tree alone
        page.screenshot(path=DOCS_SCREENSHOT)


def test_a_second_tab_sees_the_new_image_in_its_gallery(server: ServerProcess, open_page: Callable[..., Page], artifacts: Path) -> None:
    watcher = open_page(server.base_url + "/", width=390, height=844)  # a phone-sized second tab
    artist = open_page(server.base_url + "/")
    wait_until_ready(artist)
    expect(watcher.locator(".gallery-thumb").first.or_(watcher.get_by_text("Your images will gather here."))).to_be_visible()
    prompt = f"a red fox in snow {uuid.uuid4().hex[:6]}"
    generate_with_ctrl_enter(artist, prompt)
    expect(job_card(watcher, prompt)).to_be_visible()  # the job itself shows up in the other tab too
    image = job_card(artist, prompt).locator("img[src^='/images/']")
    expect(image).to_be_visible(timeout=JOB_TIMEOUT_MS)
    name = image.get_attribute("src").rsplit("/", 1)[-1]
    expect(watcher.locator(f".gallery-thumb img[src='/images/{name}']")).to_be_visible()
    watcher.get_by_role("button", name="Light / dark / follow system").click()  # follow system -> dark
    expect(watcher.locator("body")).to_have_class(re.compile(r"\bbody--dark\b"))
    watcher.screenshot(path=artifacts / "studio-phone-dark.png", full_page=True)


def test_the_websocket_test_page_connects_generates_and_shows_images(
    server: ServerProcess, open_page: Callable[..., Page], artifacts: Path
) -> None:
    page = open_page(server.base_url + "/test/websocket")
    expect(page.locator("#connection")).to_have_class(re.compile(r"\bconnected\b"))
    expect(page.locator("#connection-text")).to_have_text("Connected")
    page.locator("#prompt").fill("A serene mountain landscape at sunset")
    page.locator("#num-images").fill("2")
    page.get_by_role("button", name="Generate Artwork").click()
    expect(page.locator("#images img")).to_have_count(2, timeout=JOB_TIMEOUT_MS)
    expect(page.locator("#progress-bar")).to_have_attribute("style", re.compile(r"width: 100%"))
    expect(page.locator("#job-status")).to_have_text("Complete")
    expect(page.locator("#log")).to_contain_text("generation_progress")
    expect(page.locator("#log")).to_contain_text("generation_complete")
    for image in page.locator("#images img").all():
        expect(image).to_have_js_property("complete", True)
    page.screenshot(path=artifacts / "test-websocket.png", full_page=True)


def test_after_a_server_restart_both_pages_reconnect_and_show_the_job(
    start_server: Callable[..., ServerProcess],
    open_page: Callable[..., Page],
    artifacts: Path,
    tmp_path: Path,
) -> None:
    data_dir = tmp_path / "restart-data"
    server = start_server(data_dir=data_dir, port=free_port())  # a fixed port: the pages come back to it
    studio = open_page(server.base_url + "/", allow=OUTAGE_NOISE)
    wait_until_ready(studio)
    tester = open_page(server.base_url + "/test/websocket", allow=OUTAGE_NOISE)
    expect(tester.locator("#connection")).to_have_class(re.compile(r"\bconnected\b"))
    tester.locator("#steps").evaluate("range => { range.value = '100'; range.dispatchEvent(new Event('input')); }")
    tester.locator("#prompt").fill("survives a restart")
    tester.get_by_role("button", name="Generate Artwork").click()
    expect(job_card(studio, "survives a restart").get_by_text(re.compile(r"step [1-9]\d*/100"))).to_be_visible(
        timeout=JOB_TIMEOUT_MS
    )
    session_id = httpx.get(server.base_url + "/api/jobs").json()["items"][0]["session_id"]

    server.stop()
    expect(tester.locator("#connection")).to_have_class(re.compile(r"\bdisconnected\b"))
    server.start()

    # The test page reconnects by itself, re-subscribes with after_seq and sees the re-run finish.
    expect(tester.locator("#connection-text")).to_have_text("Connected", timeout=JOB_TIMEOUT_MS)
    expect(tester.locator("#log")).to_contain_text('"after_seq"')
    expect(tester.locator("#images img")).to_have_count(1, timeout=JOB_TIMEOUT_MS)
    # The studio reconnects (NiceGUI reloads the page) and shows the job from the engine's state.
    card = job_card(studio, "survives a restart")
    expect(card.locator("img[src^='/images/']")).to_be_visible(timeout=JOB_TIMEOUT_MS)
    expect(card.get_by_text("Done", exact=True)).to_be_visible()
    assert httpx.get(f"{server.base_url}/api/jobs/{session_id}").json()["status"] == "completed"
    studio.screenshot(path=artifacts / "studio-after-restart.png", full_page=True)
    tester.screenshot(path=artifacts / "test-websocket-after-restart.png", full_page=True)
