"""Size presets of the prompt panel: square, portrait, landscape and wide around the model's native area."""
from __future__ import annotations

from dataclasses import dataclass

from app.pipeline.values import SizeLimits


@dataclass(frozen=True)
class SizePreset:
    width: int
    height: int
    label: str

    @property
    def key(self) -> str:
        return f"{self.width}x{self.height}"


def size_presets(limits: SizeLimits) -> list[SizePreset]:
    """Square, portrait, landscape and wide presets around the model's native area, all valid for it."""
    shapes = [("square", 1, 1), ("portrait 3:4", 3, 4), ("landscape 4:3", 4, 3), ("wide 16:9", 16, 9), ("tall 9:16", 9, 16)]
    presets: list[SizePreset] = [SizePreset(limits.default_width, limits.default_height, "native")]
    for name, across, down in shapes:
        presets.append(SizePreset(*limits.with_aspect(across, down), name))
    for factor, name in ((0.5, "small square"), (2, "large square")):
        side = limits.default_width * factor
        if limits.minimum <= side <= limits.maximum:
            presets.append(SizePreset(limits.snap(side), limits.snap(side), name))
    unique: dict[str, SizePreset] = {}
    for preset in presets:
        unique.setdefault(preset.key, preset)
    return list(unique.values())
