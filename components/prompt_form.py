"""The prompt panel: what to draw, how, from which picture (components/input_panel.py), with which LoRAs
(components/lora_picker.py), and the Generate button (or Ctrl+Enter from anywhere).

The widgets are bound two-way to a `FormValues` object, so "use these settings" only has to set its
fields. The form never talks to the engine: it turns its values into a `GenerateRequest` and hands it to
`on_submit`, which returns an error message or None; storing an upload and listing LoRAs go through the
callables the page passes in (`FormServices`).
"""
from __future__ import annotations

import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Protocol

from nicegui import binding, events, ui
from pydantic import ValidationError

from app.pipeline.values import DEFAULT_SCHEDULER, SizeLimits
from app.protocol import GenerateRequest, GenerationMetadata

from .input_panel import InputPanel, StoreUpload
from .lora_picker import ListLoras, LoraPicker
from .sizes import SizePreset, size_presets

MAX_SEED = 2**32 - 1
PROMPT_MISSING = "Describe what you want to draw"
SEED_MISSING = "Enter a seed, roll the dice, or switch to random"
FIELD_NAMES = {
    "prompt": "Prompt",
    "negative_prompt": "Negative prompt",
    "num_inference_steps": "Steps",
    "guidance_scale": "Guidance",
    "num_images": "Images",
    "seed": "Seed",
    "width": "Width",
    "height": "Height",
    "scheduler": "Sampler",
    "init_image": "Input image",
    "strength": "Strength",
    "mask_image": "Mask",
    "mask_blur": "Mask blur",
    "loras": "LoRAs",
}


@binding.bindable_dataclass
class FormValues:
    prompt: str = ""
    negative_prompt: str = ""
    steps: int = 30
    guidance: float = 7.5
    num_images: int = 1
    seed_mode: str = "random"
    seed: int | None = None
    size: str = ""
    scheduler: str = DEFAULT_SCHEDULER
    init_image: str | None = None  # a stored upload's or a gallery image's name
    mask: str | None = None  # the painted mask, a PNG data: URL
    strength: float = 0.75
    mask_blur: int = 4
    loras: dict[str, float] = field(default_factory=dict)  # name -> weight


class ModelFacts(Protocol):
    """What the form follows about the loaded model (`StudioStatus`, bindable): samplers, sizes, state."""

    schedulers: tuple[str, ...]
    size_limits: SizeLimits | None
    model_state: str


@dataclass(frozen=True)
class FormServices:
    """What the form needs from the page: store an upload, list the LoRAs, and the upload size limit."""

    store_upload: StoreUpload
    list_loras: ListLoras
    max_upload_bytes: int


class PromptForm:
    def __init__(
        self,
        presets: list[SizePreset],
        on_submit: Callable[[GenerateRequest], Awaitable[str | None]],
        model: ModelFacts | None = None,
        services: FormServices | None = None,
    ) -> None:
        self.presets = {preset.key: preset for preset in presets}
        self.model = model
        self.services = services
        self.scheduler_options = [DEFAULT_SCHEDULER]
        self.values = FormValues(size=presets[0].key)
        self.on_submit = on_submit
        self.inputs: InputPanel | None = None
        self.lora_picker: LoraPicker | None = None
        self._build()

    def _build(self) -> None:
        values = self.values
        with ui.column().classes("w-full gap-3"):
            self.prompt_input = ui.textarea(
                "Prompt", placeholder="A lighthouse on a cliff at dusk, oil painting",
                validation={PROMPT_MISSING: lambda text: bool(text and text.strip())},
            ).props("outlined autogrow autofocus").classes("w-full").mark("prompt")
            self.prompt_input.bind_value(values, "prompt")
            ui.textarea("Negative prompt", placeholder="blurry, low quality").props("outlined autogrow") \
                .classes("w-full").mark("negative-prompt").bind_value(values, "negative_prompt")
            self._slider("Steps", "steps", 10, 100, 1, "steps")
            self._slider("Guidance", "guidance", 1, 20, 0.5, "guidance")
            with ui.row().classes("w-full items-center gap-3 no-wrap"):
                ui.label("Images").classes("text-sm opacity-70 w-16")
                ui.toggle({1: "1", 2: "2", 3: "3", 4: "4"}).props("dense unelevated no-caps") \
                    .mark("num-images").bind_value(values, "num_images")
            with ui.row().classes("w-full items-center gap-2 no-wrap"):
                ui.label("Seed").classes("text-sm opacity-70 w-16")
                ui.toggle({"random": "Random", "fixed": "Fixed"}).props("dense unelevated no-caps") \
                    .mark("seed-mode").bind_value(values, "seed_mode")
                self.seed_input = ui.number(placeholder="seed", min=0, max=MAX_SEED, precision=0, format="%d") \
                    .props("dense outlined").classes("grow min-w-0").mark("seed")
                self.seed_input.bind_value(values, "seed", forward=_as_seed) \
                    .bind_enabled_from(values, "seed_mode", backward=lambda mode: mode == "fixed")
                ui.button(icon="casino", on_click=self.roll_seed).props('flat round dense aria-label="Roll a new seed"') \
                    .tooltip("Roll a new seed").mark("dice")
            with ui.column().classes("w-full").bind_visibility_from(values, "init_image", backward=lambda name: not name):
                # From a picture the result keeps its shape, at about the model's native size.
                self.size_select = ui.select(self._size_options(), label="Size") \
                    .props("outlined dense options-dense").classes("w-full").mark("size").bind_value(values, "size")
            if self.model is not None:
                self.size_select.bind_visibility_from(self.model, "size_limits", backward=self._follow_sizes)
                self._scheduler_select(self.model)
            if self.services is not None:
                self.lora_picker = LoraPicker(values, self.services.list_loras, self.model)
                with ui.expansion("Start from a picture", icon="image").props("dense") \
                        .classes("w-full").mark("input-expansion") as self.input_expansion:
                    self.inputs = InputPanel(values, self.services.store_upload, self.services.max_upload_bytes)
            with ui.row().classes("w-full items-center justify-between"):
                ui.label("Ctrl+Enter generates from anywhere").classes("text-xs opacity-60")
                ui.button("Generate", icon="auto_awesome", on_click=self.submit).props("unelevated") \
                    .mark("generate")
        ui.keyboard(on_key=self._on_key, ignore=[])

    def _slider(self, title: str, field: str, low: float, high: float, step: float, marker: str) -> None:
        with ui.column().classes("w-full gap-0"):
            with ui.row().classes("w-full justify-between"):
                ui.label(title).classes("text-sm opacity-70")
                ui.label().bind_text_from(self.values, field, backward=lambda v: f"{v:g}").mark(f"{marker}-value")
            ui.slider(min=low, max=high, step=step).props(f'label aria-label="{title}"').mark(marker) \
                .bind_value(self.values, field)

    def _size_options(self) -> dict[str, str]:
        return {key: f"{p.width} × {p.height} · {p.label}" for key, p in self.presets.items()}

    def _show_sizes(self, value: str) -> None:
        self.size_select.set_options(self._size_options(), value=value)

    def _follow_sizes(self, limits: SizeLimits | None) -> bool:
        """Presets follow the loaded model (a switch may change its native size and range)."""
        if limits is not None:
            presets = {preset.key: preset for preset in size_presets(limits)}
            if presets.keys() != self.presets.keys():
                self.presets = presets
                self._show_sizes(self.values.size if self.values.size in presets else next(iter(presets)))
        return True

    def _scheduler_select(self, source: ModelFacts) -> None:
        select = ui.select([DEFAULT_SCHEDULER], label="Sampler").props("outlined dense options-dense") \
            .classes("w-full").mark("scheduler").bind_value(self.values, "scheduler")

        def follow(names: tuple[str, ...]) -> bool:
            """Options follow the loaded model (they change when it loads or is switched)."""
            options = self.scheduler_options = [DEFAULT_SCHEDULER, *(n for n in names if n != DEFAULT_SCHEDULER)]
            if self.values.scheduler not in options:
                self.values.scheduler = DEFAULT_SCHEDULER
            select.set_options(options, value=self.values.scheduler)
            return True

        select.bind_visibility_from(source, "schedulers", backward=follow)

    async def _on_key(self, event: events.KeyEventArguments) -> None:
        if event.key.enter and event.action.keydown and (event.modifiers.ctrl or event.modifiers.meta):
            await self.submit()

    def roll_seed(self) -> None:
        self.values.seed = random.randrange(0, MAX_SEED + 1)
        self.values.seed_mode = "fixed"

    def apply(self, metadata: GenerationMetadata) -> None:
        """Put a finished generation's settings back into the form ("use these settings")."""
        values = self.values
        values.prompt, values.negative_prompt = metadata.prompt, metadata.negative_prompt
        values.steps = min(max(metadata.num_inference_steps, 10), 100)
        values.guidance = min(max(metadata.guidance_scale, 1.0), 20.0)
        values.seed, values.seed_mode = metadata.seed, "fixed"
        scheduler = metadata.scheduler or DEFAULT_SCHEDULER
        values.scheduler = scheduler if scheduler in self.scheduler_options else DEFAULT_SCHEDULER
        key = f"{metadata.width}x{metadata.height}"
        if key not in self.presets:
            self.presets[key] = SizePreset(metadata.width, metadata.height, "from image")
        self._show_sizes(key)
        if metadata.strength is not None:
            values.strength, values.mask_blur = metadata.strength, metadata.mask_blur or values.mask_blur
        if self.lora_picker is not None:
            self.lora_picker.choose({lora.name: lora.weight for lora in metadata.loras})

    def use_as_input(self, name: str, url: str) -> None:
        """Start the next job from this picture ("Use as input" on a gallery image)."""
        if self.inputs is not None:
            self.inputs.use(name, url)
            self.input_expansion.open()

    def request(self) -> GenerateRequest | str:
        """The request the form describes, or a message saying what to fix."""
        values = self.values
        if not (values.prompt or "").strip():
            return PROMPT_MISSING
        if values.seed_mode == "fixed" and values.seed is None:
            return SEED_MISSING
        preset = self.presets.get(values.size) if not values.init_image else None  # an input: its own shape
        try:
            return GenerateRequest(
                prompt=values.prompt,
                negative_prompt=values.negative_prompt or "",
                num_inference_steps=int(values.steps),
                guidance_scale=float(values.guidance),
                num_images=int(values.num_images),
                seed=values.seed if values.seed_mode == "fixed" else None,
                width=preset.width if preset else None,
                height=preset.height if preset else None,
                scheduler=None if values.scheduler == DEFAULT_SCHEDULER else values.scheduler,
                init_image=values.init_image,
                strength=float(values.strength),
                mask_image=values.mask if values.init_image else None,
                mask_blur=int(values.mask_blur),
                loras=[{"name": name, "weight": weight} for name, weight in values.loras.items()],
            )
        except ValidationError as error:
            return describe_validation(error)

    async def submit(self) -> None:
        request = self.request()
        problem = request if isinstance(request, str) else await self.on_submit(request)
        if problem is None:
            return
        if problem == PROMPT_MISSING:
            self.prompt_input.validate()
            self.prompt_input.run_method("focus")
        ui.notify(problem, type="warning", position="top")


def _as_seed(value: float | None) -> int | None:
    return None if value is None else int(value)


def describe_validation(error: ValidationError) -> str:
    """One readable line per problem: 'Prompt: String should have at most 2000 characters'."""
    lines = []
    for problem in error.errors():
        field = str(problem["loc"][0]) if problem["loc"] else ""
        lines.append(f"{FIELD_NAMES.get(field, field)}: {problem['msg']}".strip(": "))
    return "; ".join(lines)
