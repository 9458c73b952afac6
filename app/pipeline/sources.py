"""Where a model comes from: a Hugging Face hub id, a local diffusers folder, or a single
`.safetensors`/`.ckpt` checkpoint, and which local models there are to pick from.

`resolve_source` answers quickly (no weights read, no torch) whether a reference can be loaded here and
raises `ModelUnavailable` with what is missing and how to get it otherwise. The server calls it before
a model switch; the generation process calls it again when it loads (app/pipeline/loading.py).
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from ..protocol import KnownModel

SINGLE_FILE_SUFFIXES = (".safetensors", ".ckpt")
HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[A-Za-z0-9][\w.-]*$")
PROJECT_ROOT = Path(__file__).resolve().parents[2]


class ModelUnavailable(ValueError):
    """The model cannot be loaded here; the message names what is missing and how to get it."""


@dataclass(frozen=True)
class ModelSource:
    reference: str
    kind: Literal["folder", "single_file", "hub"]
    location: str  # an absolute path, or the hub id
    config_dir: str | None = None  # single file: a local diffusers folder with the model's configs

    @property
    def name(self) -> str:
        return Path(self.location).name if self.kind != "hub" else self.location


def hub_offline() -> bool:
    from huggingface_hub import constants

    return bool(constants.HF_HUB_OFFLINE)


def hub_cache_dir() -> Path:
    from huggingface_hub import constants

    return Path(constants.HF_HUB_CACHE)


def offline_hint(repo_id: str) -> str:
    return (
        f"model {repo_id!r} is not in the Hugging Face cache ({hub_cache_dir()}) and HF_HUB_OFFLINE=1 forbids "
        f"downloading it. Get it on a machine with internet access with `hf download {repo_id}` "
        "(or `huggingface-cli download`) into that cache, unset HF_HUB_OFFLINE to let the server download it, "
        "or set model.base_model to a local diffusers folder or .safetensors file"
    )


def resolve_source(
    reference: str, single_file_config: str | Path | None = None, base_dir: Path = PROJECT_ROOT
) -> ModelSource:
    """Classify `reference`; raise ModelUnavailable when it cannot be loaded here."""
    reference = str(reference).strip()
    if not reference:
        raise ModelUnavailable(
            "model: empty reference; give a hub id (owner/name), a local folder or a .safetensors file"
        )
    path = Path(reference).expanduser()
    if not path.is_absolute() and (base_dir / path).exists():
        path = base_dir / path
    if path.is_dir():
        if not (path / "model_index.json").is_file():
            raise ModelUnavailable(
                f"{path} is a folder but not a diffusers pipeline: model_index.json is missing "
                "(save one with pipeline.save_pretrained, or point at a .safetensors file)"
            )
        return ModelSource(reference, "folder", str(path.resolve()))
    if path.is_file():
        if path.suffix.lower() not in SINGLE_FILE_SUFFIXES:
            raise ModelUnavailable(
                f"{path}: not a model file; single checkpoints end in {' or '.join(SINGLE_FILE_SUFFIXES)}"
            )
        config = single_file_config_dir(path, single_file_config)
        return ModelSource(reference, "single_file", str(path.resolve()), str(config) if config else None)
    looks_local = (
        path.suffix.lower() in SINGLE_FILE_SUFFIXES or reference.startswith(("/", ".", "~")) or "\\" in reference
    )
    if not looks_local and HUB_ID.match(reference):
        if hub_offline() and not _in_hub_cache(reference):
            raise ModelUnavailable(offline_hint(reference))
        return ModelSource(reference, "hub", reference)
    raise ModelUnavailable(
        f"model {reference!r}: no such local folder or file, and not a Hugging Face hub id (owner/name)"
    )


def single_file_config_dir(file: Path, configured: str | Path | None) -> Path | None:
    """The configured config folder, else a diffusers folder beside the file (`<stem>/` or the file's own folder)."""
    if configured:
        folder = Path(configured).expanduser()
        if not (folder / "model_index.json").is_file():
            raise ModelUnavailable(
                f"model.single_file_config {folder} is not a diffusers folder (model_index.json missing)"
            )
        return folder.resolve()
    for candidate in (file.with_suffix(""), file.parent / f"{file.stem}-config", file.parent):
        if (candidate / "model_index.json").is_file():
            return candidate.resolve()
    return None


def _in_hub_cache(repo_id: str) -> bool:
    from huggingface_hub import try_to_load_from_cache

    found = try_to_load_from_cache(repo_id, "model_index.json")
    return isinstance(found, str)



def known_local_models(*folders: Path) -> list[KnownModel]:
    """Diffusers folders and single checkpoints directly under `folders` (e.g. assets/models, <data>/models)."""
    found: dict[str, KnownModel] = {}
    for folder in folders:
        if not folder.is_dir():
            continue
        for item in sorted(folder.iterdir()):
            if item.is_dir() and (item / "model_index.json").is_file():
                found[str(item.resolve())] = KnownModel(model=str(item.resolve()), name=item.name, kind="folder")
            elif item.is_file() and item.suffix.lower() in SINGLE_FILE_SUFFIXES:
                found[str(item.resolve())] = KnownModel(model=str(item.resolve()), name=item.name, kind="single_file")
    return list(found.values())
