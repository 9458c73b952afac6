"""The LoRA picker: choose LoRAs from the LoRA folder (those that fit the loaded model), each with a weight.

The choice lives in the form's `loras` (name -> weight). The list is read with `list_loras` (the page
wires it to the engine; reading hashes new files, so it runs off the event loop) when the page opens,
when the model changes, and on the refresh button.
"""
from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from nicegui import background_tasks, ui

from app.protocol import LoraList

ListLoras = Callable[[], Awaitable[LoraList]]


class LoraPicker:
    def __init__(self, values: Any, list_loras: ListLoras, model: Any = None) -> None:
        self.values = values
        self.list_loras = list_loras
        self.listing: LoraList | None = None
        with ui.column().classes("w-full gap-1").mark("lora-picker"):
            with ui.row().classes("w-full items-center gap-1 no-wrap"):
                self.select = ui.select({}, multiple=True, label="LoRAs", on_change=self._chosen) \
                    .props("outlined dense options-dense use-chips").classes("grow min-w-0").mark("loras")
                ui.button(icon="refresh", on_click=self.refresh) \
                    .props('flat round dense aria-label="Read the LoRA folder again"').tooltip("Read the LoRA folder again")
            self.hint = ui.label().classes("text-xs opacity-60 break-all").mark("lora-hint")
            self.weights()
        if model is not None:  # what fits depends on the loaded model: read the list again when it is ready
            self.hint.bind_visibility_from(model, "model_state", backward=self._model_changed)
        else:
            background_tasks.create(self.refresh(), name="list LoRAs")

    def _model_changed(self, state: str) -> bool:
        if state == "ready":
            background_tasks.create(self.refresh(), name="list LoRAs")
        return True

    async def refresh(self) -> None:
        self.listing = await self.list_loras()
        fitting = {item.name: f"{item.name} · {item.hash[:8]}" for item in self.listing.items if item.fits}
        self.values.loras = {name: weight for name, weight in self.values.loras.items() if name in fitting}
        self.select.set_options(fitting, value=list(self.values.loras))
        unfit = len(self.listing.items) - len(fitting)
        if not self.listing.items:
            self.hint.set_text(f"No LoRAs yet: put .safetensors files in {self.listing.lora_dir}")
        else:
            self.hint.set_text(f"{unfit} more in the folder do not fit this model" if unfit else "")
        self.weights.refresh()

    def _chosen(self, event: Any) -> None:
        chosen = list(event.value or [])
        self.values.loras = {name: self.values.loras.get(name, 1.0) for name in chosen}
        self.weights.refresh()

    def choose(self, loras: dict[str, float]) -> None:
        """Set the choice (from "use these settings"); names the folder lacks are left out."""
        known = set(self.select.options) if isinstance(self.select.options, dict) else set()
        self.values.loras = {name: weight for name, weight in loras.items() if name in known}
        self.select.set_value(list(self.values.loras))
        self.weights.refresh()

    @ui.refreshable_method
    def weights(self) -> None:
        for name in self.values.loras:
            with ui.row().classes("w-full items-center gap-2 no-wrap").mark(f"lora-weight {name}"):
                ui.label(name).classes("text-xs w-24 truncate")
                ui.slider(min=-1, max=2, step=0.05, value=self.values.loras[name],
                          on_change=lambda e, name=name: self._weigh(name, e.value)) \
                    .props(f'label-always dense aria-label="Weight of {name}"').mark("lora-weight-slider")

    def _weigh(self, name: str, weight: float) -> None:
        if name in self.values.loras:
            self.values.loras = {**self.values.loras, name: float(weight)}
