"""The bounded queue of jobs waiting to run (session ids; the store holds the jobs themselves).

Fairness: jobs are handed out round-robin per client (`Engine.submit(..., client=)`), each client's own
jobs in the order they came. The client served longest ago goes first (a client never served yet by
its first job's arrival), so one client's hundred queued jobs do not starve another's one.

Model routing: a worker takes only a job it can run on the model it holds (`take(accepts)`); a job
asking for a model no free worker holds waits for one that has it, instead of going to a worker that
would have to load it first.

`waiting()` is the order the jobs will be taken in (every worker on the same model): positions follow it.
"""
from __future__ import annotations

import asyncio
import itertools
from collections.abc import Callable
from dataclasses import dataclass

from .errors import QueueFull


@dataclass(frozen=True)
class QueuedJob:
    session_id: str
    client: str = ""
    model: str | None = None  # the model id it must run on; None: whatever the server's current model is


def fair_order(entries: list[QueuedJob], last_served: dict[str, int]) -> list[QueuedJob]:
    """`entries` (in arrival order) in the order round-robin per client takes them."""
    per_client: dict[str, list[QueuedJob]] = {}
    for entry in entries:
        per_client.setdefault(entry.client, []).append(entry)
    clients = sorted(per_client, key=lambda client: last_served.get(client, -1))  # stable: arrival among ties
    rounds = itertools.zip_longest(*(per_client[client] for client in clients))
    return [entry for round_ in rounds for entry in round_ if entry is not None]


class JobQueue:
    def __init__(self, max_pending: int) -> None:
        self.max_pending = max_pending
        self._entries: list[QueuedJob] = []
        self._last_served: dict[str, int] = {}
        self._served = itertools.count()
        self._changed = asyncio.Event()

    def __len__(self) -> int:
        return len(self._entries)

    def check_room(self) -> None:
        """Raise QueueFull when no job may be added."""
        if len(self._entries) >= self.max_pending:
            raise QueueFull(f"the queue is full ({self.max_pending} jobs waiting); try again later")

    def put(self, session_id: str, *, client: str = "", model: str | None = None, force: bool = False) -> int:
        """Add and return the 1-based position; `force` ignores the bound (restart recovery)."""
        if not force:
            self.check_room()
        self._entries.append(QueuedJob(session_id, client, model))
        self.notify()
        return self.position(session_id) or len(self._entries)

    def notify(self) -> None:
        """Wake the waiting workers to look again (a job came, or a worker's model became ready)."""
        self._changed.set()

    def next_for(self, accepts: Callable[[QueuedJob], bool]) -> QueuedJob | None:
        """The job a worker would take now (first in fair order that it `accepts`), without taking it."""
        for entry in fair_order(self._entries, self._last_served):
            if accepts(entry):
                return entry
        return None

    def take_now(self, accepts: Callable[[QueuedJob], bool]) -> QueuedJob | None:
        entry = self.next_for(accepts)
        if entry is not None:
            self._entries.remove(entry)
            self._last_served[entry.client] = next(self._served)
        return entry

    async def take(self, accepts: Callable[[QueuedJob], bool] = lambda _: True) -> QueuedJob:
        """Wait for a job this worker `accepts` and take it."""
        while (entry := self.take_now(accepts)) is None:
            self._changed.clear()
            await self._changed.wait()
        if self._entries:
            self.notify()  # another worker may want what is left
        return entry

    async def wait_for_job(self, accepts: Callable[[QueuedJob], bool] = lambda _: True) -> None:
        """Until a job this worker `accepts` waits (without taking it)."""
        while self.next_for(accepts) is None:
            self._changed.clear()
            await self._changed.wait()

    async def get(self) -> str:
        return (await self.take()).session_id

    def remove(self, session_id: str) -> bool:
        for entry in self._entries:
            if entry.session_id == session_id:
                self._entries.remove(entry)
                return True
        return False

    def position(self, session_id: str) -> int | None:
        for index, entry in enumerate(fair_order(self._entries, self._last_served), start=1):
            if entry.session_id == session_id:
                return index
        return None

    def waiting(self) -> list[str]:
        """Session ids in the order they will be taken."""
        return [entry.session_id for entry in fair_order(self._entries, self._last_served)]
