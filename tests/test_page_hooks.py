"""Page hooks run one page per loop turn, and the loop serves what fell due between two pages."""
from __future__ import annotations

import asyncio

import pytest
from nicegui import core

from app.ui.live_jobs import Hooks


async def test_timers_due_after_one_page_run_before_the_next_page(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(core, "loop", asyncio.get_running_loop())
    order: list[str] = []
    done = asyncio.Event()
    hooks: Hooks[str] = Hooks()

    def page(name: str):
        def hook(_argument: str) -> None:
            order.append(name)
            # a timer that is due at once: a socket or the loop probe waiting while this page builds
            asyncio.get_running_loop().call_later(0, order.append, f"timer after {name}")
            if len([entry for entry in order if not entry.startswith("timer")]) == 2:
                asyncio.get_running_loop().call_later(0, done.set)
        return hook

    for name in ("page A", "page B"):
        hooks.add(page(name))
    hooks.call("a new job")
    await done.wait()
    await asyncio.sleep(0)
    first, second = (entry for entry in order if not entry.startswith("timer"))
    assert order[:3] == [first, f"timer after {first}", second]


async def test_a_failing_page_does_not_stop_the_others(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(core, "loop", asyncio.get_running_loop())
    reached = asyncio.Event()
    hooks: Hooks[str] = Hooks()

    def broken(_argument: str) -> None:
        raise RuntimeError("this page broke")

    hooks.add(broken)
    hooks.add(lambda _argument: reached.set())
    hooks.call("a new job")
    await asyncio.wait_for(reached.wait(), 10)
