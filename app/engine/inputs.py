"""Input images of jobs: uploads, and the init and mask images a request names, kept under
`<data_dir>/inputs/` by the hash of their pixels' PNG (the same picture is stored once).

A request may name its input as an upload (`POST /api/uploads`), a gallery image, a `data:` URL or a
bare base64 string. Whatever the form, the engine stores it here before the job is queued, as the job
will read it: an init image as RGB (transparency over white), a mask as greyscale (transparency counts
as black: keep). The stored request then names that file, so a re-run after a restart, or on a remote
worker (the bytes travel in the job), starts from the very same pixels.

Uses PIL only (no torch). Decoding a large image takes a while: the web face calls `store_*` in a
worker thread; everything here is safe to call from any thread.
"""
from __future__ import annotations

import base64
import binascii
import hashlib
import io
import os
import re
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from PIL import Image, ImageOps, UnidentifiedImageError

FORMATS = ("PNG", "JPEG", "WEBP")
NAME = re.compile(r"^[\w][\w.-]{0,200}\.(png|jpe?g|webp)$", re.IGNORECASE)
DATA_URL = re.compile(r"^data:([\w/+.-]*)(;[\w=-]+)*;base64,", re.IGNORECASE)
Role = Literal["init_image", "mask_image"]


class InputProblem(ValueError):
    """An input image cannot be used; the message says why, for the artist."""


class InputTooLarge(InputProblem):
    """Over the byte limit (HTTP 413 for an upload)."""


@dataclass(frozen=True)
class StoredInput:
    name: str
    width: int
    height: int


class InputStore:
    def __init__(self, folder: Path, gallery_folder: Path, max_bytes: int, max_side: int) -> None:
        self.folder = folder
        self.gallery_folder = gallery_folder
        self.max_bytes = max_bytes
        self.max_side = max_side
        folder.mkdir(parents=True, exist_ok=True)

    # -- where a stored input is ----------------------------------------------------------------

    def path(self, name: str) -> Path | None:
        """The stored input called `name`; None unless it is a plain file name inside the inputs folder."""
        return _plain_file(self.folder, name)

    def read(self, name: str) -> bytes:
        path = self.path(name)
        if path is None:
            raise InputProblem(f"the input image {name!r} is no longer stored on the server")
        return path.read_bytes()

    # -- storing --------------------------------------------------------------------------------

    def store_upload(self, data: bytes) -> StoredInput:
        """An uploaded file as it is (transparency kept: it may serve as either kind of input)."""
        with self._opened(data) as image:
            mode = "RGBA" if _has_alpha(image) else "L" if image.mode in ("1", "L", "I", "I;16", "F") else "RGB"
            return self._store(image.convert(mode))

    def store_for(self, reference: str, role: Role) -> StoredInput:
        """The input a request names, stored as the job will read it (see the module's docstring)."""
        data = self._bytes_of(reference)
        with self._opened(data) as image:
            return self._store(_as_init(image) if role == "init_image" else _as_mask(image))

    def _bytes_of(self, reference: str) -> bytes:
        text = reference.strip()
        if NAME.match(text):
            path = self.path(text) or _plain_file(self.gallery_folder, text)
            if path is None:
                raise InputProblem(f"no upload or gallery image is called {text!r}")
            return path.read_bytes()
        match = DATA_URL.match(text)
        payload = text[match.end():] if match else text
        if match and match.group(1) and not match.group(1).lower().startswith("image/"):
            raise InputProblem(f"a data: URL of {match.group(1)!r}, not an image")
        if len(payload) * 3 // 4 > self.max_bytes:
            raise InputTooLarge(f"the image is over the {_megabytes(self.max_bytes)} limit")
        try:
            return base64.b64decode(re.sub(r"\s+", "", payload), validate=True)
        except (binascii.Error, ValueError):
            raise InputProblem(
                "not an upload or gallery image name, a data: URL or a base64 string of an image"
            ) from None

    def _opened(self, data: bytes) -> Image.Image:
        if len(data) > self.max_bytes:
            raise InputTooLarge(f"the file is {_megabytes(len(data))}, over the {_megabytes(self.max_bytes)} limit")
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # the side limit below decides
                image = Image.open(io.BytesIO(data), formats=FORMATS)
        except Image.DecompressionBombError:
            raise InputProblem(f"the image is far over the {self.max_side}-pixel limit per side") from None
        except (UnidentifiedImageError, OSError):
            raise InputProblem("not a PNG, JPEG or WebP image") from None
        width, height = image.size
        if max(width, height) > self.max_side:
            image.close()
            raise InputProblem(f"the image is {width}×{height}, over the {self.max_side}-pixel limit per side")
        try:
            image.load()
            return ImageOps.exif_transpose(image) or image
        except (OSError, ValueError) as error:
            raise InputProblem(f"the image cannot be decoded ({error})") from None

    def _store(self, image: Image.Image) -> StoredInput:
        buffer = io.BytesIO()
        image.save(buffer, format="PNG")
        png = buffer.getvalue()
        name = hashlib.sha256(png).hexdigest()[:24] + ".png"
        path = self.folder / name
        if not path.is_file():
            partial = path.with_suffix(f".{os.getpid()}.partial")
            partial.write_bytes(png)
            os.replace(partial, path)
        return StoredInput(name, image.width, image.height)


def _plain_file(folder: Path, name: str) -> Path | None:
    if Path(name).name != name or not NAME.match(name):
        return None
    candidate = (folder / name).resolve()
    return candidate if candidate.parent == folder.resolve() and candidate.is_file() else None


def _has_alpha(image: Image.Image) -> bool:
    return "A" in image.getbands() or "transparency" in image.info


def _as_init(image: Image.Image) -> Image.Image:
    if not _has_alpha(image):
        return image.convert("RGB")
    background = Image.new("RGBA", image.size, (255, 255, 255, 255))
    return Image.alpha_composite(background, image.convert("RGBA")).convert("RGB")


def _as_mask(image: Image.Image) -> Image.Image:
    if not _has_alpha(image):
        return image.convert("L")
    background = Image.new("RGBA", image.size, (0, 0, 0, 255))
    return Image.alpha_composite(background, image.convert("RGBA")).convert("L")


def _megabytes(size: int) -> str:
    return f"{size / 1_000_000:.1f} MB"


def same_aspect(first: StoredInput, second: StoredInput, tolerance: float = 0.02) -> bool:
    ratio = (first.width / first.height) / (second.width / second.height)
    return abs(ratio - 1) <= tolerance
