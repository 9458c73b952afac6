"""NiceGUI pages: the studio at `/`, composed from `components/`, and the guide's `/test/websocket`.

State lives in the engine: a page only binds widgets to the `LiveJob` objects of `LiveJobs` (fed by the
event bus on the loop) and registers hooks there for new jobs and new images, removed when its client
goes away. Reloading or reconnecting builds the page again from what the engine knows now.
"""
from __future__ import annotations

from pathlib import Path

from fastapi.responses import FileResponse
from nicegui import app, run, ui

from components import (
    FormServices,
    Gallery,
    ImageDialog,
    JobList,
    ModelPicker,
    PromptForm,
    SwitchOutcome,
    size_presets,
    studio_header,
)

from ..engine import (
    Engine,
    InputProblem,
    InvalidRequest,
    JobAlreadyFinished,
    JobNotFound,
    ModelBusy,
    ModelUnavailable,
    QueueFull,
)
from ..protocol import GenerateRequest, LoraList, UploadResponse
from .live_jobs import LiveJob, LiveJobs

STATIC_DIR = Path(__file__).resolve().parent / "static"
TEST_PAGE = STATIC_DIR / "test_websocket.html"
STUDIO_CSS = """
.studio-section-title { letter-spacing: .02em; }
.job-card { transition: box-shadow .2s ease; }
.gallery-thumb:focus-visible, .job-card img:focus-visible { outline: 2px solid var(--q-primary); outline-offset: 2px; }
"""


def register(engine: Engine) -> None:
    """Add the pages to NiceGUI's app; called once by `app.web.server.build`, before `ui.run`."""
    live = LiveJobs(engine)
    app.on_shutdown(live.close)

    @ui.page("/", title="AI Artist")
    def studio() -> None:
        build_studio(engine, live)

    @app.get("/test/websocket", include_in_schema=False)
    def test_websocket_page() -> FileResponse:
        """The websocket guide's test interface: a plain HTML client of /ws and /api."""
        return FileResponse(TEST_PAGE, media_type="text/html")

    app.add_static_files("/test/static", STATIC_DIR)


def build_studio(engine: Engine, live: LiveJobs) -> None:
    ui.colors(primary="#5b5bd6", secondary="#8e8ea0", accent="#e5484d", positive="#30a46c")
    ui.add_css(STUDIO_CSS)
    ui.query(".nicegui-content").classes("p-0")
    studio_header(live.status)

    page_client = ui.context.client
    browser = page_client.request.client.host if page_client.request and page_client.request.client else "unknown"

    async def submit(request: GenerateRequest) -> str | None:
        prepared = await run.io_bound(engine.prepare, request)  # decodes input images: off the event loop
        try:
            engine.submit(prepared, client=f"studio:{browser}")
        except InvalidRequest as error:
            return "; ".join(message for _, message in error.problems)
        except QueueFull as error:
            return str(error)
        return None

    async def store_upload(data: bytes) -> UploadResponse | str:
        try:
            return await run.io_bound(engine.upload, data)
        except InputProblem as problem:
            return str(problem)

    async def list_loras() -> LoraList:
        return await run.io_bound(engine.lora_list)

    def switch_model(reference: str) -> SwitchOutcome:
        try:
            answer = engine.switch_model(reference)
        except (ModelUnavailable, ModelBusy) as error:
            return SwitchOutcome(error=str(error))
        live.refresh_status()  # every tab's picker and header show "loading" at once
        return SwitchOutcome(model=live.status.model_name or answer.model, failed_jobs=len(answer.failed_jobs))

    def cancel(job: LiveJob) -> None:
        try:
            engine.cancel(job.session_id)
        except (JobAlreadyFinished, JobNotFound) as error:
            ui.notify(str(error), type="info", position="top")

    dialog = ImageDialog(on_use_settings=lambda metadata: form.apply(metadata),
                         on_use_input=lambda name, url: form.use_as_input(name, url))
    services = FormServices(store_upload, list_loras, engine.settings.uploads.max_bytes)
    with ui.element("div").classes(
        "w-full max-w-7xl mx-auto p-4 gap-6 grid grid-cols-1 lg:grid-cols-[minmax(320px,400px)_minmax(0,1fr)]"
    ):
        # Sticky on wide screens, scrolling on its own when taller than the window (the input area makes it tall).
        with ui.column().classes("w-full gap-4 self-start lg:sticky lg:top-20 lg:max-h-[calc(100vh-6rem)] "
                                 "lg:overflow-y-auto"):
            with ui.card().classes("w-full").mark("model-panel"):
                ModelPicker(live.status, list_models=engine.models, switch_model=switch_model)
            with ui.card().classes("w-full").mark("prompt-panel"):
                ui.label("Create").classes("text-base font-semibold studio-section-title")
                form = PromptForm(size_presets(engine.size_limits), on_submit=submit, model=live.status,
                                  services=services)
        with ui.column().classes("w-full gap-6 min-w-0"):
            with ui.column().classes("w-full gap-2"):
                ui.label("Jobs").classes("text-base font-semibold studio-section-title")
                jobs = JobList(live.recent(), on_cancel=cancel, on_open_image=dialog.open)
            with ui.column().classes("w-full gap-2"):
                ui.label("Gallery").classes("text-base font-semibold studio-section-title")
                gallery = Gallery(engine.gallery, on_open=dialog.open)

    def show_job(job: LiveJob) -> None:
        jobs.add(job)
        watch_previews(job)

    def watch_previews(job: LiveJob) -> None:
        """This tab shows the job's card: its previews are rendered (until it ends or the tab goes)."""
        if not job.finished:
            engine.watch_previews(job.session_id, jobs)

    for shown in jobs.jobs.values():
        watch_previews(shown)
    live.job_added_hooks.add(show_job)
    live.completion_hooks.add(gallery.on_new_images)

    def forget_page() -> None:
        live.job_added_hooks.discard(show_job)
        live.completion_hooks.discard(gallery.on_new_images)
        engine.stop_watching(jobs)

    ui.context.client.on_delete(forget_page)
