"""The bench's client thread: coroutines run on its own loop, and only that thread runs at lower priority."""
from __future__ import annotations

import asyncio
import os
import threading

import pytest

from bench.ws_client import ClientThread

pytestmark = [pytest.mark.bench]


def thread_niceness(native_id: int) -> int:
    # /proc/<pid>/task/<tid>/stat: field 19 is the nice value; the command name (field 2) may hold spaces
    stat = open(f"/proc/self/task/{native_id}/stat").read()
    return int(stat.rpartition(")")[2].split()[16])


def test_runs_coroutines_on_its_own_thread_at_its_niceness():
    before = os.getpriority(os.PRIO_PROCESS, 0)
    clients = ClientThread(niceness=before + 5)
    try:
        async def where() -> tuple[int, int]:
            await asyncio.sleep(0)
            return threading.get_native_id(), thread_niceness(threading.get_native_id())

        native_id, niceness = clients.run(where())
        assert native_id != threading.get_native_id()
        assert niceness == min(before + 5, 19)
        assert thread_niceness(threading.get_native_id()) == before  # the caller's priority is untouched
    finally:
        clients.close()
    assert not clients.thread.is_alive()
