"""Where `ArtworkGenerator.generate(..., session_id=...)` reports its steps when used as a library.

The generator knows nothing of the server: it calls the sink installed here, if any. The server installs
one at start-up that publishes `generation_progress` to the session's /ws subscribers (and the studio),
so a script or custom endpoint in the server's process reaches them the way the websocket guide shows.
"""
from __future__ import annotations

from collections.abc import Callable

SessionProgressSink = Callable[[str, int, int], None]
"""sink(session_id, step, total_steps), called from the generating thread."""

_sink: SessionProgressSink | None = None


def set_session_progress_sink(sink: SessionProgressSink | None) -> None:
    global _sink
    _sink = sink


def session_progress_sink() -> SessionProgressSink | None:
    return _sink
