"""The generation process's entry point, and where its output goes.

The server names `main` as the target of the process it starts without importing the pipeline code
itself (torch, diffusers); those imports happen in the child. Everything the child and its libraries
print (transformers' notices, diffusers' loading bars, tracebacks, its own log lines) goes to the log
file, so the server's console shows what an artist needs and nothing interleaved.
"""
from __future__ import annotations

import os
import signal
from typing import Any, TextIO

LOG_FILE_VARIABLE = "AI_ARTIST_GENERATION_LOG"
"""Set by the server before the fork server starts: the fork server imports torch and diffusers (and
prints their notices) before any generation process exists, so it reads where to print from here."""


_console: int | None = None
"""A descriptor of the console the process was started with (inherited from the fork server, where
there is one), for the warnings an artist should see there."""


def send_output_to(log_file: str | None) -> None:
    """Point this process's stdout and stderr (the file descriptors: native code prints there too) at
    `log_file`, keeping the console for `console()`."""
    global _console
    if not log_file:
        return
    if _console is None:
        _console = os.dup(2)
    descriptor = os.open(log_file, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    os.dup2(descriptor, 1)
    os.dup2(descriptor, 2)
    os.close(descriptor)


def console() -> TextIO | None:
    """The console as a text stream, once output went to the log file; None before."""
    return os.fdopen(_console, "w", buffering=1, closefd=False) if _console is not None else None


def main(connection: Any, spec: Any) -> None:
    # Ctrl+C in a terminal (or `timeout`) signals the whole process group: the server decides when this
    # process stops (Shutdown over the pipe, or the pipe closing when the server is gone).
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    send_output_to(spec.log_file)
    from .process import serve

    serve(connection, spec)
