"""With server.api_keys set: the studio's sign-in page in Debian's chromium, then the studio, its images and the
guide's /test/websocket page working behind the key (by the session cookie, and by `?token=KEY`)."""
from __future__ import annotations

import re
from collections.abc import Callable

import pytest
from playwright.sync_api import Page, expect

from tests.fixtures.browser import JOB_TIMEOUT_MS
from tests.server_process import ServerProcess
from tests.ui.studio_page import generate_with_ctrl_enter, job_card, wait_until_ready

pytestmark = [pytest.mark.browser, pytest.mark.slow]

KEY = "studio-test-key"
REFUSED = re.compile(r"status of 401")  # the wrong key's answer, as chromium logs it


@pytest.fixture
def keyed(start_server: Callable[..., ServerProcess]) -> ServerProcess:
    return start_server(args=["--api-key", KEY])


def test_sign_in_then_the_studio_and_its_images_work(keyed: ServerProcess, open_page: Callable[..., Page]) -> None:
    page = open_page(keyed.base_url + "/", allow=REFUSED)
    expect(page).to_have_url(re.compile(r"/signin\?next="))
    page.get_by_label("API key").fill("not-the-key")
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("alert")).to_have_text("That key is not right.")
    page.get_by_label("API key").fill(KEY)
    page.get_by_role("button", name="Sign in").click()
    expect(page).to_have_url(keyed.base_url + "/")
    wait_until_ready(page)
    generate_with_ctrl_enter(page, "a signed-in heron")
    image = job_card(page, "a signed-in heron").locator("img[src^='/images/']")
    expect(image).to_be_visible(timeout=JOB_TIMEOUT_MS)
    expect(image).to_have_js_property("complete", True)
    assert image.evaluate("img => img.naturalWidth") > 0  # the image URL was served behind the key

    # The guide's page in the same browser session: the cookie carries the sign-in to /ws and /api.
    page.goto(keyed.base_url + "/test/websocket")
    expect(page.locator("#connection-text")).to_have_text("Connected")
    page.locator("#prompt").fill("a signed-in crane")
    page.get_by_role("button", name="Generate Artwork").click()
    expect(page.locator("#images img")).to_have_count(1, timeout=JOB_TIMEOUT_MS)
    expect(page.locator("#job-status")).to_have_text("Complete")


def test_the_guide_page_passes_a_token_from_its_url(keyed: ServerProcess, open_page: Callable[..., Page]) -> None:
    page = open_page(f"{keyed.base_url}/test/websocket?token={KEY}")
    expect(page.locator("#connection-text")).to_have_text("Connected")
    page.locator("#prompt").fill("a token-carrying ibis")
    page.get_by_role("button", name="Generate Artwork").click()
    expect(page.locator("#images img")).to_have_count(1, timeout=JOB_TIMEOUT_MS)
    expect(page.locator("#images img")).to_have_js_property("complete", True)
    expect(page.locator("#log")).to_contain_text("generation_complete")
