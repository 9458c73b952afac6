"""Where a model comes from and how it is loaded: a Hugging Face hub id, a local diffusers folder, or a
single `.safetensors`/`.ckpt` checkpoint (`from_single_file`).

`resolve_source` answers quickly (no weights read) whether a reference can be loaded here and raises
`ModelUnavailable` with what is missing and how to get it otherwise; `load_pipeline` does the loading,
reporting hub download progress through a callback. `ModelEvents` is the process-wide channel for
`model_loading` messages (the /ws face listens to it).
"""
from __future__ import annotations

import asyncio
import json
import logging
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from .protocol import KnownModel, ModelLoading

log = logging.getLogger(__name__)

SINGLE_FILE_SUFFIXES = (".safetensors", ".ckpt")
HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[A-Za-z0-9][\w.-]*$")
PROJECT_ROOT = Path(__file__).resolve().parent.parent

ProgressCallback = Callable[[int, "int | None"], None]
"""progress(downloaded_bytes, total_bytes or None), called from the loading thread."""


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


def _offline_hint(repo_id: str) -> str:
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
            raise ModelUnavailable(_offline_hint(reference))
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


# --------------------------------------------------------------------------- loading


def _pipeline_class_of(config_dir: str | None, file: Path) -> Any:
    import diffusers

    if config_dir is not None:
        name = json.loads((Path(config_dir) / "model_index.json").read_text()).get("_class_name", "")
        cls = getattr(diffusers, str(name), None)
        if cls is None or not hasattr(cls, "from_single_file"):
            raise ModelUnavailable(f"{config_dir}: pipeline class {name!r} cannot load a single-file checkpoint")
        return cls
    if file.suffix.lower() == ".safetensors":
        from safetensors import safe_open

        with safe_open(str(file), framework="pt") as handle:
            if any(key.startswith("conditioner.embedders.1") for key in handle.keys()):
                return diffusers.StableDiffusionXLPipeline
    return diffusers.StableDiffusionPipeline


def load_single_file(source: ModelSource, dtype: Any) -> Any:
    file = Path(source.location)
    cls = _pipeline_class_of(source.config_dir, file)
    if source.config_dir is not None:
        return cls.from_single_file(str(file), config=source.config_dir, local_files_only=True, dtype=dtype)
    try:  # the configs may still be in the Hugging Face cache, or downloadable when online
        return cls.from_single_file(str(file), local_files_only=hub_offline(), dtype=dtype)
    except Exception as error:
        raise ModelUnavailable(
            f"cannot load the single-file checkpoint {file}: it needs the model's configs (model_index.json, "
            "scheduler, tokenizer, text encoder and unet/vae config.json) and none were found locally. "
            "Set model.single_file_config (AI_ARTIST_MODEL__SINGLE_FILE_CONFIG) to a local diffusers folder of "
            f"the same architecture, or put one named {file.stem!r} beside the file "
            f"({type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''})"
        ) from error


def _folder_bytes(folder: Path) -> int:
    total = 0
    if folder.is_dir():
        for item in folder.iterdir():
            try:
                total += item.stat().st_size
            except OSError:
                pass
    return total


def _expected_download_bytes(repo_id: str) -> int | None:
    """An estimate of what a default diffusers download takes: configs plus non-variant weights."""
    try:
        from huggingface_hub import HfApi

        info = HfApi().model_info(repo_id, files_metadata=True)
    except Exception:
        return None
    files = [(s.rfilename, s.size or 0) for s in info.siblings or []]
    has_safetensors = any(name.endswith(".safetensors") for name, _ in files)
    total = 0
    for name, size in files:
        if "/" not in name and not name.endswith(".json") and not name.endswith(".txt"):
            continue  # top-level weights, images, readme: not part of a pipeline download
        if re.search(r"\.(fp16|bf16|fp32|non_ema|ema)\.", name):
            continue
        if name.endswith((".bin", ".ckpt", ".msgpack", ".onnx", ".pb", ".h5")) or (
            name.endswith(".safetensors") and not has_safetensors
        ):
            continue
        total += size
    return total or None


def download_hub_model(repo_id: str, progress: ProgressCallback | None = None, interval: float = 0.5) -> str:
    """The local snapshot folder of `repo_id`, downloading it into the Hugging Face cache if needed."""
    from diffusers import DiffusionPipeline

    if hub_offline():
        try:
            return str(DiffusionPipeline.download(repo_id, local_files_only=True))
        except Exception as error:
            raise ModelUnavailable(_offline_hint(repo_id)) from error
    blobs = hub_cache_dir() / f"models--{repo_id.replace('/', '--')}" / "blobs"
    start = _folder_bytes(blobs)
    total = _expected_download_bytes(repo_id) if progress is not None else None
    done = threading.Event()

    def watch() -> None:
        while not done.wait(interval):
            progress(_folder_bytes(blobs) - start, total)  # type: ignore[misc]

    watcher = threading.Thread(target=watch, name="download-progress", daemon=True) if progress else None
    if watcher is not None:
        progress(0, total)  # type: ignore[misc]
        watcher.start()
    try:
        folder = str(DiffusionPipeline.download(repo_id))
    except Exception as error:
        raise ModelUnavailable(
            f"could not download {repo_id!r} from the Hugging Face hub ({type(error).__name__}: "
            f"{str(error).splitlines()[0] if str(error) else ''}); check the network, accept the model's licence "
            f"and set HF_TOKEN for gated models, or download it with `hf download {repo_id}`"
        ) from error
    finally:
        done.set()
    if progress is not None:
        downloaded = _folder_bytes(blobs) - start
        progress(downloaded, max(total or 0, downloaded))
    return folder


def load_pipeline(source: ModelSource, dtype: Any, progress: ProgressCallback | None = None) -> Any:
    """Load the pipeline of `source` on the CPU (the caller moves it to its device)."""
    from diffusers import AutoPipelineForText2Image, DiffusionPipeline

    if source.kind == "single_file":
        return load_single_file(source, dtype)
    folder = source.location if source.kind == "folder" else download_hub_model(source.location, progress)
    try:
        return AutoPipelineForText2Image.from_pretrained(folder, dtype=dtype, local_files_only=True)
    except ValueError:
        return DiffusionPipeline.from_pretrained(folder, dtype=dtype, local_files_only=True)


# --------------------------------------------------------------------------- known models


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


# --------------------------------------------------------------------------- model_loading messages

ModelListener = Callable[[ModelLoading], None]


class ModelEvents:
    """Fan-out of `model_loading` messages to listeners on the event loop (any thread may publish)."""

    def __init__(self) -> None:
        self._listeners: set[ModelListener] = set()
        self._loop: asyncio.AbstractEventLoop | None = None

    def attach_loop(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop

    def add_listener(self, listener: ModelListener) -> None:
        self._listeners.add(listener)

    def remove_listener(self, listener: ModelListener) -> None:
        self._listeners.discard(listener)

    def _deliver(self, message: ModelLoading) -> None:
        for listener in tuple(self._listeners):
            try:
                listener(message)
            except Exception:
                log.exception("a model_loading listener failed")

    def publish_threadsafe(self, message: ModelLoading) -> None:
        loop = self._loop
        if loop is None or loop.is_closed():
            self._deliver(message)
        else:
            loop.call_soon_threadsafe(self._deliver, message)


model_events = ModelEvents()
"""The process-wide channel: the engine publishes, the /ws face broadcasts (see app/api.py)."""
