from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from app.tiny_models import build_tiny_pipeline
from tests.server_process import PROJECT_ROOT, ServerProcess

EMBEDDED_MODEL = PROJECT_ROOT / "assets" / "models" / "ai-artist-tiny"


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The shipped embedded model when present, else a tiny random SD pipeline built offline."""
    if (EMBEDDED_MODEL / "model_index.json").is_file():
        return EMBEDDED_MODEL
    return build_tiny_pipeline("sd", tmp_path_factory.mktemp("models") / "tiny-sd")


@pytest.fixture
def start_server(model_dir: Path, tmp_path: Path) -> Iterator[Callable[..., ServerProcess]]:
    """Factory: start a real server (own data dir unless given); every one started is stopped afterwards."""
    started: list[ServerProcess] = []

    def start(
        data_dir: Path | None = None,
        env: dict[str, str] | None = None,
        port: int | None = None,
        model: Path | str | None = None,
        **kwargs,
    ) -> ServerProcess:
        """`model` replaces the session's model_dir: another folder, a single file or a hub id."""
        server = ServerProcess(model or model_dir, data_dir or tmp_path / f"data-{len(started)}", env, port=port)
        started.append(server)
        return server.start(**kwargs)

    yield start
    for server in started:
        server.stop()


@pytest.fixture(scope="session")
def server(model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """One real server shared by the tests that don't need their own."""
    process = ServerProcess(model_dir, tmp_path_factory.mktemp("shared-server"))
    process.start()
    yield process
    process.stop()
