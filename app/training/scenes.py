"""Procedural captioned scenes: the training data of the embedded model.

Two families of 64x64 RGB images, each drawn from a small structured
description (a "spec") that also produces the caption, so every caption is
true of its image by construction:

* coloured shapes: "a red circle", "a blue square on a yellow background",
  "a green triangle in the top left";
* simple landscapes: "a serene mountain landscape at sunset",
  "a starry night over the sea", "a forest by a lake at dawn".

Everything is deterministic given a ``numpy.random.Generator``. Longer than 300 lines on purpose:
the scene specs, their drawing and their captions must agree, so they are read together.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw

IMAGE_SIZE = 64

RGB = tuple[int, int, int]

COLOURS: dict[str, RGB] = {
    "red": (220, 30, 30),
    "orange": (245, 140, 20),
    "yellow": (245, 220, 30),
    "green": (40, 170, 60),
    "blue": (30, 70, 220),
    "purple": (140, 50, 180),
    "white": (245, 245, 245),
    "black": (20, 20, 20),
}
DEFAULT_BACKGROUND: RGB = (150, 150, 150)  # neutral grey when no background is named
SHAPES = ("circle", "square", "triangle")
POSITIONS: dict[str, tuple[int, int]] = {
    "center": (32, 32),
    "top left": (18, 18),
    "top right": (46, 18),
    "bottom left": (18, 46),
    "bottom right": (46, 46),
}
TIMES_OF_DAY = ("day", "sunset", "dawn", "night")
TIME_PHRASES: dict[str, tuple[str, ...]] = {
    "day": ("during the day", "at noon", "on a sunny day"),
    "sunset": ("at sunset", "at dusk"),
    "dawn": ("at dawn", "at sunrise"),
    "night": ("at night",),
}
# Sky gradient (top colour, horizon colour) for each time of day.
SKY_GRADIENTS: dict[str, tuple[RGB, RGB]] = {
    "day": ((60, 120, 220), (170, 210, 250)),
    "sunset": ((110, 40, 100), (250, 120, 30)),
    "dawn": ((235, 170, 190), (255, 215, 150)),
    "night": ((8, 12, 40), (30, 40, 85)),
}
MOUNTAIN_COLOURS: dict[str, RGB] = {
    "day": (110, 115, 135), "sunset": (80, 40, 70), "dawn": (160, 125, 150), "night": (35, 35, 55),
}
GRASS_COLOURS: dict[str, RGB] = {
    "day": (70, 160, 60), "sunset": (70, 70, 30), "dawn": (110, 150, 90), "night": (15, 35, 20),
}
TREE_COLOURS: dict[str, RGB] = {
    "day": (20, 100, 40), "sunset": (30, 40, 20), "dawn": (40, 90, 50), "night": (5, 20, 10),
}


@dataclass(frozen=True)
class ShapeScene:
    colour: str
    shape: str
    background: str | None  # None: neutral grey, not named in the caption
    position: str | None  # None: random placement, not named in the caption

    @property
    def caption(self) -> str:
        article = "an" if self.colour[0] in "aeiou" else "a"
        text = f"{article} {self.colour} {self.shape}"
        if self.background is not None:
            text += f" on {'an' if self.background[0] in 'aeiou' else 'a'} {self.background} background"
        if self.position is not None:
            text += f" in the {self.position}"
        return text


@dataclass(frozen=True)
class LandscapeScene:
    time_of_day: str
    mountains: bool
    water: str | None  # "sea", "lake" or None
    trees: bool
    wording: int  # picks among equivalent phrasings

    @property
    def caption(self) -> str:
        if self.time_of_day == "night" and self.wording % 2 == 0:
            if self.water == "sea":
                return "a starry night over the sea"
            if self.water == "lake":
                return "a starry night over a lake"
            if self.mountains:
                return "a starry night over the mountains"
            return "a starry night over a forest"
        phrases = TIME_PHRASES[self.time_of_day]
        time_phrase = phrases[self.wording % len(phrases)]
        return f"{self._subject()} {time_phrase}"

    def _subject(self) -> str:
        serene = "a serene " if self.wording % 3 == 1 else "a "
        if self.mountains and self.trees and self.water:
            return f"a forest by a {self.water} with mountains" if self.water == "lake" else "a forest by the sea with mountains"
        if self.mountains and self.water:
            return "a mountain lake" if self.water == "lake" else f"{serene}mountain landscape by the sea"
        if self.trees and self.water:
            return "a forest by a lake" if self.water == "lake" else "a forest by the sea"
        if self.mountains and self.trees:
            return "a forest below mountains"
        if self.mountains:
            return f"{serene}mountain landscape"
        if self.water:
            return "a calm sea" if self.water == "sea" else f"{serene}lake"
        return "a forest"


Scene = ShapeScene | LandscapeScene


def is_held_out(caption: str) -> bool:
    """Captions reserved for evaluation; training never sees them.

    Only fully specified shape captions (colour, shape, background, position)
    and some landscape phrasings are held out, so every word and every
    simple pairing still occurs in training.
    """
    digest = zlib.crc32(caption.encode("utf-8"))
    if " background in the " in caption:
        return digest % 10 == 0
    if caption.startswith("a starry") or " at " in caption or " on " in caption or " during " in caption:
        return digest % 9 == 0 and not caption.startswith("a starry night over the sea")
    return False


def sample_shape_scene(rng: np.random.Generator) -> ShapeScene:
    colour = str(rng.choice(list(COLOURS)))
    shape = str(rng.choice(SHAPES))
    background = None
    if rng.random() < 0.6:
        background = str(rng.choice([name for name in COLOURS if name != colour]))
    position = str(rng.choice(list(POSITIONS))) if rng.random() < 0.6 else None
    return ShapeScene(colour, shape, background, position)


def sample_landscape_scene(rng: np.random.Generator) -> LandscapeScene:
    time_of_day = str(rng.choice(TIMES_OF_DAY))
    while True:
        mountains = bool(rng.random() < 0.55)
        water = [None, "sea", "lake"][int(rng.integers(0, 3))]
        trees = bool(rng.random() < 0.45)
        if mountains or water or trees:
            break
    return LandscapeScene(time_of_day, mountains, water, trees, int(rng.integers(0, 6)))


def sample_scene(rng: np.random.Generator, shape_fraction: float = 0.55) -> Scene:
    if rng.random() < shape_fraction:
        return sample_shape_scene(rng)
    return sample_landscape_scene(rng)


def sample_training_example(rng: np.random.Generator) -> tuple[np.ndarray, str]:
    """One (uint8 HxWx3 image, caption) pair whose caption is not held out."""
    while True:
        scene = sample_scene(rng)
        if not is_held_out(scene.caption):
            return render(scene, rng), scene.caption


def render(scene: Scene, rng: np.random.Generator) -> np.ndarray:
    if isinstance(scene, ShapeScene):
        return render_shape(scene, rng)
    return render_landscape(scene, rng)


def shape_polygon(shape: str, centre: tuple[float, float], half: float) -> list[tuple[float, float]]:
    cx, cy = centre
    if shape == "square":
        return [(cx - half, cy - half), (cx + half, cy - half), (cx + half, cy + half), (cx - half, cy + half)]
    if shape == "triangle":
        return [(cx, cy - half), (cx + half, cy + half), (cx - half, cy + half)]
    raise ValueError(f"not a polygon shape: {shape}")


def draw_shape(draw: ImageDraw.ImageDraw, shape: str, centre: tuple[float, float], half: float, fill: RGB) -> None:
    cx, cy = centre
    if shape == "circle":
        draw.ellipse([cx - half, cy - half, cx + half, cy + half], fill=fill)
    else:
        draw.polygon(shape_polygon(shape, centre, half), fill=fill)


def render_shape(scene: ShapeScene, rng: np.random.Generator) -> np.ndarray:
    background = COLOURS[scene.background] if scene.background else DEFAULT_BACKGROUND
    image = Image.new("RGB", (IMAGE_SIZE, IMAGE_SIZE), background)
    draw = ImageDraw.Draw(image)
    half = float(rng.uniform(9, 13))
    if scene.position is None:
        centre = (float(rng.uniform(18, 46)), float(rng.uniform(18, 46)))
    else:
        px, py = POSITIONS[scene.position]
        centre = (px + float(rng.uniform(-2, 2)), py + float(rng.uniform(-2, 2)))
    draw_shape(draw, scene.shape, centre, half, COLOURS[scene.colour])
    return np.asarray(image, dtype=np.uint8)


def sky_gradient(time_of_day: str, horizon: int) -> np.ndarray:
    """A (horizon, IMAGE_SIZE, 3) float array going from the top colour to the horizon colour."""
    top, bottom = (np.array(colour, dtype=np.float32) for colour in SKY_GRADIENTS[time_of_day])
    weights = np.linspace(0.0, 1.0, horizon, dtype=np.float32)[:, None, None]
    return np.broadcast_to(top * (1 - weights) + bottom * weights, (horizon, IMAGE_SIZE, 3)).copy()


def render_landscape(scene: LandscapeScene, rng: np.random.Generator) -> np.ndarray:
    size = IMAGE_SIZE
    horizon = int(rng.integers(36, 46))
    canvas = np.zeros((size, size, 3), dtype=np.float32)
    canvas[:horizon] = sky_gradient(scene.time_of_day, horizon)
    if scene.time_of_day == "night":
        for _ in range(int(rng.integers(12, 24))):
            y, x = int(rng.integers(0, horizon - 6)), int(rng.integers(0, size))
            canvas[y, x] = 235.0
    image = Image.fromarray(canvas.clip(0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(image)
    _draw_sun_or_moon(draw, scene.time_of_day, horizon, rng)
    if scene.mountains:
        _draw_mountains(draw, scene.time_of_day, horizon, rng)
    ground = GRASS_COLOURS[scene.time_of_day]
    draw.rectangle([0, horizon, size, size], fill=ground)
    if scene.water:
        water_top = horizon if scene.water == "sea" else horizon + int(rng.integers(3, 8))
        _draw_water(image, scene.time_of_day, water_top)
    if scene.trees:
        _draw_trees(draw, scene.time_of_day, horizon, rng)
    return np.asarray(image, dtype=np.uint8)


def _draw_sun_or_moon(draw: ImageDraw.ImageDraw, time_of_day: str, horizon: int, rng: np.random.Generator) -> None:
    x = float(rng.uniform(10, 54))
    if time_of_day == "day":
        y, radius, colour = float(rng.uniform(8, 16)), 5.0, (255, 240, 120)
    elif time_of_day == "sunset":
        y, radius, colour = horizon - float(rng.uniform(2, 8)), 7.0, (255, 90, 20)
    elif time_of_day == "dawn":
        y, radius, colour = horizon - float(rng.uniform(2, 8)), 6.0, (255, 245, 200)
    else:
        y, radius, colour = float(rng.uniform(8, 18)), 4.0, (235, 235, 210)
    draw.ellipse([x - radius, y - radius, x + radius, y + radius], fill=colour)


def _draw_mountains(draw: ImageDraw.ImageDraw, time_of_day: str, horizon: int, rng: np.random.Generator) -> None:
    colour = MOUNTAIN_COLOURS[time_of_day]
    for _ in range(int(rng.integers(2, 4))):
        peak_x = float(rng.uniform(0, IMAGE_SIZE))
        peak_y = horizon - float(rng.uniform(12, 24))
        half_width = float(rng.uniform(14, 26))
        draw.polygon([(peak_x - half_width, horizon), (peak_x, peak_y), (peak_x + half_width, horizon)], fill=colour)
        if time_of_day != "night" and rng.random() < 0.5:  # snow cap
            cap = 0.25
            draw.polygon(
                [(peak_x - half_width * cap, peak_y + (horizon - peak_y) * cap), (peak_x, peak_y),
                 (peak_x + half_width * cap, peak_y + (horizon - peak_y) * cap)],
                fill=(235, 235, 240),
            )


def _draw_water(image: Image.Image, time_of_day: str, water_top: int) -> None:
    pixels = np.asarray(image, dtype=np.float32).copy()
    top, bottom = (np.array(c, dtype=np.float32) for c in SKY_GRADIENTS[time_of_day])
    water_colour = (0.5 * top + 0.5 * bottom) * 0.75 + np.array([0, 10, 25], dtype=np.float32)
    rows = IMAGE_SIZE - water_top
    shade = np.linspace(1.0, 0.7, rows, dtype=np.float32)[:, None, None]
    pixels[water_top:] = water_colour[None, None, :] * shade
    pixels[water_top:, :, :][1::3] *= 1.08  # faint ripples
    image.paste(Image.fromarray(pixels.clip(0, 255).astype(np.uint8)))


def _draw_trees(draw: ImageDraw.ImageDraw, time_of_day: str, horizon: int, rng: np.random.Generator) -> None:
    colour = TREE_COLOURS[time_of_day]
    for _ in range(int(rng.integers(4, 9))):
        x = float(rng.uniform(0, IMAGE_SIZE))
        base = horizon + float(rng.uniform(0, 4))
        height = float(rng.uniform(8, 16))
        draw.polygon([(x - height * 0.3, base), (x, base - height), (x + height * 0.3, base)], fill=colour)


def all_shape_scenes() -> list[ShapeScene]:
    backgrounds: list[str | None] = [None, *COLOURS]
    positions: list[str | None] = [None, *POSITIONS]
    return [
        ShapeScene(colour, shape, background, position)
        for colour in COLOURS for shape in SHAPES for background in backgrounds for position in positions
        if background != colour
    ]


def all_landscape_scenes() -> list[LandscapeScene]:
    scenes = []
    for time_of_day in TIMES_OF_DAY:
        for mountains in (False, True):
            for water in (None, "sea", "lake"):
                for trees in (False, True):
                    if mountains or water or trees:
                        scenes.extend(LandscapeScene(time_of_day, mountains, water, trees, w) for w in range(6))
    return scenes
