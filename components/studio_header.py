"""The header: the studio's name, the loaded model and its state, the queue, the workers, and light/dark mode."""
from __future__ import annotations

from nicegui import ui

from app.ui.live_jobs import StudioStatus

MODEL_STATE_LOOK = {
    "loading": ("Loading model…", "amber-8", "hourglass_top"),
    "ready": ("Ready", "positive", "check_circle"),
    "error": ("Model failed", "negative", "error"),
}
DARK_MODE_CYCLE = {None: (True, "dark_mode", "Dark"), True: (False, "light_mode", "Light"), False: (None, "brightness_auto", "Follow system")}


def queue_summary(pending: int, running: int) -> str:
    if not pending and not running:
        return "idle"
    parts = [f"{running} running"] if running else []
    if pending:
        parts.append(f"{pending} waiting")
    return ", ".join(parts)


def workers_summary(total: int, busy: int) -> str:
    """"2 workers, 1 busy"; "no worker" while none is there (remote workers only, none joined yet)."""
    if not total:
        return "no worker"
    return f"{total} worker{'s' if total != 1 else ''}, {busy} busy"


def studio_header(status: StudioStatus) -> None:
    dark = ui.dark_mode(None)  # follow the system until the artist picks
    with ui.header().classes("items-center justify-between gap-3 px-4 py-2 studio-header"):
        with ui.row().classes("items-center gap-2 no-wrap"):
            ui.icon("palette", size="1.6rem")
            ui.label("AI Artist").classes("text-lg font-semibold tracking-tight")
        with ui.row().classes("items-center gap-2 no-wrap min-w-0"):
            ui.label().classes("text-sm opacity-80 truncate max-sm:hidden").mark("model-name") \
                .bind_text_from(status, "model_name").tooltip("Loaded model (switch it in the Model panel)")
            chip = ui.chip().props("dense square").classes("text-xs").mark("model-state")

            def show_state(state: str) -> str:
                text, color, icon = MODEL_STATE_LOOK.get(state, (state, "grey", "help"))
                chip.props(f"color={color} text-color=white icon={icon}")
                return text

            chip.bind_text_from(status, "model_state", backward=show_state)
            chip.bind_visibility_from(status, "model_state", backward=bool)
            ui.tooltip().bind_text_from(status, "model_error").move(chip)
            queue = ui.label().classes("text-xs opacity-80 max-sm:hidden").mark("queue-summary")
            queue.bind_text_from(status, "pending", backward=lambda _: queue_summary(status.pending, status.running))
            queue.bind_text_from(status, "running", backward=lambda _: queue_summary(status.pending, status.running))
            workers = ui.label().classes("text-xs opacity-80 max-sm:hidden").mark("workers-summary") \
                .tooltip("Generation workers (GET /api/workers lists them)")
            for field in ("workers_total", "workers_busy"):
                workers.bind_text_from(
                    status, field, backward=lambda _: workers_summary(status.workers_total, status.workers_busy)
                )
            mode_button = ui.button(icon="brightness_auto").props('flat round dense color=white aria-label="Light / dark / follow system"') \
                .mark("dark-mode").tooltip("Light / dark / follow system")

            def cycle_mode() -> None:
                next_value, icon, _ = DARK_MODE_CYCLE[dark.value]
                dark.set_value(next_value)
                mode_button.props(f"icon={icon}")

            mode_button.on_click(cycle_mode)
