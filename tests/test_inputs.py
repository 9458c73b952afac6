"""Input images as the engine stores them: every form a request may use, the conversions an init image
and a mask get, the limits, and a request's fields checked and normalised before it is queued."""
from __future__ import annotations

import base64
import io
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from app.engine.inputs import InputProblem, InputStore, InputTooLarge
from app.engine.loras import LoraLibrary
from app.engine.requests import check, prepare
from app.pipeline.values import SCHEDULER_NAMES, SizeLimits
from app.protocol import GenerateRequest
from app.testing.tiny_lora import build_tiny_lora


def png(image: Image.Image, format: str = "PNG") -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=format)
    return buffer.getvalue()


@pytest.fixture
def store(tmp_path: Path) -> InputStore:
    return InputStore(tmp_path / "inputs", tmp_path / "images", max_bytes=200_000, max_side=512)


def stored_pixels(store: InputStore, name: str) -> np.ndarray:
    with Image.open(store.path(name)) as image:
        return np.asarray(image)


def test_uploads_keep_transparency_and_the_same_picture_is_stored_once(store):
    half_transparent = Image.new("RGBA", (40, 20), (255, 0, 0, 0))
    half_transparent.paste((255, 255, 255, 255), (0, 0, 20, 20))
    first = store.store_upload(png(half_transparent))
    assert (first.width, first.height) == (40, 20)
    assert stored_pixels(store, first.name).shape == (20, 40, 4)
    assert store.store_upload(png(half_transparent)).name == first.name
    assert len(list(store.folder.iterdir())) == 1


def test_an_init_image_is_rgb_over_white_and_a_mask_grey_over_black(store):
    painted = Image.new("RGBA", (16, 16), (0, 0, 0, 0))  # transparent: keep
    painted.paste((255, 255, 255, 255), (0, 0, 8, 16))  # white strokes on the left: repaint
    upload = store.store_upload(png(painted))
    init = stored_pixels(store, store.store_for(upload.name, "init_image").name)
    assert init.shape == (16, 16, 3) and (init == 255).all()  # transparent composited over white
    mask = stored_pixels(store, store.store_for(upload.name, "mask_image").name)
    assert mask.shape == (16, 16) and (mask[:, :8] == 255).all() and (mask[:, 8:] == 0).all()


def test_every_form_of_reference_gives_the_same_stored_input(store, tmp_path):
    picture = Image.fromarray(np.random.RandomState(1).randint(0, 255, (24, 32, 3), dtype=np.uint8))
    data = png(picture)
    (tmp_path / "images").mkdir()
    (tmp_path / "images" / "20260101-000000-abcdef12-0.png").write_bytes(data)
    encoded = base64.b64encode(data).decode()
    names = {
        store.store_for(store.store_upload(data).name, "init_image").name,
        store.store_for("20260101-000000-abcdef12-0.png", "init_image").name,
        store.store_for(f"data:image/png;base64,{encoded}", "init_image").name,
        store.store_for(encoded, "init_image").name,
        store.store_for("\n".join(encoded[i:i + 76] for i in range(0, len(encoded), 76)), "init_image").name,
    }
    assert len(names) == 1
    assert (stored_pixels(store, names.pop()) == np.asarray(picture)).all()


def test_jpeg_and_webp_are_taken(store):
    picture = Image.new("RGB", (20, 10), (10, 200, 30))
    for format in ("JPEG", "WEBP"):
        stored = store.store_upload(png(picture, format))
        assert (stored.width, stored.height) == (20, 10)


@pytest.mark.parametrize(
    ("data", "problem", "message"),
    [
        (b"not an image at all", InputProblem, "not a PNG, JPEG or WebP image"),
        (png(Image.new("RGB", (600, 10))), InputProblem, "600×10, over the 512-pixel limit per side"),
        (png(Image.new("RGB", (5, 5))) + b"\0" * 200_000, InputTooLarge, "over the 0.2 MB limit"),
    ],
)
def test_bad_files_are_refused_saying_why(store, data, problem, message):
    with pytest.raises(problem, match=message):
        store.store_upload(data)


def test_a_reference_that_is_nothing_known_is_refused(store):
    with pytest.raises(InputProblem, match="no upload or gallery image is called 'missing.png'"):
        store.store_for("missing.png", "init_image")
    with pytest.raises(InputProblem, match="not an upload or gallery image name, a data: URL or a base64"):
        store.store_for("certainly not base64!", "init_image")
    with pytest.raises(InputProblem, match="not an image"):
        store.store_for("data:text/plain;base64,aGVsbG8=", "init_image")
    assert store.path("../inputs") is None and store.path("/etc/passwd") is None


@dataclass
class Model:
    """What the engine knows of a loaded model, as `PipelineProcess` reports it."""

    model_name: str = "tiny"
    family: str | None = "sd"
    size_limits: SizeLimits = SizeLimits(64, 64, 32, 256)
    modes: tuple[str, ...] | None = ("txt2img", "img2img", "inpaint")
    supports_lora: bool | None = True
    lora_layers: dict[str, int] = field(default_factory=dict)

    def supported_schedulers(self) -> tuple[str, ...]:
        return SCHEDULER_NAMES


def test_a_request_is_stored_sized_and_checked_field_by_field(store, tmp_path, tiny_pipeline_dirs):
    library = LoraLibrary(tmp_path / "loras")
    build_tiny_lora(tiny_pipeline_dirs["sd"], tmp_path / "loras" / "ink.safetensors")
    wide = store.store_upload(png(Image.new("RGB", (200, 100), (9, 9, 9))))
    request = GenerateRequest(prompt="a cat <lora:ink:0.7>, oil", init_image=wide.name, loras=[])
    queued, problems = check(prepare(request, store), Model(), library)
    assert problems == []
    assert queued.prompt == "a cat, oil" and [(lora.name, lora.weight) for lora in queued.loras] == [("ink", 0.7)]
    assert (queued.width, queued.height) == (88, 48)  # the input's 2:1 at about the native 64×64 area
    assert store.path(queued.init_image) is not None

    tall_mask = png(Image.new("L", (100, 200), 255))
    bad = GenerateRequest(prompt="x", init_image=wide.name, mask_image=base64.b64encode(tall_mask).decode(),
                          loras=[{"name": "nope"}], scheduler="warp")
    _, problems = check(prepare(bad, store), Model(modes=("txt2img", "img2img")), library)
    fields: dict[str, list[str]] = {}
    for field_name, message in problems:
        fields.setdefault(field_name, []).append(message)
    assert set(fields) == {"mask_image", "loras", "scheduler"}, problems
    assert "the mask is 100×200 and the image 200×100: not the same aspect ratio" in fields["mask_image"]
    assert "model 'tiny' cannot do inpainting (it can do: text-to-image, image-to-image)" in fields["mask_image"]
    (unknown,) = fields["loras"]
    assert "unknown LoRA 'nope'" in unknown and "lists: ink" in unknown
    _, problems = check(prepare(GenerateRequest(prompt="x <lora:ink>"), store), Model(supports_lora=False), library)
    assert problems == [("prompt", "model 'tiny' cannot use LoRAs (asked for 'ink')")]
    _, problems = check(prepare(GenerateRequest(prompt="x", init_image="what.png"), store), Model(), library)
    assert problems == [("init_image", "init_image: no upload or gallery image is called 'what.png'")]
    _, problems = check(prepare(GenerateRequest(prompt="x"), store), Model(modes=("inpaint",)), library)
    assert problems == [("init_image", "model 'tiny' cannot do text-to-image (it can do: inpainting)")]


def test_a_size_from_an_input_is_one_the_api_takes_even_where_the_model_steps_by_4():
    limits = SizeLimits(64, 64, 32, 256, multiple=4)  # the embedded model's VAE scales by 4
    for across, down in ((96, 64), (64, 96), (1000, 10), (3, 2), (1, 1)):
        width, height = limits.with_aspect(across, down)
        assert width % 8 == height % 8 == 0 and not limits.problems(width, height), (across, down)
        GenerateRequest(prompt="x", width=width, height=height)
