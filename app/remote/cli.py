"""`python -m app worker --redis URL [--device cuda:0] [--model ID] [--name NAME]` (also `ai-artist worker`)."""
from __future__ import annotations

import argparse
import asyncio
import logging
import os
import socket
import sys
from pathlib import Path

from ..config import ConfigError, load_config


def parse_worker_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="ai-artist worker", description="A generation worker that takes jobs from a server's Redis queue."
    )
    parser.add_argument("--redis", required=True, metavar="URL", help="the server's Redis, e.g. redis://host:6379/0")
    parser.add_argument("--device", default=None, help="cpu, cuda, cuda:1, mps (default from config: model.device)")
    parser.add_argument("--model", default=None, help="model to load: local folder, hub id or .safetensors file")
    parser.add_argument("--name", default=None, help="how the server lists it (default: <host>-<pid>)")
    parser.add_argument("--config", type=Path, default=None, help="config file for model options and timeouts")
    return parser.parse_args(argv)


def main(argv: list[str]) -> None:
    args = parse_worker_args(argv)
    try:
        settings = load_config(args.config)
        if args.model is not None:
            settings.model.base_model = args.model
            settings.model.base_model = settings.resolved_model(Path.cwd())
    except (ConfigError, ValueError) as error:
        sys.exit(f"ai-artist worker: {error}")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    from ..pipeline.client import ModelLoadFailed
    from .worker import RemoteWorker

    name = args.name or f"{socket.gethostname()}-{os.getpid()}"
    worker = RemoteWorker(
        args.redis, settings.model, name, settings.queue.heartbeat_timeout, settings.model.lora_dir,
        device=args.device,  # any torch device (cuda:1...), not only model.device's choices
    )
    try:
        asyncio.run(worker.run())
    except ModelLoadFailed as error:
        sys.exit(f"ai-artist worker: the model could not be loaded: {error}")
