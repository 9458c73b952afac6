"""LoRA files without torch: A1111's `<lora:name:weight>` prompt form, the content hash, and whether a
file fits a model, judged from its safetensors header against the layers the generation process reports."""
from __future__ import annotations

import json
import struct
from pathlib import Path

import pytest

from app.engine.loras import LoraLibrary
from app.pipeline.lora_adapters import denoiser_layers
from app.pipeline.lora_files import (
    LoraFileError,
    content_hash,
    facts_of,
    parse_prompt_loras,
    prompt_tags,
    read_header,
    short_hash,
)
from app.testing.tiny_lora import build_tiny_lora


@pytest.mark.parametrize(
    ("prompt", "cleaned", "loras"),
    [
        ("a cat <lora:ink:0.8>", "a cat", [("ink", 0.8)]),
        ("<lora:ink:0.8> a cat", "a cat", [("ink", 0.8)]),
        ("a cat, <lora:ink>, oil painting", "a cat, oil painting", [("ink", 1.0)]),
        ("a cat <LORA:ink:-0.5> <lora:my style v2:1.25>", "a cat", [("ink", -0.5), ("my style v2", 1.25)]),
        ("a cat <lora:ink:1>, <lora:paper:.5>", "a cat, <lora:paper:.5>", [("ink", 1.0)]),  # ".5" is not a weight
        ("a cat without tags", "a cat without tags", []),
        ("<lora:ink:2>", "", [("ink", 2.0)]),
    ],
)
def test_a1111_lora_tags_are_taken_out_of_the_prompt(prompt, cleaned, loras):
    assert parse_prompt_loras(prompt) == (cleaned, loras)


def test_tags_are_written_back_the_way_a1111_reads_them():
    assert prompt_tags([("ink", 0.8), ("paper", 1.0)]) == "<lora:ink:0.8> <lora:paper:1>"
    assert parse_prompt_loras("x " + prompt_tags([("ink", 0.8)]))[1] == [("ink", 0.8)]


def write_safetensors(path: Path, header: dict, data: bytes = b"\0" * 16) -> Path:
    raw = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(raw)) + raw + data)
    return path


def test_the_hash_covers_the_tensors_not_the_metadata(tmp_path):
    tensors = {"unet.a.lora_A.weight": {"dtype": "F32", "shape": [2, 2], "data_offsets": [0, 16]}}
    first = write_safetensors(tmp_path / "a.safetensors", {**tensors, "__metadata__": {"note": "one"}})
    second = write_safetensors(tmp_path / "b.safetensors", {**tensors, "__metadata__": {"note": "two, longer"}})
    third = write_safetensors(tmp_path / "c.safetensors", tensors, data=b"\1" * 16)
    assert content_hash(first) == content_hash(second) != content_hash(third)
    assert len(short_hash(content_hash(first))) == 12


def test_not_a_safetensors_file_is_said_so(tmp_path):
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"\xff" * 64)
    with pytest.raises(LoraFileError, match="not a safetensors file"):
        read_header(junk)
    library = LoraLibrary(tmp_path)
    (item,) = library.listing("sd", {}, supports_lora=True).items
    assert item.name == "junk" and not item.fits and "cannot be used" in item.problem


def test_kohya_names_and_trainer_metadata_tell_the_family(tmp_path):
    entry = {"dtype": "F16", "shape": [4, 768], "data_offsets": [0, 0]}
    sd15 = facts_of({"lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn2_to_k.lora_down.weight": entry,
                     "lora_te_text_model_encoder_layers_0_self_attn_q_proj.lora_down.weight": entry})
    assert sd15.families == {"sd", "sdxl"} and sd15.widths == {"cross_attention": 768}
    assert "1024" in sd15.misfit("sd", {"unet.x.attn2.to_k": 1024})  # an SD 2.x model: wider text encoder
    xl = facts_of({"lora_te1_text_model_encoder_layers_0_mlp_fc1.lora_down.weight": entry})
    assert xl.families == {"sdxl"} and "sdxl" in xl.misfit("sd", {})
    flux = facts_of({"lora_unet_double_blocks_0_img_attn_qkv.lora_down.weight": entry})
    assert flux.families == {"flux"}
    by_metadata = facts_of({"x.lora_down.weight": entry, "__metadata__": {"ss_base_model_version": "sdxl_base_v1-0"}})
    assert by_metadata.families == {"sdxl"}


def test_a_lora_fits_its_own_family_and_not_another(tiny_pipeline_dirs, tiny_pipelines, tmp_path):
    layers = {family: denoiser_layers(pipeline) for family, pipeline in tiny_pipelines.items()}
    for family, folder in tiny_pipeline_dirs.items():
        facts = facts_of(read_header(build_tiny_lora(folder, tmp_path / f"{family}.safetensors")))
        assert family in facts.families
        assert facts.misfit(family, layers[family]) is None, family
        # The tiny SD3 and Flux transformers share a block's layer names and widths: an SD3 LoRA does load
        # into the tiny Flux (real ones differ in width: 1536 and 3072).
        others = [other for other in layers if other not in (family, "flux" if family == "sd3" else family)]
        for other in others:
            assert facts.misfit(other, layers[other]) is not None, (family, other)
    sd_lora = facts_of(read_header(tmp_path / "sd.safetensors"))
    assert "layers the model does not have" in sd_lora.misfit("sdxl", layers["sdxl"])
