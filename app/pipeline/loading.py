"""Loading a model's pipeline in the generation process: from a local folder, a single checkpoint file
(`from_single_file`), or the Hugging Face hub with download progress reported through a callback.
Where a reference points and whether it can be loaded at all is app/pipeline/sources.py.
"""
from __future__ import annotations

import json
import re
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .sources import (
    ModelSource,
    ModelUnavailable,
    hub_cache_dir,
    hub_offline,
    offline_hint,
)

ProgressCallback = Callable[[int, "int | None"], None]
"""progress(downloaded_bytes, total_bytes or None), called from the loading thread."""



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
            raise ModelUnavailable(offline_hint(repo_id)) from error
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
