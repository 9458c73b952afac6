"""One generation as a card whose widgets are bound to its `LiveJob`.

Nothing here is refreshed by hand: the progress bar, "step 15/30", the ETA, the queue position, the
live preview (by URL) and the finished images all follow the job's bindable fields, which the bus
listener in `app.live_jobs` sets on the event loop as the diffusion callback reports each step.
"""
from __future__ import annotations

from collections.abc import Callable

from nicegui import ui

from app.protocol import GenerationMetadata
from app.ui.live_jobs import LiveJob

STATUS_LOOK = {
    "queued": ("Queued", "grey-7", "schedule"),
    "running": ("Generating", "primary", "brush"),
    "completed": ("Done", "positive", "check_circle"),
    "failed": ("Failed", "negative", "error"),
    "cancelled": ("Cancelled", "grey-6", "block"),
}

OpenImage = Callable[[str, GenerationMetadata], None]


def eta_text(seconds: float | None) -> str:
    if seconds is None:
        return ""
    if seconds < 1:
        return "almost done"
    if seconds < 60:
        return f"about {seconds:.0f} s left"
    return f"about {seconds / 60:.0f} min left"


def queue_text(position: int | None) -> str:
    if position is None:
        return "waiting for the model"
    return "next in line" if position == 1 else f"#{position} in the queue"


def status_line(job: LiveJob) -> str:
    """The card's one line under the bar: queue position, "step 15/30 · about 3 s left · on local-2", the
    steps done and where, or why the job failed."""
    where = f"on {job.worker}" if job.worker else ""
    if job.status == "queued":
        return queue_text(job.position)
    if job.status == "running":
        return " · ".join(part for part in (job.step_text, eta_text(job.eta_seconds), where) if part)
    if job.status == "completed":
        return " · ".join(part for part in (job.step_text, where) if part)
    if job.status == "failed":
        return job.error
    return ""  # cancelled: the chip says it


def job_card(
    job: LiveJob,
    *,
    on_cancel: Callable[[LiveJob], None],
    on_open_image: OpenImage,
    on_dismiss: Callable[[LiveJob], None],
) -> ui.card:
    """Build the card for `job` in the current container and return it.

    Every open tab builds one per new job on the event loop, so it is kept to nine elements (plus one per
    image): NiceGUI's cost grows with each element and binding (bench/bench_ui.py; figures in docs/ui.md)."""
    with ui.card().classes("w-full job-card gap-2").mark(f"job-{job.session_id}") as card:
        with ui.row().classes("w-full items-start no-wrap gap-2"):
            ui.label(job.prompt).classes("grow text-sm font-medium line-clamp-3 break-words min-w-0")
            _status_chip(job)
            _cancel_or_dismiss_button(job, on_cancel, on_dismiss)
        ui.linear_progress(show_value=False, size="6px").props("rounded instant-feedback") \
            .mark("progress").bind_value_from(job, "progress") \
            .bind_visibility_from(job, "status", backward=lambda status: status in ("queued", "running", "completed"))
        _status_line(job)
        _preview(job)
        _images(job, on_open_image)
    return card


def _unfinished(status: str) -> bool:
    return status in ("queued", "running")


def _cancel_or_dismiss_button(
    job: LiveJob, on_cancel: Callable[[LiveJob], None], on_dismiss: Callable[[LiveJob], None]
) -> None:
    """Stop while the job is queued or running; afterwards the same button removes the card from this list."""

    def press() -> None:
        (on_cancel if _unfinished(job.status) else on_dismiss)(job)

    button = ui.button(icon="stop_circle", on_click=press).props("flat round dense size=sm").mark("cancel dismiss")

    def look(status: str) -> bool:
        label = "Cancel" if _unfinished(status) else "Remove from this list"
        icon = "stop_circle" if _unfinished(status) else "close"
        button.props(f'icon={icon} title="{label}" aria-label="{label}"')
        return True

    button.bind_visibility_from(job, "status", backward=look)


def _status_line(job: LiveJob) -> None:
    line = ui.label().classes("text-xs whitespace-pre-wrap break-words").mark("status-line")

    def text(_: object) -> str:
        failed = job.status == "failed"
        line.classes(add="text-negative text-sm" if failed else "opacity-70",
                     remove="opacity-70" if failed else "text-negative text-sm")
        return status_line(job)

    for field in ("status", "step", "position", "eta_seconds", "error", "worker"):
        line.bind_text_from(job, field, backward=text)


def _status_chip(job: LiveJob) -> None:
    chip = ui.chip().props("dense square").classes("text-xs shrink-0").mark("status")

    def show(status: str) -> str:
        text, color, icon = STATUS_LOOK.get(status, (status, "grey", "help"))
        chip.props(f"color={color} text-color=white icon={icon}")
        return text

    chip.bind_text_from(job, "status", backward=show)


def _preview(job: LiveJob) -> None:
    """The live preview while running, when the engine sends previews (an image served by URL)."""
    image = ui.image().props("fit=contain no-spinner no-transition").classes("w-40 h-40 rounded") \
        .mark("preview").bind_source_from(job, "preview_url")
    # Shown while running and once a preview exists: two bindings, each re-evaluating the same test.
    image.bind_visibility_from(job, "status", backward=lambda _: job.status == "running" and bool(job.preview_url))
    image.bind_visibility_from(job, "preview_url", backward=lambda _: job.status == "running" and bool(job.preview_url))


def _images(job: LiveJob, on_open_image: OpenImage) -> None:
    """One slot per image of the batch, shown when the job completes (they replace the preview)."""
    with ui.row().classes("w-full gap-2").bind_visibility_from(job, "image_urls", backward=bool):
        for index in range(job.num_images):
            def open_this(index: int = index) -> None:
                if job.metadata is not None and index < len(job.image_urls):
                    on_open_image(job.image_urls[index], job.metadata)

            ui.image().props("fit=cover no-transition").classes("w-28 h-28 rounded cursor-pointer") \
                .props('tabindex=0 role=button aria-label="Open image"').mark("result-image") \
                .on("click", open_this).on("keydown.enter", open_this) \
                .bind_source_from(job, "image_urls", backward=lambda urls, i=index: urls[i] if i < len(urls) else "")
