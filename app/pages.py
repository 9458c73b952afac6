"""NiceGUI pages. A minimal studio fed by the same event stream as /ws (the full studio is components/)."""
from __future__ import annotations

from nicegui import ui

from .engine import Engine, InvalidRequest, QueueFull
from .live_jobs import LiveJob, LiveJobs
from .protocol import GenerateRequest


def register(engine: Engine) -> None:
    live = LiveJobs(engine)

    def job_card(job: LiveJob) -> None:
        with ui.card().classes("w-full"):
            ui.label(job.prompt).classes("font-medium")
            ui.linear_progress(show_value=False).bind_value_from(job, "progress")
            ui.label().bind_text_from(job, "step", backward=lambda _: job.step_text)
            ui.label().bind_text_from(job, "status")
            with ui.row():
                ui.image().bind_source_from(
                    job, "image_urls", backward=lambda urls: urls[0] if urls else ""
                ).classes("w-32").bind_visibility_from(job, "image_urls", backward=bool)

    @ui.page("/")
    def studio() -> None:
        ui.label("AI Artist").classes("text-2xl")
        prompt = ui.textarea("Prompt").classes("w-full")
        jobs_column = ui.column().classes("w-full")

        def submit() -> None:
            try:
                session_id, _ = engine.submit(GenerateRequest(prompt=prompt.value or "", num_inference_steps=20))
            except (InvalidRequest, QueueFull, ValueError) as error:
                ui.notify(str(error), type="negative")
                return
            with jobs_column:
                job_card(live.get(session_id))

        ui.button("Generate", on_click=submit)
        with jobs_column:
            for job in live.unfinished():
                job_card(job)
