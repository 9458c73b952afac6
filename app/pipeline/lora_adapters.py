"""The LoRAs of the loaded model, in the generation process: loaded once each with diffusers'
`load_lora_weights` (peft adapters injected into the shared denoiser and text encoders, so the
image-to-image and inpainting pipelines made with `from_pipe` use them too), then switched between jobs
with `set_adapters` — no reload of the base model, no second copy of its weights.

A job names each LoRA by name and content hash (app/pipeline/lora_files.py). The file is looked up in
this process's own LoRA folder and its hash checked, so a job never runs with a different file of the
same name (a remote worker whose folder lacks it fails the job saying which file to copy where).
"""
from __future__ import annotations

import logging
from collections import OrderedDict
from pathlib import Path
from typing import Any

from .lora_files import LORA_SUFFIX, content_hash, short_hash, valid_name
from .values import LoraRef

log = logging.getLogger(__name__)

MAX_LOADED = 8  # adapters kept in memory; the least recently used one is deleted beyond this


class LoraUnavailable(RuntimeError):
    """The LoRA a job names is not here, or not the same file; the message says what to do."""


def denoiser_layers(pipeline: Any) -> dict[str, int]:
    """Every Linear and Conv2d of the denoiser, named as diffusers names LoRA layers (`unet.<module>` or
    `transformer.<module>`), with its in-width: what the server checks a LoRA file's layers against."""
    import torch

    part = "unet" if getattr(pipeline, "unet", None) is not None else "transformer"
    denoiser = getattr(pipeline, part, None)
    if denoiser is None:
        return {}
    layers: dict[str, int] = {}
    for name, module in denoiser.named_modules():
        if isinstance(module, torch.nn.Linear):
            layers[f"{part}.{name}"] = module.in_features
        elif isinstance(module, torch.nn.Conv2d):
            layers[f"{part}.{name}"] = module.in_channels
    return layers


def supports_lora(pipeline: Any) -> bool:
    return hasattr(pipeline, "load_lora_weights") and hasattr(pipeline, "set_adapters")


class LoraAdapters:
    def __init__(self, pipeline: Any, lora_dir: Path | None) -> None:
        self.pipeline = pipeline
        self.lora_dir = lora_dir
        self._loaded: OrderedDict[str, str] = OrderedDict()  # sha256 -> adapter name
        self._hashes: dict[tuple[str, int, int], str] = {}  # (path, size, mtime) -> sha256

    def activate(self, loras: tuple[LoraRef, ...]) -> None:
        """Make exactly `loras` (with their weights) apply to the next pipeline call."""
        if not loras:
            if self._loaded:
                self.pipeline.disable_lora()
            return
        if not supports_lora(self.pipeline):
            raise LoraUnavailable(f"{type(self.pipeline).__name__} cannot load LoRAs")
        adapters = [self._load(lora) for lora in loras]
        self.pipeline.enable_lora()
        self.pipeline.set_adapters(adapters, adapter_weights=[lora.weight for lora in loras])

    def _load(self, lora: LoraRef) -> str:
        adapter = self._loaded.get(lora.sha256)
        if adapter is not None:
            self._loaded.move_to_end(lora.sha256)
            return adapter
        path = self._file_of(lora)
        adapter = f"{lora.name}-{short_hash(lora.sha256)}".replace(".", "_")
        try:
            self.pipeline.load_lora_weights(str(path), adapter_name=adapter)
        except Exception as error:
            raise LoraUnavailable(f"LoRA {lora.name!r} could not be loaded into this model: {error}") from error
        self._loaded[lora.sha256] = adapter
        while len(self._loaded) > MAX_LOADED:
            _, oldest = self._loaded.popitem(last=False)
            self.pipeline.delete_adapters([oldest])
        log.info("loaded LoRA %s (%s)", lora.name, short_hash(lora.sha256))
        return adapter

    def _file_of(self, lora: LoraRef) -> Path:
        if self.lora_dir is None:
            raise LoraUnavailable(f"LoRA {lora.name!r} asked for, but this worker has no LoRA folder (model.lora_dir)")
        path = self.lora_dir / f"{lora.name}{LORA_SUFFIX}"
        if not valid_name(lora.name) or not path.is_file():
            raise LoraUnavailable(
                f"LoRA {lora.name!r} (sha256 {short_hash(lora.sha256)}) is not in this worker's LoRA folder "
                f"{self.lora_dir}; copy {lora.name}{LORA_SUFFIX} there from the server's"
            )
        found = self._hash_of(path)
        if found != lora.sha256:
            raise LoraUnavailable(
                f"LoRA {lora.name!r} in {self.lora_dir} is another file (sha256 {short_hash(found)}, the job wants "
                f"{short_hash(lora.sha256)}); copy the server's {lora.name}{LORA_SUFFIX} there"
            )
        return path

    def _hash_of(self, path: Path) -> str:
        stat = path.stat()
        key = (str(path), stat.st_size, stat.st_mtime_ns)
        found = self._hashes.get(key)
        if found is None:
            found = self._hashes[key] = content_hash(path)
        return found
