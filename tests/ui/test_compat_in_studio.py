"""Jobs from A1111 and OpenAI clients appear live in the studio: a card with the prompt, a progress bar that
moves to 100 % and the image, in Debian's chromium against the shared real server."""
from __future__ import annotations

import uuid
from collections.abc import Callable
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from tests.compat_clients import SMALL, InThread, a1111_client, openai_client
from tests.fixtures.browser import JOB_TIMEOUT_MS
from tests.server_process import ServerProcess
from tests.ui.studio_page import job_card, track_progress_values, wait_until_ready

pytestmark = [pytest.mark.browser, pytest.mark.slow]


def watch_job_from_outside(page: Page, prompt: str, call: InThread) -> None:
    card = job_card(page, prompt)
    expect(card).to_be_visible(timeout=JOB_TIMEOUT_MS)
    expect(card.get_by_role("progressbar")).to_have_attribute("aria-valuenow", "1", timeout=JOB_TIMEOUT_MS)
    image = card.locator("img[src^='/images/']").first
    expect(image).to_be_visible()
    expect(image).to_have_js_property("complete", True)
    call.result()
    seen = page.evaluate("window.progressSeen")
    assert any(0 < value < 1 for value in seen), f"the bar never showed a step in between: {seen}"


def test_an_a1111_job_and_an_openai_job_show_in_the_studio_with_their_progress(
    server: ServerProcess, open_page: Callable[..., Page], artifacts: Path
) -> None:
    page = open_page(server.base_url + "/")
    wait_until_ready(page)
    track_progress_values(page)

    a1111_prompt = f"a1111 client draws a harbour {uuid.uuid4().hex[:6]}"
    api = a1111_client(server)
    watch_job_from_outside(page, a1111_prompt, InThread(lambda: api.txt2img(prompt=a1111_prompt, steps=40, **SMALL)))
    expect(job_card(page, a1111_prompt).get_by_text("step 40/40")).to_be_visible()

    page.evaluate("window.progressSeen = []")
    openai_prompt = f"openai client draws a meadow {uuid.uuid4().hex[:6]}"
    client = openai_client(server)
    watch_job_from_outside(
        page, openai_prompt, InThread(lambda: client.images.generate(prompt=openai_prompt, size="64x64", n=2))
    )
    expect(job_card(page, openai_prompt).locator("img[src^='/images/']")).to_have_count(2)
    page.screenshot(path=artifacts / "studio-compat-clients.png", full_page=True)
