"""Fixtures of the UI tests: a simulated NiceGUI user on the real studio, and a browser for real servers."""
from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from nicegui import app
from nicegui.testing.user import User
from nicegui.testing.user_simulation import user_simulation

from app.engine import Engine

STUDIO_MAIN = Path(__file__).with_name("studio_main.py")
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"


@pytest.fixture
async def user(model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[User]:
    """A simulated user (no browser) on the studio with its own engine, data dir and the tiny model."""
    monkeypatch.setenv("AI_ARTIST_MODEL__BASE_MODEL", str(model_dir))
    monkeypatch.setenv("AI_ARTIST_MODEL__CPU_THREADS", "1")
    monkeypatch.setenv("AI_ARTIST_STORAGE__DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("AI_ARTIST_SERVER__ALLOWED_HOSTS", "test")  # the simulation asks for http://test/...
    async with user_simulation(main_file=STUDIO_MAIN) as simulated:
        yield simulated
        await _wait_until_idle(engine())


def engine() -> Engine:
    """The engine of the app the simulation runs."""
    return app.state.engine


async def _wait_until_idle(running: Engine) -> None:
    """Let a test's last job settle before the engine shuts down (a job stopped mid-write would log errors)."""
    for view in running.unfinished_jobs():
        try:
            running.cancel(view.session_id)
        except Exception:
            pass
    await asyncio.wait_for(running.wait_until_idle(), timeout=60)


@pytest.fixture
def artifacts() -> Iterator[Path]:
    ARTIFACTS.mkdir(exist_ok=True)
    yield ARTIFACTS
