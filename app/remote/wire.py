"""What the server and its remote workers keep in Redis, and how a message is packed there.

- `ai-artist:jobs:<model name>`: a Stream per model, consumer group `workers`. The server adds a job when a
  worker holding that model is free (its fair queue decides which job); a worker reads it with XREADGROUP,
  keeps its pending entry fresh with XCLAIM while it runs (the entry's idle time is its heartbeat), and the
  server XACKs it only after it stored the outcome. A dead worker's entry goes idle and another worker takes
  it over with XAUTOCLAIM; its delivery count is the attempt number.
- `ai-artist:events`: a Stream of what workers report (started, step, preview, finished with the PNG bytes,
  cancelled, failed), read by the server in consumer group `server`, so nothing is lost while it restarts.
- `ai-artist:cancel`: pub/sub channel of session ids to stop; `ai-artist:cancelled`: a set of them, for a
  job cancelled before a worker started it.
- `ai-artist:workers`: a hash of worker name -> its `WorkerView` as JSON, refreshed with every heartbeat.

Entries are pickled dataclasses (as on the pipe to a local generation process), read back by an
unpickler that builds only the project's message classes and plain values (`ALLOWED`): an entry that names
anything else (a function to call, another module's class) is refused with `UnpicklingError`, so whoever
can write to this Redis cannot run code in the server or a worker. Still keep Redis private to the server
and its workers (a password or ACL in the URL: redis://:secret@host:6379/0): it can see prompts and images.
"""
from __future__ import annotations

import builtins
import datetime
import io
import pickle
from dataclasses import dataclass, field
from typing import Any

PREFIX = "ai-artist:"
EVENTS = PREFIX + "events"
CANCEL_CHANNEL = PREFIX + "cancel"
CANCELLED = PREFIX + "cancelled"
WORKERS = PREFIX + "workers"
WORKER_GROUP = "workers"
SERVER_GROUP = "server"
EVENTS_MAXLEN = 100_000


def job_stream(model_name: str) -> str:
    """The stream of jobs for one model (by its display name: the same on every machine)."""
    return f"{PREFIX}jobs:{model_name}"


@dataclass(frozen=True)
class RemoteJob:
    """A job as the server hands it to a remote worker."""

    spec: Any  # app.pipeline.messages.JobSpec
    max_attempts: int


@dataclass(frozen=True)
class WorkerEvent:
    """What a remote worker reports about the job of stream entry `entry` (in `stream`)."""

    kind: str  # started | step | preview | finished | cancelled | failed
    session_id: str
    worker: str
    stream: str
    entry: str
    data: dict[str, Any] = field(default_factory=dict)
    # finished: {"images": [(name, png bytes)], "metadata": GenerationMetadata}; started: {"seed", "total_steps",
    # "model"}; step: {"step", "total_steps", "eta"}; preview: {"step", "jpeg", "width", "height"}; failed: {"error"}


def pack(value: Any) -> bytes:
    return pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)


# Modules whose classes an entry may name; only classes, never functions (see the module docstring).
ALLOWED_MODULES = frozenset({
    "app.remote.wire", "app.pipeline.messages", "app.pipeline.values", "app.protocol", "app.config",
})
ALLOWED_GLOBALS = {
    ("datetime", name): getattr(datetime, name) for name in ("datetime", "date", "time", "timedelta", "timezone")
} | {("builtins", name): getattr(builtins, name) for name in ("set", "frozenset", "complex", "bytearray")}


class _MessageUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in ALLOWED_GLOBALS:
            return ALLOWED_GLOBALS[(module, name)]
        if module in ALLOWED_MODULES and "." not in name:
            found = getattr(__import__(module, fromlist=[name]), name, None)
            if isinstance(found, type):
                return found
        raise pickle.UnpicklingError(f"a Redis entry names {module}.{name}, which is not a message class: refused")


def unpack(data: bytes) -> Any:
    """Raises pickle.UnpicklingError for an entry that is not one of our messages."""
    return _MessageUnpickler(io.BytesIO(data)).load()
