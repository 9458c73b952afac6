"""Who watches which job's live previews: previews are rendered only while someone does.

A watcher is any object that stands for one viewer: a /ws connection subscribed with `previews: true`,
a studio page whose job list shows the job, an AUTOMATIC1111 client polling its run's progress with
images. When a job gains its first watcher or loses its last one, `on_change(session_id, watched)` is
called (the engine then tells the generation process, which starts or stops rendering at its next
step). A job's watchers are forgotten when it ends.
"""
from __future__ import annotations

from collections.abc import Callable


class PreviewWatchers:
    def __init__(self, on_change: Callable[[str, bool], None] = lambda _session_id, _watched: None) -> None:
        self.on_change = on_change
        self._watchers: dict[str, set[object]] = {}  # session -> who watches it
        self.rendered = 0  # previews that reached the server, for GET /api/health

    def watched(self, session_id: str) -> bool:
        return bool(self._watchers.get(session_id))

    def watch(self, session_id: str, watcher: object) -> None:
        watchers = self._watchers.setdefault(session_id, set())
        was_watched = bool(watchers)
        watchers.add(watcher)
        if not was_watched:
            self.on_change(session_id, True)

    def unwatch(self, session_id: str, watcher: object) -> None:
        watchers = self._watchers.get(session_id)
        if watchers is None or watcher not in watchers:
            return
        watchers.discard(watcher)
        if not watchers:
            del self._watchers[session_id]
            self.on_change(session_id, False)

    def drop(self, watcher: object) -> None:
        """The watcher went away (a socket closed, a page was closed): it watches nothing any more."""
        for session_id in [sid for sid, watchers in self._watchers.items() if watcher in watchers]:
            self.unwatch(session_id, watcher)

    def forget(self, session_id: str) -> None:
        """The job ended: nothing more to render for it."""
        self._watchers.pop(session_id, None)

    def watched_jobs(self) -> int:
        return len(self._watchers)
