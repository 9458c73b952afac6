"""The bounded FIFO of jobs waiting to run (session ids; the store holds the jobs themselves)."""
from __future__ import annotations

import asyncio
from collections import deque

from .errors import QueueFull


class JobQueue:
    def __init__(self, max_pending: int) -> None:
        self.max_pending = max_pending
        self._ids: deque[str] = deque()
        self._available = asyncio.Event()

    def __len__(self) -> int:
        return len(self._ids)

    def check_room(self) -> None:
        """Raise QueueFull when no job may be added."""
        if len(self._ids) >= self.max_pending:
            raise QueueFull(f"the queue is full ({self.max_pending} jobs waiting); try again later")

    def put(self, session_id: str, *, force: bool = False) -> int:
        """Append and return the 1-based position; `force` ignores the bound (restart recovery)."""
        if not force:
            self.check_room()
        self._ids.append(session_id)
        self._available.set()
        return len(self._ids)

    async def wait_for_job(self) -> None:
        """Until a job waits (without taking it)."""
        while not self._ids:
            self._available.clear()
            await self._available.wait()

    async def get(self) -> str:
        while not self._ids:
            self._available.clear()
            await self._available.wait()
        return self._ids.popleft()

    def remove(self, session_id: str) -> bool:
        try:
            self._ids.remove(session_id)
        except ValueError:
            return False
        return True

    def position(self, session_id: str) -> int | None:
        try:
            return self._ids.index(session_id) + 1
        except ValueError:
            return None

    def waiting(self) -> list[str]:
        return list(self._ids)
