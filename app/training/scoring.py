"""Automatic checks written for the generator's own scenes.

* shapes: the background is the median colour of the image border; the
  shape is the largest connected region that differs from it. Its median
  colour is matched to the nearest palette colour, and its mask is compared
  (IoU) with an ideal circle, square and triangle drawn in its bounding box.
* landscapes: the median colour of the top rows of the sky is matched to
  the nearest sky colour of each time of day.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw

from .scenes import COLOURS, POSITIONS, SHAPES, SKY_GRADIENTS, TIMES_OF_DAY, ShapeScene, draw_shape, sky_gradient

BACKGROUND_DISTANCE = 50.0  # RGB distance separating the shape from the background
SKY_ROWS = 10
SKY_PROTOTYPES = {
    time_of_day: np.median(sky_gradient(time_of_day, 40)[:SKY_ROWS].reshape(-1, 3), axis=0)
    for time_of_day in SKY_GRADIENTS
}


def nearest_colour(rgb: np.ndarray) -> str:
    names = list(COLOURS)
    distances = [float(np.linalg.norm(rgb - np.array(COLOURS[name], dtype=np.float32))) for name in names]
    return names[int(np.argmin(distances))]


def largest_component(mask: np.ndarray) -> np.ndarray:
    """The largest 4-connected region of a boolean mask."""
    height, width = mask.shape
    labels = np.zeros(mask.shape, dtype=np.int32)
    best_label, best_size, label = 0, 0, 0
    for start_y, start_x in zip(*np.nonzero(mask)):
        if labels[start_y, start_x]:
            continue
        label += 1
        labels[start_y, start_x] = label
        queue, size = deque([(start_y, start_x)]), 0
        while queue:
            y, x = queue.popleft()
            size += 1
            for ny, nx in ((y - 1, x), (y + 1, x), (y, x - 1), (y, x + 1)):
                if 0 <= ny < height and 0 <= nx < width and mask[ny, nx] and not labels[ny, nx]:
                    labels[ny, nx] = label
                    queue.append((ny, nx))
        if size > best_size:
            best_label, best_size = label, size
    return labels == best_label if best_size else np.zeros_like(mask)


def ideal_shape_mask(shape: str, box: tuple[int, int, int, int], size: tuple[int, int]) -> np.ndarray:
    top, left, bottom, right = box
    canvas = Image.new("L", (size[1], size[0]), 0)
    half_width, half_height = (right - left) / 2, (bottom - top) / 2
    centre = (left + half_width, top + half_height)
    draw = ImageDraw.Draw(canvas)
    if shape == "circle":
        draw.ellipse([left, top, right, bottom], fill=255)
    elif shape == "square":
        draw.rectangle([left, top, right, bottom], fill=255)
    else:
        draw.polygon([(centre[0], top), (right, bottom), (left, bottom)], fill=255)
    return np.asarray(canvas) > 127


@dataclass(frozen=True)
class ShapeReading:
    colour: str | None
    shape: str | None
    centre: tuple[float, float] | None


def read_shape_image(image: np.ndarray) -> ShapeReading:
    pixels = image.astype(np.float32)
    border = np.concatenate([pixels[:2].reshape(-1, 3), pixels[-2:].reshape(-1, 3),
                             pixels[:, :2].reshape(-1, 3), pixels[:, -2:].reshape(-1, 3)])
    background = np.median(border, axis=0)
    differs = np.linalg.norm(pixels - background, axis=-1) > BACKGROUND_DISTANCE
    mask = largest_component(differs)
    if mask.sum() < 20:
        return ShapeReading(None, None, None)
    colour = nearest_colour(np.median(pixels[mask], axis=0))
    ys, xs = np.nonzero(mask)
    box = (int(ys.min()), int(xs.min()), int(ys.max()), int(xs.max()))
    scores = {}
    for shape in SHAPES:
        ideal = ideal_shape_mask(shape, box, mask.shape)
        scores[shape] = (mask & ideal).sum() / max(1, (mask | ideal).sum())
    return ShapeReading(colour, max(scores, key=scores.get), (float(xs.mean()), float(ys.mean())))


def position_matches(centre: tuple[float, float], position: str) -> bool:
    expected_x, expected_y = POSITIONS[position]
    return abs(centre[0] - expected_x) <= 8 and abs(centre[1] - expected_y) <= 8


@dataclass(frozen=True)
class ShapeScore:
    colour_ok: bool
    shape_ok: bool
    position_ok: bool | None  # None when the caption names no position
    reading: ShapeReading


def score_shape(image: np.ndarray, scene: ShapeScene) -> ShapeScore:
    reading = read_shape_image(image)
    position_ok = None
    if scene.position is not None:
        position_ok = reading.centre is not None and position_matches(reading.centre, scene.position)
    return ShapeScore(reading.colour == scene.colour, reading.shape == scene.shape, position_ok, reading)


def classify_time_of_day(image: np.ndarray) -> str:
    sky = np.median(image[:SKY_ROWS].reshape(-1, 3).astype(np.float32), axis=0)
    distances = {time: float(np.linalg.norm(sky - prototype)) for time, prototype in SKY_PROTOTYPES.items()}
    return min(TIMES_OF_DAY, key=distances.__getitem__)
