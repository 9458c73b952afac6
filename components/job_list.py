"""The jobs column: a card per job, newest on top, for jobs from this tab, other tabs and API clients.

A freshly opened (or reloaded, or reconnected) page starts from what the engine knows now: every queued
and running job with its current progress, plus the latest finished ones. New jobs arrive through the
`job_added` hook; each card then follows its own `LiveJob` by binding alone.
"""
from __future__ import annotations

from collections.abc import Callable

from nicegui import ui

from app.ui.live_jobs import LiveJob

from .job_card import OpenImage, job_card


class JobList:
    def __init__(
        self,
        jobs: list[LiveJob],
        *,
        on_cancel: Callable[[LiveJob], None],
        on_open_image: OpenImage,
        max_cards: int = 12,
    ) -> None:
        self.on_cancel = on_cancel
        self.on_open_image = on_open_image
        self.max_cards = max_cards
        self.cards: dict[str, ui.card] = {}
        self.jobs: dict[str, LiveJob] = {}
        with ui.column().classes("w-full gap-3").mark("jobs") as self.column:
            self.empty = ui.label("Nothing running. Write a prompt and press Generate.") \
                .classes("text-sm opacity-60 py-4").mark("jobs-empty")
        for job in reversed(jobs):
            self.add(job)

    def add(self, job: LiveJob) -> None:
        """Put a card for `job` on top (nothing happens if it is shown already)."""
        if job.session_id in self.cards:
            return
        with self.column:
            card = job_card(job, on_cancel=self.on_cancel, on_open_image=self.on_open_image, on_dismiss=self.dismiss)
        card.move(self.column, target_index=0)
        self.cards[job.session_id], self.jobs[job.session_id] = card, job
        self._trim()
        self.empty.set_visibility(False)

    def dismiss(self, job: LiveJob) -> None:
        card = self.cards.pop(job.session_id, None)
        self.jobs.pop(job.session_id, None)
        if card is not None:
            card.delete()
        self.empty.set_visibility(not self.cards)

    def _trim(self) -> None:
        """Drop the oldest finished cards beyond `max_cards` (unfinished ones always stay)."""
        finished = [job for job in self.jobs.values() if job.finished]
        while len(self.cards) > self.max_cards and finished:
            self.dismiss(finished.pop(0))

