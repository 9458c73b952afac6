"""`python -m app` / `ai-artist`: parse flags, load config, serve the studio, REST and /ws; or, as
`python -m app worker --redis URL`, run a remote worker (app/remote/cli.py)."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .config import ConfigError, check_workers, load_config


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="ai-artist", description="AI Artist: image-generation studio and API.")
    parser.add_argument("--config", type=Path, default=None, help="config file (default: config.yaml of the project)")
    parser.add_argument("--host", default=None, help="interface to listen on (default from config: 127.0.0.1)")
    parser.add_argument("--port", type=int, default=None, help="port to listen on (default from config: 8000)")
    parser.add_argument("--data-dir", type=Path, default=None, help="where images, the database and logs go")
    parser.add_argument("--model", default=None, help="model to load: local folder, hub id or .safetensors file")
    parser.add_argument("--workers", type=int, default=None, metavar="N",
                        help="generation processes in this server (workers.local; 0: remote workers only)")
    parser.add_argument("--redis", default=None, metavar="URL",
                        help="queue jobs in Redis (queue.backend redis) at URL, e.g. redis://host:6379/0")
    parser.add_argument("--api-key", action="append", default=None, metavar="KEY",
                        help="require this key (repeatable; adds to server.api_keys)")
    parser.add_argument("--no-auth", action="store_true",
                        help="on a non-loopback host with no key, serve without one (default: a key is generated)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["worker"]:  # a worker on another machine: no web server, no database
        from .remote.cli import main as worker_main

        worker_main(argv[1:])
        return
    args = parse_args(argv)
    try:
        settings = load_config(args.config)
        if args.host is not None:
            settings.server.host = args.host
        if args.port is not None:
            settings.server.port = args.port
        if args.data_dir is not None:
            settings.storage.data_dir = args.data_dir
        if args.api_key:
            settings.server.api_keys = [*settings.server.api_keys, *args.api_key]
        if args.no_auth:
            settings.server.no_auth = True
        if args.model is not None:  # a relative path is relative to where the command runs
            settings.model.base_model = args.model
            settings.model.base_model = settings.resolved_model(Path.cwd())
        if args.workers is not None:
            settings.workers.local = args.workers
        if args.redis is not None:
            settings.queue.backend, settings.queue.redis_url = "redis", args.redis
        check_workers(settings, "the flags")
    except (ConfigError, ValueError) as error:
        sys.exit(f"ai-artist: {error}")
    from .web.server import run

    run(settings)


if __name__ == "__main__":  # not "__mp_main__": the generation process must not run the app
    main()
