"""What the browser tests do on the studio's page, the way an artist would."""
from __future__ import annotations

from playwright.sync_api import Page, expect

from tests.fixtures.browser import JOB_TIMEOUT_MS


def wait_until_ready(page: Page) -> None:
    expect(page.locator(".q-chip", has_text="Ready")).to_be_visible(timeout=JOB_TIMEOUT_MS)


def generate_with_ctrl_enter(page: Page, prompt: str) -> None:
    field = page.get_by_label("Prompt", exact=True)
    field.fill(prompt)
    field.press("Control+Enter")


def track_progress_values(page: Page) -> None:
    """Record every value any progress bar shows, from the page's side (a MutationObserver)."""
    page.evaluate(
        """() => {
            window.progressSeen = [];
            new MutationObserver(() => document.querySelectorAll('[role=progressbar]').forEach(bar =>
                window.progressSeen.push(Number(bar.getAttribute('aria-valuenow')))
            )).observe(document.body, {subtree: true, attributes: true, attributeFilter: ['aria-valuenow']});
        }"""
    )


def job_card(page: Page, prompt: str):
    return page.locator(".job-card", has_text=prompt)
