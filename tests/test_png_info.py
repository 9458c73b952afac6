"""PNG info round trips: our PNGs read as A1111 reads them, A1111's PNGs read by us, and the parameters of
either reproduce the image through the A1111-compatible API."""
from __future__ import annotations

import base64
import io
import struct
import zlib
from datetime import datetime, timezone

import httpx
import numpy as np
from PIL import Image, PngImagePlugin

from app.pipeline.png import a1111_parameters, parse_a1111_parameters
from app.protocol import GenerationMetadata
from tests.compat_clients import SMALL, a1111_client

A1111_TEXT = (
    "masterpiece, a red circle\non a grey ground\n"
    "Negative prompt: blurry, lowres\n"
    'Steps: 5, Sampler: DPM++ 2M, Schedule type: Karras, CFG scale: 6, Seed: 42, Size: 64x64, Model hash: '
    '6ce0161689, Model: v1-5-pruned-emaonly, Lora hashes: "detail: 0a1b2c, style: 3d4e5f", Version: v1.10.1'
)


def test_a1111_text_is_parsed_field_by_field():
    assert parse_a1111_parameters(A1111_TEXT) == {
        "Prompt": "masterpiece, a red circle\non a grey ground",
        "Negative prompt": "blurry, lowres",
        "Steps": "5",
        "Sampler": "DPM++ 2M",
        "Schedule type": "Karras",
        "CFG scale": "6",
        "Seed": "42",
        "Size-1": "64",
        "Size-2": "64",
        "Model hash": "6ce0161689",
        "Model": "v1-5-pruned-emaonly",
        "Lora hashes": "detail: 0a1b2c, style: 3d4e5f",
        "Version": "v1.10.1",
    }
    assert parse_a1111_parameters("only a prompt, with: a colon") == {
        "Prompt": "only a prompt, with: a colon", "Negative prompt": ""
    }


def test_our_text_parses_back_to_our_metadata():
    metadata = GenerationMetadata(
        prompt="a cat\non two lines", negative_prompt="dogs", seed=7, num_inference_steps=12, guidance_scale=5.5,
        model="/models/sd15", width=64, height=96, scheduler="euler_a", created_at=datetime.now(timezone.utc),
        duration_seconds=1.0,
    )
    fields = parse_a1111_parameters(a1111_parameters(metadata))
    assert fields == {
        "Prompt": "a cat\non two lines", "Negative prompt": "dogs", "Steps": "12", "Sampler": "Euler a",
        "CFG scale": "5.5", "Seed": "7", "Size-1": "64", "Size-2": "96", "Model": "sd15",
    }


def txt2img_from(fields: dict[str, str], api):
    """What a user of A1111 does with PNG info: send the fields back to txt2img."""
    return api.txt2img(
        prompt=fields["Prompt"], negative_prompt=fields["Negative prompt"], steps=int(fields["Steps"]),
        sampler_name=fields["Sampler"], scheduler=fields.get("Schedule type", "automatic").lower(),
        cfg_scale=float(fields["CFG scale"]), seed=int(fields["Seed"]),
        width=int(fields["Size-1"]), height=int(fields["Size-2"]),
    )


def test_our_png_read_as_a1111_reads_it_reproduces_the_image(server):
    api = a1111_client(server)
    original = api.txt2img(
        prompt="a green square", negative_prompt="noise", seed=300, steps=5, cfg_scale=6,
        sampler_name="DPM++ 2M Karras", batch_size=2, **SMALL,
    ).images[1]
    info = api.png_info(original)
    fields = info.parameters
    assert fields["Seed"] == "301" and fields["Sampler"] == "DPM++ 2M Karras" and fields["Negative prompt"] == "noise"
    assert info.info == original.info["parameters"]
    assert '"seed":301' in info.json["items"]["ai_artist"]  # our JSON chunk, among the other items
    again = txt2img_from(fields, api).images[0]
    difference = np.abs(np.asarray(again, dtype=int) - np.asarray(original, dtype=int))
    assert difference.max() <= 2


def test_an_a1111_png_is_read_and_its_parameters_generate_here(server):
    chunk = PngImagePlugin.PngInfo()
    chunk.add_text("parameters", A1111_TEXT)
    buffer = io.BytesIO()
    Image.new("RGB", (64, 64), "red").save(buffer, format="PNG", pnginfo=chunk)
    api = a1111_client(server)
    with Image.open(io.BytesIO(buffer.getvalue())) as a1111_png:
        a1111_png.load()
        info = api.png_info(a1111_png)
    assert info.parameters == parse_a1111_parameters(A1111_TEXT) and info.info == A1111_TEXT
    result = txt2img_from(info.parameters, api)
    assert result.info["infotexts"][0] == (
        "masterpiece, a red circle\non a grey ground\nNegative prompt: blurry, lowres\n"
        "Steps: 5, Sampler: DPM++ 2M Karras, CFG scale: 6, Seed: 42, Size: 64x64, Model: ai-artist-tiny"
    )


def test_png_info_of_something_else_names_the_field(server):
    response = httpx.post(f"{server.base_url}/sdapi/v1/png-info", json={"image": "not base64 at all!"})
    assert response.status_code == 422 and response.json()["detail"][0]["loc"][-1] == "image"
    no_text = io.BytesIO()
    Image.new("RGB", (8, 8)).save(no_text, format="PNG")
    encoded = base64.b64encode(no_text.getvalue()).decode()
    response = httpx.post(f"{server.base_url}/sdapi/v1/png-info", json={"image": encoded})
    assert response.json() == {"info": "", "items": {}, "parameters": {}}


def png_header_only(width: int, height: int) -> bytes:
    """A PNG that only declares its size (no pixel data): enough for Pillow to judge it on open."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IEND", b"")


def test_png_info_of_a_decompression_bomb_is_a_422_not_a_500(server):
    bomb = base64.b64encode(png_header_only(50_000, 50_000)).decode()
    response = httpx.post(f"{server.base_url}/sdapi/v1/png-info", json={"image": bomb})
    assert response.status_code == 422 and response.json()["detail"][0]["loc"][-1] == "image"
