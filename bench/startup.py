"""Start-up: `python -m app` process start to the first page (`GET /` 200) and to the model ready.

A fresh process each run, polled every 10 ms on loopback.

    .venv/bin/python -m bench.startup [--smoke] [--model PATH]
"""
from __future__ import annotations

import time

import httpx

from .common import Context, Row, Server, median


def one_start(ctx: Context, index: int) -> tuple[float, float]:
    server = Server(ctx.model, ctx.work / f"startup-{index}").start(wait=None)
    first_page = ready = None
    try:
        with httpx.Client(timeout=5) as http:
            deadline = time.monotonic() + 120
            while (first_page is None or ready is None) and time.monotonic() < deadline:
                if server.process is not None and server.process.poll() is not None:
                    raise RuntimeError(f"server exited:\n{server.output()}")
                try:
                    if first_page is None and http.get(f"{server.base_url}/").status_code == 200:
                        first_page = time.perf_counter() - server.started_at
                    if first_page is not None:
                        state = http.get(f"{server.base_url}/api/health").json()["model"]["state"]
                        if state == "ready":
                            ready = time.perf_counter() - server.started_at
                except httpx.HTTPError:
                    pass
                time.sleep(0.01)
    finally:
        server.stop()
    if first_page is None or ready is None:
        raise TimeoutError("the server did not serve its page and model in 120 s")
    return first_page, ready


def run(ctx: Context) -> list[Row]:
    runs = [one_start(ctx, i) for i in range(1 if ctx.smoke else 3)]
    page = median([p for p, _ in runs])
    ready = median([r for _, r in runs])
    return [
        Row("start-up", "process start → first page served (median)", round(page, 2), "s", "≤ 3 s", page <= 3,
            "runs: " + ", ".join(f"{p:.2f}" for p, _ in runs)),
        Row("start-up", "process start → model ready (median)", round(ready, 2), "s", "",
            None, "runs: " + ", ".join(f"{r:.2f}" for _, r in runs)),
    ]


if __name__ == "__main__":
    import sys

    from .run import main

    sys.exit(main(["--only", "startup", *sys.argv[1:]]))
