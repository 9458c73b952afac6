"""The studio in chromium with two local workers: the header counts the workers and the busy ones, and each
job card says which worker runs it."""
from __future__ import annotations

import re
import uuid
from collections.abc import Callable

import pytest
from playwright.sync_api import Page, expect

from tests.fixtures.browser import JOB_TIMEOUT_MS
from tests.ui.studio_page import generate_with_ctrl_enter, job_card, wait_until_ready

pytestmark = [pytest.mark.browser, pytest.mark.slow]


def test_the_header_counts_busy_workers_and_each_card_says_where_it_runs(
    start_server, open_page: Callable[..., Page]
) -> None:
    server = start_server(env={"AI_ARTIST_WORKERS__LOCAL": "2", "AI_ARTIST_PREVIEWS__ENABLED": "false"})
    page = open_page(server.base_url + "/")
    wait_until_ready(page)
    header = page.locator(".studio-header")
    expect(header.get_by_text("2 workers, 0 busy")).to_be_visible()
    page.get_by_label("Steps", exact=True).press("End")  # the slider's most: 100 steps
    prompts = [f"two at once {index} {uuid.uuid4().hex[:6]}" for index in range(2)]
    for prompt in prompts:
        generate_with_ctrl_enter(page, prompt)
    expect(header.get_by_text("2 workers, 2 busy")).to_be_visible(timeout=JOB_TIMEOUT_MS)
    where = set()
    for prompt in prompts:
        line = job_card(page, prompt).get_by_text(re.compile(r"on local-[12]"))
        expect(line).to_be_visible(timeout=JOB_TIMEOUT_MS)
        where.add(re.search(r"local-[12]", line.inner_text()).group())
    assert where == {"local-1", "local-2"}
    for prompt in prompts:
        job_card(page, prompt).get_by_role("button", name="Cancel").click()
    expect(header.get_by_text("2 workers, 0 busy")).to_be_visible(timeout=JOB_TIMEOUT_MS)
