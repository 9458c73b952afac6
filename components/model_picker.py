"""The model picker: which model is loaded and its state, the known models to switch to, a field for a
hub id / folder / `.safetensors` path, and a hub download's progress while it runs.

Everything shown is bound to `StudioStatus` (set on the event loop by `LiveJobs`). The picker never
talks to the engine itself: the page hands it `list_models` (`engine.models`) and `switch_model`, which
returns an error message to show or None once the new model is loading.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from nicegui import events, ui

from app.protocol import ModelList
from app.ui.live_jobs import StudioStatus

PICKER_STATE_LOOK = {"loading": ("Loading…", "amber-8"), "ready": ("Ready", "positive"), "error": ("Failed", "negative")}
KIND_LABELS = {"folder": "folder", "single_file": "checkpoint", "hub": "hub"}
REFERENCE_HINT = "owner/name, a diffusers folder or a .safetensors file"
REFERENCE_LABEL = "Or load a hub id, folder or file"


@dataclass(frozen=True)
class SwitchOutcome:
    """What `switch_model` answers: an error to show, or the model now loading and the jobs that failed."""

    error: str | None = None
    model: str = ""
    failed_jobs: int = 0


def format_bytes(count: int) -> str:
    """1536 -> '1.5 KB', 3_500_000 -> '3.5 MB' (decimal units, as download tools show them)."""
    value = float(count)
    for unit in ("B", "KB", "MB", "GB"):
        if value < 1000 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    return f"{value:.1f} GB"


def download_text(downloaded: int, total: int | None) -> str:
    """'Downloading 1.2 MB of 4.0 MB (30 %)', or without a total when the hub did not tell one."""
    if not total:
        return f"Downloading {format_bytes(downloaded)}"
    percent = min(downloaded / total, 1.0) * 100
    return f"Downloading {format_bytes(downloaded)} of {format_bytes(total)} ({percent:.0f} %)"


def waiting_jobs_hint(pending: int) -> str:
    if not pending:
        return ""
    jobs = "job" if pending == 1 else "jobs"
    return f"Switching fails the {pending} waiting {jobs} (a running job finishes first)."


class ModelPicker:
    def __init__(
        self,
        status: StudioStatus,
        list_models: Callable[[], ModelList],
        switch_model: Callable[[str], SwitchOutcome],
    ) -> None:
        self.status = status
        self.list_models = list_models
        self.switch_model = switch_model
        self.choices: dict[str, str] = {}  # reference -> label; every model seen stays, to switch back
        self._build()

    def _build(self) -> None:
        status = self.status
        with ui.column().classes("w-full gap-2").mark("model-picker"):
            with ui.row().classes("w-full items-center justify-between no-wrap"):
                ui.label("Model").classes("text-sm opacity-70")
                # a badge, not a chip: the header's chip stays the page's one model-state chip
                badge = ui.badge().props("rounded").classes("text-xs px-2 py-1").mark("picker-state")
                badge.bind_text_from(status, "model_state", backward=lambda state: self._show_state(badge, state))
            self.select = ui.select({}, label="Switch to", on_change=self._on_pick) \
                .props("outlined dense options-dense").classes("w-full").mark("model-select")
            self.select.bind_visibility_from(status, "model_id", backward=self._follow_model)
            self.select.bind_enabled_from(status, "model_state", backward=lambda state: state != "loading")
            self.select.on("popup-show", lambda: self._refresh_choices(status.model_id))
            with ui.row().classes("w-full items-center gap-2 no-wrap"):
                self.reference = ui.input(REFERENCE_LABEL, placeholder=REFERENCE_HINT) \
                    .props("outlined dense clearable").classes("grow min-w-0").mark("model-reference")
                self.reference.on("keydown.enter", self.load_typed)
                load = ui.button("Load", icon="download", on_click=self.load_typed).props("unelevated dense no-caps") \
                    .mark("model-load").tooltip("Load the model typed here")
                for control in (self.reference, load):
                    control.bind_enabled_from(status, "model_state", backward=lambda state: state != "loading")
            ui.label().classes("text-xs text-negative whitespace-pre-wrap break-words").mark("model-error") \
                .bind_text_from(status, "model_error") \
                .bind_visibility_from(status, "model_state", backward=lambda state: state == "error")
            with ui.column().classes("w-full gap-1").mark("model-download") \
                    .bind_visibility_from(status, "downloading"):
                bar = ui.linear_progress(show_value=False).props("rounded").mark("download-progress")
                bar.bind_visibility_from(status, "download_total", backward=bool)  # no total: the text only
                text = ui.label().classes("text-xs opacity-80").mark("download-text")
                for field in ("downloaded_bytes", "download_total"):
                    bar.bind_value_from(status, field, backward=lambda _: status.download_fraction or 0.0)
                    text.bind_text_from(
                        status, field, backward=lambda _: download_text(status.downloaded_bytes, status.download_total)
                    )
            ui.label().classes("text-xs opacity-60").mark("switch-hint") \
                .bind_text_from(status, "pending", backward=waiting_jobs_hint) \
                .bind_visibility_from(status, "pending", backward=bool)

    @staticmethod
    def _show_state(badge: ui.badge, state: str) -> str:
        text, color = PICKER_STATE_LOOK.get(state, (state, "grey"))
        badge.props(f"color={color} text-color=white")
        return text

    def _refresh_choices(self, current: str) -> None:
        """Known models from the engine, plus every model seen on this page, the current one selected."""
        listing = self.list_models()
        for known in listing.models:
            self.choices[known.model] = f"{known.name} · {KIND_LABELS.get(known.kind, known.kind)}"
        if current and current not in self.choices:
            self.choices[current] = self.status.model_name or current
        self.select.set_options(dict(self.choices), value=current or None)

    def _follow_model(self, model_id: str) -> bool:
        """The selection follows the engine's model (a switch from here, another tab or the API)."""
        self._refresh_choices(model_id)
        return True

    def _on_pick(self, event: events.ValueChangeEventArguments) -> None:
        picked = event.value
        if picked and picked != self.status.model_id:
            self.switch(picked)

    def load_typed(self) -> None:
        reference = (self.reference.value or "").strip()
        if not reference:
            ui.notify(f"Type a model to load: {REFERENCE_HINT}", type="warning", position="top")
            return
        if self.switch(reference):
            self.reference.set_value("")

    def switch(self, reference: str) -> bool:
        """Ask for `reference`; say what went wrong, or that it loads (and which waiting jobs failed)."""
        outcome = self.switch_model(reference)
        if outcome.error is not None:
            self.select.set_value(self.status.model_id or None)  # the picker shows what is really loaded
            ui.notify(f"Cannot load this model: {outcome.error}", type="negative", position="top", multi_line=True,
                      timeout=0, close_button="OK")
            return False
        message = f"Loading {outcome.model}…"
        if outcome.failed_jobs:
            message += f" {outcome.failed_jobs} waiting job(s) failed: submit them again on the new model."
        ui.notify(message, type="info", position="top")
        return True
