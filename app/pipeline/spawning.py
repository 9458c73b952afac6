"""Starting generation processes (a fork server that has torch and diffusers imported already, or a
fresh spawn) and saying how one ended."""
from __future__ import annotations

import logging
import multiprocessing
import os
import signal
from typing import Any

from .entry import LOG_FILE_VARIABLE

log = logging.getLogger(__name__)

_forkserver_environment: dict[str, str] | None = None


# What torch, diffusers and the Hugging Face libraries read from the environment (at import, or when
# they build a path); the rest of the environment does not change what a generation process does.
_LIBRARY_VARIABLE_PREFIXES = ("HF_", "HUGGINGFACE_", "TRANSFORMERS_", "DIFFUSERS_", "TORCH", "PYTORCH_", "CUDA_",
                              "OMP_", "MKL_", "OPENBLAS_", "KMP_")
_LIBRARY_VARIABLES = {"HOME", "XDG_CACHE_HOME", "PATH", "LD_LIBRARY_PATH"}


def _library_environment() -> dict[str, str]:
    return {
        name: value for name, value in os.environ.items()
        if name.startswith(_LIBRARY_VARIABLE_PREFIXES) or name in _LIBRARY_VARIABLES
    }


def process_context(log_file: str | None) -> Any:
    """Fork server where there is one: a new process forks from one that already imported torch and
    diffusers. The fork server keeps the environment it started with (and Hugging Face reads its
    variables at import), so after a change of environment in this process (tests do that) a new
    process is spawned instead. `log_file` is where the fork server prints, if it starts now."""
    global _forkserver_environment
    if "forkserver" not in multiprocessing.get_all_start_methods():
        return multiprocessing.get_context("spawn")
    if log_file and _forkserver_environment is None:
        os.environ[LOG_FILE_VARIABLE] = log_file
    environment = _library_environment()
    if _forkserver_environment is None:
        _forkserver_environment = environment
    elif environment != _forkserver_environment:
        log.info("the environment changed since the fork server started; spawning a fresh generation process")
        return multiprocessing.get_context("spawn")
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(["app.pipeline.preload"])
    return context


def describe_exit(exit_code: int | None) -> str:
    if exit_code is None:
        return "stopped responding"
    if exit_code < 0:
        name = signal.Signals(-exit_code).name
        hint = " (often the system's out-of-memory killer)" if name == "SIGKILL" else ""
        return f"was killed by {name}{hint}"
    return f"exited with status {exit_code}"
