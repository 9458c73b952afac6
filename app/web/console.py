"""What the server tells the person who launched it, and where everything else goes.

The console shows a few lines an artist needs: where the studio is, which model loads on which device,
when it is ready (or why it failed), and any warning or error. Every log line, these included, goes to
`<data_dir>/logs/ai-artist.log`, where the generation process writes its own output too.
"""
from __future__ import annotations

import logging
import socket
from pathlib import Path

from ..config import Settings, log_file_in
from ..engine import Engine
from ..engine.events import ModelChanged, ModelEvent
from ..pipeline.values import display_name
from .auth import generate_key
from .origins import is_loopback

launch_log = logging.getLogger("app.launch")
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class ForTheArtist(logging.Filter):
    """The launch lines, and warnings or worse from anywhere."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.name == launch_log.name or record.levelno >= logging.WARNING


def configure_logging(data_dir: Path) -> Path:
    log_file = log_file_in(data_dir)
    log_file.parent.mkdir(parents=True, exist_ok=True)
    file_handler = logging.FileHandler(log_file)
    file_handler.setFormatter(logging.Formatter(LOG_FORMAT))
    console = logging.StreamHandler()
    console.setFormatter(logging.Formatter("%(message)s"))
    console.addFilter(ForTheArtist())
    root = logging.getLogger()
    root.setLevel(logging.INFO)
    root.addHandler(file_handler)
    root.addHandler(console)
    return log_file


def studio_urls(host: str, port: int) -> list[str]:
    if host in ("0.0.0.0", "::", ""):
        return [f"http://127.0.0.1:{port}/", f"http://{socket.gethostname()}:{port}/"]
    shown = f"[{host}]" if ":" in host else host
    return [f"http://{shown}:{port}/"]


def announce_access(settings: Settings) -> str | None:
    """Off loopback with no key: generate one (returned, to be shown once) unless `server.no_auth`, which
    gets a warning line instead."""
    server = settings.server
    if server.api_keys or is_loopback(server.host):
        return None
    if server.no_auth:
        launch_log.warning("--no-auth: %s is served on %s without any key; anyone who can reach it can use it",
                           settings.server.title, server.host)
        return None
    key = generate_key()
    server.api_keys = [key]
    return key


def announce_launch(settings: Settings, log_file: Path, generated_key: str | None = None) -> None:
    model = settings.model
    urls = studio_urls(settings.server.host, settings.server.port)
    if generated_key is not None:  # printed once, to the console only: never into the log file
        print("No API key configured for a non-loopback host: generated one. Open the studio with it:", flush=True)
        print("  " + "  ".join(f"{url}?token={generated_key}" for url in urls), flush=True)
        print("(set server.api_keys or --api-key to choose your own; --no-auth to serve without one)", flush=True)
    else:
        launch_log.info("AI Artist studio: %s", "  ".join(urls))
    if settings.server.api_keys:
        launch_log.info("API keys required: %d configured", len(settings.server.api_keys))
    launch_log.info("Loading model %s on %s…", display_name(model.base_model), model.device)
    launch_log.info("Log file: %s", log_file)


def announce_model_changes(engine: Engine) -> None:
    """Say on the console when a model is ready or failed to load (a model listener of the bus)."""

    def on_model_event(event: ModelEvent) -> None:
        if not isinstance(event, ModelChanged) or event.state == "loading":
            return
        health = engine.health().model
        if event.state == "ready":
            launch_log.info("Model %s ready on %s.", display_name(event.model), health.device)
        else:
            launch_log.error("Model %s could not be loaded: %s", display_name(event.model), health.error)

    engine.events.add_model_listener(on_model_event)
