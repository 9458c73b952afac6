"""A brush over the input image to paint the inpainting mask (a small Vue element: mask_painter.js).

White paint = repaint, the rest is kept. Each finished stroke hands `on_change` the mask as a PNG
`data:` URL (None once nothing is painted), which goes to the engine as `mask_image` as it is.
"""
from __future__ import annotations

from collections.abc import Callable

from nicegui import ui
from nicegui.events import GenericEventArguments


class MaskPainter(ui.element, component="mask_painter.js"):
    def __init__(self, on_change: Callable[[str | None], None]) -> None:
        super().__init__()
        self._props["src"] = ""
        self._props["alt"] = "Input image"
        self._props["brush"] = 24
        self._props["erase"] = False
        self._props["painting"] = False
        self.on_change = on_change
        self.on("change", self._changed)

    def _changed(self, event: GenericEventArguments) -> None:
        mask = event.args.get("mask") if isinstance(event.args, dict) else None
        self.on_change(mask if isinstance(mask, str) and mask.startswith("data:image/png") else None)

    def show(self, src: str) -> None:
        """Paint over another picture (its mask starts empty)."""
        self._props["src"] = src
        self.update()

    def set_brush(self, size: float) -> None:
        self._props["brush"] = int(size)
        self.update()

    def set_erase(self, erase: bool) -> None:
        self._props["erase"] = bool(erase)
        self.update()

    def set_painting(self, painting: bool) -> None:
        self._props["painting"] = bool(painting)
        self.update()

    def clear(self) -> None:
        self.run_method("clear")
