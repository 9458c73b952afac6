"""The one event bus: per-session generation events (with sequence numbers and snapshots), the model's
events, and the thread -> loop bridge. It feeds both faces: /ws subscribers and the studio's widgets.

Every message about a session gets the next `seq` of that session. The bus keeps, per session, the
messages a late or reconnecting subscriber needs (queued, started, the latest progress and preview,
the terminal message) so `replay(session_id, after_seq)` can bring it up to date. Only the
`max_finished_sessions` most recently finished sessions stay in memory (a long-running server would
otherwise grow with every job); an older one is re-created from the job store when someone subscribes
to it (`Engine.ensure_session`), as after a restart. Listeners run on the
event loop; the job worker publishes there too, as the generation process's messages arrive. Code on
other threads (an `ArtworkGenerator` used as a library with a `session_id`) publishes with
`publish_threadsafe`, which hops onto the loop with `loop.call_soon_threadsafe`.

Model events (`ModelLoading` while a hub download runs, `ModelChanged` when the model's state changes)
belong to no session: they carry no seq and are not replayed; model listeners get each as it happens.
"""
from __future__ import annotations

import asyncio
import logging
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol, Union

from ..protocol import (
    TERMINAL_EVENTS,
    GenerationPreview,
    GenerationProgress,
    ModelLoading,
    ModelState,
    SessionEvent,
)

log = logging.getLogger(__name__)

Listener = Callable[[SessionEvent, str], None]
"""Called on the event loop with the event and its JSON text (serialised once for all listeners)."""


@dataclass(frozen=True)
class ModelChanged:
    """The model slot's state changed: another model began loading, or the load ended (ready or error)."""

    model: str
    state: ModelState


ModelEvent = Union[ModelLoading, ModelChanged]
ModelListener = Callable[[ModelEvent], None]


class SequenceStore(Protocol):
    """Where the last seq of a session survives a restart (the job store implements it).

    A store may also offer `save_seqs(seqs: dict[str, int])`, writing many in one transaction; the bus
    uses it when present (each SQLite write transaction costs the event loop time).
    """

    def load_seq(self, session_id: str) -> int: ...

    def save_seq(self, session_id: str, seq: int) -> None: ...


@dataclass
class SessionHistory:
    seq: int = 0
    milestones: list[SessionEvent] = field(default_factory=list)
    latest_progress: GenerationProgress | None = None
    latest_preview: GenerationPreview | None = None

    @property
    def terminal(self) -> SessionEvent | None:
        last = self.milestones[-1] if self.milestones else None
        return last if isinstance(last, TERMINAL_EVENTS) else None

    def remember(self, event: SessionEvent) -> None:
        if isinstance(event, GenerationProgress):
            self.latest_progress = event
        elif isinstance(event, GenerationPreview):
            self.latest_preview = event
        else:
            self.milestones.append(event)
            del self.milestones[:-16]

    def stored(self) -> list[SessionEvent]:
        events: list[SessionEvent] = [*self.milestones]
        if self.latest_progress is not None:
            events.append(self.latest_progress)
        if self.latest_preview is not None:
            events.append(self.latest_preview)
        return sorted(events, key=lambda event: event.seq)


class EventBus:
    def __init__(
        self, seq_store: SequenceStore | None = None, max_sessions: int = 10_000, max_finished_sessions: int = 1_000
    ) -> None:
        self._seq_store = seq_store
        self._max_sessions = max_sessions
        self._max_finished = max_finished_sessions
        self._sessions: OrderedDict[str, SessionHistory] = OrderedDict()
        self._finished: OrderedDict[str, None] = OrderedDict()  # finished sessions in memory, oldest first
        self._listeners: dict[str, set[Listener]] = {}
        self._global_listeners: set[Listener] = set()
        self._model_listeners: set[ModelListener] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._lock = threading.Lock()
        self._unsaved: dict[str, int] = {}  # session -> seq published on the loop, not yet stored
        self._save_scheduled = False

    # -- wiring ---------------------------------------------------------------------------------

    def attach_loop(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop

    def set_seq_store(self, seq_store: SequenceStore) -> None:
        self._seq_store = seq_store

    def add_listener(self, session_id: str, listener: Listener) -> None:
        self._listeners.setdefault(session_id, set()).add(listener)

    def remove_listener(self, session_id: str, listener: Listener) -> None:
        listeners = self._listeners.get(session_id)
        if listeners is not None:
            listeners.discard(listener)
            if not listeners:
                del self._listeners[session_id]

    def add_global_listener(self, listener: Listener) -> None:
        self._global_listeners.add(listener)

    def remove_global_listener(self, listener: Listener) -> None:
        self._global_listeners.discard(listener)

    def add_model_listener(self, listener: ModelListener) -> None:
        self._model_listeners.add(listener)

    def remove_model_listener(self, listener: ModelListener) -> None:
        self._model_listeners.discard(listener)

    # -- publishing -----------------------------------------------------------------------------

    def publish(self, event: SessionEvent) -> SessionEvent:
        """Number the event, remember it and hand it to the listeners. Call on the event loop."""
        with self._lock:
            history = self._history(event.session_id)
            history.seq += 1
            event.seq = history.seq
            history.remember(event)
            if isinstance(event, TERMINAL_EVENTS):
                self._forget_old_finished(event.session_id)
        if self._seq_store is not None:
            self._save_seq(event.session_id, event.seq)
        text = event.model_dump_json()
        for listener in tuple(self._listeners.get(event.session_id, ())):
            listener(event, text)
        for listener in tuple(self._global_listeners):
            listener(event, text)
        return event

    def publish_model(self, event: ModelEvent) -> None:
        """Tell every model listener (on the event loop); one failing listener does not stop the others."""
        for listener in tuple(self._model_listeners):
            try:
                listener(event)
            except Exception:
                log.exception("a model listener failed on %s", type(event).__name__)

    def _save_seq(self, session_id: str, seq: int) -> None:
        """Store the seq before any client can see it, batching what one loop iteration publishes.

        On the loop the write is deferred with `call_soon`, scheduled before the listeners run, so it
        still happens before the sender tasks they wake put the message on a socket; a burst of
        publishes in one callback (queue positions for every waiting job, progress that piled up while
        the loop was busy) becomes one write per session, in one transaction when the store can.
        """
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            loop = None
        if loop is None or loop is not self._loop:
            assert self._seq_store is not None
            self._seq_store.save_seq(session_id, seq)
            return
        self._unsaved[session_id] = seq
        if not self._save_scheduled:
            self._save_scheduled = True
            loop.call_soon(self.flush_seqs)

    def flush_seqs(self) -> None:
        """Write the seqs published on the loop and not yet stored (the loop calls it; tests may)."""
        self._save_scheduled = False
        unsaved, self._unsaved = self._unsaved, {}
        store = self._seq_store
        if not unsaved or store is None:
            return
        try:
            save_seqs = getattr(store, "save_seqs", None)
            if save_seqs is not None:
                save_seqs(unsaved)
            else:
                for session_id, seq in unsaved.items():
                    store.save_seq(session_id, seq)
        except Exception:  # e.g. the store closed at shut-down; never break the loop over it
            log.exception("could not store the seq of %d session(s)", len(unsaved))

    def publish_threadsafe(self, event: SessionEvent) -> None:
        """Publish from any thread (a library user's generation thread): the event is delivered on the loop."""
        loop = self._loop
        if loop is None or loop.is_closed():
            self.publish(event)  # no server running (a plain script): keep the history only
            return
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            self.publish(event)
        else:
            loop.call_soon_threadsafe(self.publish, event)

    # -- reading --------------------------------------------------------------------------------

    def known(self, session_id: str) -> bool:
        return session_id in self._sessions

    def last_seq(self, session_id: str) -> int:
        with self._lock:
            return self._history(session_id).seq

    def replay(self, session_id: str, after_seq: int | None = None) -> list[SessionEvent]:
        """What a subscriber needs now: everything stored after `after_seq`, or else one snapshot."""
        with self._lock:
            history = self._sessions.get(session_id)
            if history is None:
                return []
            if after_seq is not None:
                return [event for event in history.stored() if event.seq > after_seq]
            snapshot = history.terminal or history.latest_progress
            if snapshot is None and history.milestones:
                snapshot = history.milestones[-1]
            return [snapshot] if snapshot is not None else []

    def restore(self, session_id: str, events: list[SessionEvent], seq: int) -> None:
        """Re-create a session's history after a restart from what the store kept."""
        with self._lock:
            history = self._history(session_id)
            history.seq = max(history.seq, seq)
            for event in events:
                history.remember(event)
            if history.terminal is not None:
                self._forget_old_finished(session_id)

    def _forget_old_finished(self, session_id: str) -> None:
        self._finished[session_id] = None
        self._finished.move_to_end(session_id)
        while len(self._finished) > self._max_finished:
            oldest, _ = self._finished.popitem(last=False)
            self._sessions.pop(oldest, None)

    def _history(self, session_id: str) -> SessionHistory:
        history = self._sessions.get(session_id)
        if history is None:
            history = SessionHistory()
            if self._seq_store is not None:
                history.seq = max(self._seq_store.load_seq(session_id), self._unsaved.get(session_id, 0))
            self._sessions[session_id] = history
            while len(self._sessions) > self._max_sessions:
                self._sessions.popitem(last=False)
        else:
            self._sessions.move_to_end(session_id)
        return history


bus = EventBus()
"""The process-wide bus the server builds its engine on (library calls of `ArtworkGenerator` with a
`session_id` reach it through the progress sink the server installs)."""
