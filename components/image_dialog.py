"""A generated image at full size with every parameter, the picture (and mask) it started from beside it,
a download link, "use these settings" and "use as input"."""
from __future__ import annotations

from collections.abc import Callable

from nicegui import ui

from app.engine.views import input_urls
from app.protocol import GenerationMetadata

MODE_LABELS = {"txt2img": "From the prompt", "img2img": "Image to image", "inpaint": "Inpainting"}


def parameter_rows(metadata: GenerationMetadata) -> list[tuple[str, str]]:
    """The parameters as (label, text) pairs, in the order an artist reads them."""
    rows = [
        ("Prompt", metadata.prompt),
        ("Negative prompt", metadata.negative_prompt or "—"),
        ("Seed", str(metadata.seed)),
        ("Steps", str(metadata.num_inference_steps)),
        ("Guidance", f"{metadata.guidance_scale:g}"),
        ("Size", f"{metadata.width} × {metadata.height}"),
        ("Model", metadata.model),
        ("Sampler", metadata.scheduler or "model default"),
        ("Mode", MODE_LABELS.get(metadata.mode, metadata.mode)),
        ("Created", metadata.created_at.strftime("%Y-%m-%d %H:%M:%S UTC")),
        ("Took", f"{metadata.duration_seconds:.1f} s"),
    ]
    if metadata.strength is not None:
        rows.insert(7, ("Strength", f"{metadata.strength:g}"))
    if metadata.mask_blur is not None:
        rows.insert(8, ("Mask blur", f"{metadata.mask_blur} px"))
    if metadata.loras:
        rows.insert(7, ("LoRAs", ", ".join(f"{lora.name} × {lora.weight:g}" for lora in metadata.loras)))
    return rows


class ImageDialog:
    """One dialog per page, filled with whichever image is opened."""

    def __init__(
        self,
        on_use_settings: Callable[[GenerationMetadata], None],
        on_use_input: Callable[[str, str], None] | None = None,
    ) -> None:
        self.on_use_settings = on_use_settings
        self.on_use_input = on_use_input
        self.url = ""
        self.metadata: GenerationMetadata | None = None
        with ui.dialog().props("maximized-on-mobile") as self.dialog, \
                ui.card().classes("w-full max-w-4xl p-0").mark("image-dialog"):
            self.content()

    def open(self, url: str, metadata: GenerationMetadata) -> None:
        self.url, self.metadata = url, metadata
        self.content.refresh()
        self.dialog.open()

    def use_settings(self) -> None:
        if self.metadata is not None:
            self.on_use_settings(self.metadata)
            ui.notify("Settings copied into the form", type="positive", position="top")
        self.dialog.close()

    def use_as_input(self) -> None:
        if self.on_use_input is not None:
            self.on_use_input(self.url.rsplit("/", 1)[-1], self.url)
            ui.notify("The picture is the input of the next job", type="positive", position="top")
        self.dialog.close()

    @ui.refreshable_method
    def content(self) -> None:
        if self.metadata is None:
            return
        name = self.url.rsplit("/", 1)[-1]
        with ui.row().classes("w-full no-wrap items-stretch gap-0 max-md:flex-col"):
            with ui.element("div").classes("grow flex items-center justify-center bg-black/80 min-h-64"):
                ui.image(self.url).props("fit=contain no-transition").classes("w-full max-h-[75vh]") \
                    .props(f'alt="{name}"').mark("dialog-image")
            inputs = input_urls(self.metadata)
            if inputs:
                with ui.column().classes("p-2 gap-2 md:w-36 shrink-0 max-md:flex-row").mark("dialog-inputs"):
                    for role, label in (("init_image", "Input"), ("mask_image", "Mask")):
                        if role in inputs:
                            ui.label(label).classes("text-xs opacity-60")
                            ui.image(inputs[role]).props(f'fit=contain no-transition alt="{label}"') \
                                .classes("w-32 h-32 rounded bg-black/80").mark(f"dialog-{role.replace('_', '-')}")
            with ui.column().classes("p-4 gap-3 md:w-80 shrink-0"):
                with ui.row().classes("w-full items-center justify-between"):
                    ui.label(name).classes("text-xs opacity-60 break-all")
                    ui.button(icon="close", on_click=self.dialog.close).props('flat round dense aria-label="Close"').tooltip("Close")
                with ui.grid(columns="auto 1fr").classes("gap-x-3 gap-y-1 text-sm w-full").mark("parameters"):
                    for label, text in parameter_rows(self.metadata):
                        ui.label(label).classes("opacity-60")
                        ui.label(text).classes("break-words min-w-0 select-all")
                with ui.row().classes("w-full gap-2"):
                    ui.button("Download", icon="download").props(f'unelevated href="{self.url}" download="{name}" tag=a') \
                        .mark("download")
                    ui.button("Use these settings", icon="tune", on_click=self.use_settings).props("outline") \
                        .mark("use-settings")
                    if self.on_use_input is not None:
                        ui.button("Use as input", icon="input", on_click=self.use_as_input).props("outline") \
                            .mark("use-as-input")
