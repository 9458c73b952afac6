"""The prompt panel's input area: drop or pick a picture (or "Use as input" from a gallery image), how much
to change it, and a brush to paint the part to repaint.

With no input the job draws from the prompt; with one it reworks it (image-to-image); with paint on it,
only the painted part is repainted (inpainting). The panel sets the form's values (`init_image`: the
stored name, `mask`: the painted mask as a data: URL, `strength`, `mask_blur`); storing an upload goes
through `store_upload`, which the page wires to the engine.
"""
from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from nicegui import events, ui

from app.protocol import UploadResponse

from .mask_painter import MaskPainter

StoreUpload = Callable[[bytes], Awaitable["UploadResponse | str"]]
"""store_upload(data) -> the stored upload, or a message saying why it cannot be used."""

ACCEPTED = "image/png,image/jpeg,image/webp"


class InputPanel:
    def __init__(self, values: Any, store_upload: StoreUpload, max_bytes: int) -> None:
        self.values = values
        self.store_upload = store_upload
        with ui.column().classes("w-full gap-2").mark("input-panel"):
            with ui.row().classes("w-full items-center justify-between"):
                ui.label("Input image").classes("text-sm opacity-70")
                ui.button("Remove", icon="close", on_click=self.remove).props("flat dense no-caps size=sm") \
                    .mark("remove-input").bind_visibility_from(values, "init_image", backward=bool)
            self.upload = ui.upload(auto_upload=True, max_file_size=max_bytes, on_upload=self._uploaded,
                                    on_rejected=lambda: ui.notify(f"Pick a PNG, JPEG or WebP under "
                                                                  f"{max_bytes / 1_000_000:.0f} MB", type="warning")) \
                .props(f'accept="{ACCEPTED}" flat bordered hide-upload-btn label="Drop or pick a picture to start from"') \
                .classes("w-full").mark("input-upload")
            with ui.column().classes("w-full gap-2").bind_visibility_from(values, "init_image", backward=bool):
                self.painter = MaskPainter(on_change=self._painted).mark("mask-painter")
                self._slider("Strength", "strength", 0, 1, 0.05, "strength")
                with ui.row().classes("w-full items-center gap-2 no-wrap"):
                    ui.switch("Paint a mask", on_change=lambda e: self.painter.set_painting(e.value)) \
                        .props("dense").mark("paint-mask")
                    ui.toggle({False: "Paint", True: "Erase"}, value=False,
                              on_change=lambda e: self.painter.set_erase(e.value)) \
                        .props("dense unelevated no-caps").mark("brush-mode")
                    ui.button(icon="layers_clear", on_click=self.painter.clear) \
                        .props('flat round dense aria-label="Clear the mask"').tooltip("Clear the mask").mark("clear-mask")
                with ui.row().classes("w-full items-center gap-2 no-wrap"):
                    ui.label("Brush").classes("text-sm opacity-70 w-16")
                    ui.slider(min=4, max=96, step=2, value=24, on_change=lambda e: self.painter.set_brush(e.value)) \
                        .props("label").mark("brush-size")
                ui.label().classes("text-xs opacity-60").mark("input-mode") \
                    .bind_text_from(values, "mask", backward=lambda mask: "Repaints the painted part, keeps the rest"
                                    if mask else "Reworks the whole picture; paint a mask to repaint a part. The "
                                    "result keeps the picture's shape at the model's size.")
                with ui.column().classes("w-full gap-0").bind_visibility_from(values, "mask", backward=bool):
                    self._slider("Mask blur", "mask_blur", 0, 32, 1, "mask-blur")

    def _slider(self, title: str, field: str, low: float, high: float, step: float, marker: str) -> None:
        with ui.column().classes("w-full gap-0"):
            with ui.row().classes("w-full justify-between"):
                ui.label(title).classes("text-sm opacity-70")
                ui.label().bind_text_from(self.values, field, backward=lambda v: f"{v:g}").mark(f"{marker}-value")
            ui.slider(min=low, max=high, step=step).props(f'label aria-label="{title}"').mark(marker) \
                .bind_value(self.values, field)

    async def _uploaded(self, event: events.UploadEventArguments) -> None:
        answer = await self.store_upload(await event.file.read())
        self.upload.reset()
        if isinstance(answer, str):
            ui.notify(answer, type="warning", position="top")
            return
        self.use(answer.name, answer.url)

    def use(self, name: str, url: str) -> None:
        """Start from this stored picture (an upload, or a gallery image by name)."""
        self.values.init_image, self.values.mask = name, None
        self.painter.show(url)

    def remove(self) -> None:
        self.values.init_image, self.values.mask = None, None
        self.painter.show("")

    def _painted(self, mask: str | None) -> None:
        self.values.mask = mask
