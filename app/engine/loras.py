"""The LoRA files of model.lora_dir as the server knows them: names, content hashes, and whether each
fits the loaded model (judged from its safetensors header against what the generation process reported
of the model; no torch here). `GET /api/loras` lists them; `Engine.submit` checks a job's against them.

Hashing reads the whole file, so results are kept per (path, size, modification time): a file is
hashed again only when it changes. How LoRAs reach a remote worker: docs/img2img.md.
"""
from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from pathlib import Path

from ..pipeline.lora_files import (
    LORA_SUFFIX,
    LoraFacts,
    LoraFileError,
    content_hash,
    facts_of,
    read_header,
    short_hash,
    valid_name,
)
from ..protocol import LoraInfo, LoraList

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LoraFile:
    name: str
    path: Path
    size: int
    sha256: str
    facts: LoraFacts | None
    problem: str | None = None  # why the file cannot be used at all

    def misfit(self, family: str | None, model_layers: dict[str, int]) -> str | None:
        if self.problem is not None:
            return self.problem
        assert self.facts is not None
        return self.facts.misfit(family, model_layers)


class LoraLibrary:
    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self._known: dict[tuple[str, int, int], LoraFile] = {}
        self._lock = threading.Lock()

    def names(self) -> list[str]:
        if not self.folder.is_dir():
            return []
        return sorted(path.stem for path in self.folder.glob(f"*{LORA_SUFFIX}") if valid_name(path.stem))

    def warm(self) -> None:
        """Read and hash every file now (at start-up, in a thread), so a job's first check is quick."""
        for name in self.names():
            self.get(name)

    def get(self, name: str) -> LoraFile | None:
        """The LoRA called `name` (its file `<name>.safetensors`), None when there is none."""
        if not valid_name(name):
            return None
        path = self.folder / f"{name}{LORA_SUFFIX}"
        try:
            stat = path.stat()
        except OSError:
            return None
        key = (str(path), stat.st_size, stat.st_mtime_ns)
        with self._lock:
            known = self._known.get(key)
        if known is None:
            known = self._read(name, path, stat.st_size)
            with self._lock:
                self._known[key] = known
        return known

    @staticmethod
    def _read(name: str, path: Path, size: int) -> LoraFile:
        try:
            facts = facts_of(read_header(path))
            return LoraFile(name, path, size, content_hash(path), facts)
        except (LoraFileError, OSError, ValueError) as error:
            log.warning("LoRA %s cannot be used: %s", path, error)
            return LoraFile(name, path, size, "", None, f"{path.name} cannot be used: {error}")

    def listing(self, family: str | None, model_layers: dict[str, int], supports_lora: bool) -> LoraList:
        """Every LoRA file, with whether it fits the loaded model (reads and hashes new files: call it
        off the event loop)."""
        items = []
        for name in self.names():
            lora = self.get(name)
            if lora is None:
                continue
            problem = lora.misfit(family, model_layers) if supports_lora else "the loaded model cannot use LoRAs"
            items.append(
                LoraInfo(
                    name=name,
                    hash=short_hash(lora.sha256),
                    sha256=lora.sha256,
                    size_bytes=lora.size,
                    families=sorted(lora.facts.families) if lora.facts else [],
                    fits=problem is None,
                    problem=problem,
                )
            )
        return LoraList(lora_dir=str(self.folder), items=items)
