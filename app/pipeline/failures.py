"""What a failed generation tells the artist, and the clean-up after running out of memory."""

from __future__ import annotations

import ctypes
import errno
import sys
from pathlib import Path

OUT_OF_MEMORY_SIGNS = ("out of memory", "can't allocate memory", "not enough memory", "cannot allocate memory")


def is_out_of_memory(error: BaseException) -> bool:
    text = str(error).lower()
    return (isinstance(error, MemoryError) or type(error).__name__ == "OutOfMemoryError"
            or any(sign in text for sign in OUT_OF_MEMORY_SIGNS))


def release_memory() -> None:
    """After an out-of-memory failure: hand what the failed call left cached back, so the next job fits."""
    import gc

    gc.collect()
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available():
        torch.cuda.empty_cache()
    if sys.platform.startswith("linux"):
        try:
            ctypes.CDLL("libc.so.6").malloc_trim(0)  # glibc keeps freed heap pages mapped otherwise
        except (OSError, AttributeError):
            pass


def describe_failure(error: BaseException) -> str:
    """A message an artist can act on, for any exception a generation raised."""
    text = str(error) or type(error).__name__
    if isinstance(error, OSError) and error.errno == errno.ENOSPC:
        where = f" for {Path(error.filename).parent}" if error.filename else ""
        return (f"Disk full: no space left on the disk{where}; the image was not saved. Free some space and "
                f"generate again ({text})")
    if is_out_of_memory(error):
        return (
            "Out of memory: try fewer images per batch, a smaller width/height, or enable model CPU offload "
            f"or attention slicing in config.yaml ({text.splitlines()[0]})"
        )
    return f"{type(error).__name__}: {text}"
