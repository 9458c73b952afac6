"""Queue: 20 jobs queued at once; the idle gap between one job's end and the next one's first step.

Measured in the hooked server: job end = the `generation_complete` being published; next start = the
pipeline being entered for the next job. Also the model's idle time: pipeline left -> next entered
(this one includes writing the PNG and the SQLite rows of the finished job).

    .venv/bin/python -m bench.queue_gap [--smoke] [--model PATH]
"""
from __future__ import annotations

import asyncio

import httpx

from .common import Context, Row, Server, job_body, median
from .ws_client import WsClient, subscribe_all, wait_terminals


async def queue_run(server: Server, jobs: int, steps: int) -> tuple[list[float], ...]:
    async with httpx.AsyncClient(base_url=server.base_url, timeout=60) as http:
        before = len((await http.get("/bench/stamps")).json()["generate"])
        ids = []
        for index in range(jobs):
            response = await http.post("/api/generate", json=job_body(steps, seed=500 + index))
            response.raise_for_status()
            ids.append(response.json()["session_id"])
        watcher = await WsClient.connect(server.port)
        await subscribe_all([watcher], ids)
        await wait_terminals([watcher], ids)
        watcher.close()
        stamps = (await http.get("/bench/stamps")).json()
    generate = stamps["generate"][before:]
    ends = {sid: t for sid, _seq, kind, t in stamps["terminal"] if kind == "generation_complete"}
    ended = [ends[sid] for sid in ids]
    starts = {sid: t for sid, t in stamps["started"]}
    gaps = [(generate[i + 1][0] - ended[i]) * 1000 for i in range(jobs - 1)]
    idle = [(generate[i + 1][0] - generate[i][1]) * 1000 for i in range(jobs - 1)]
    to_started = [(starts[ids[i + 1]] - ended[i]) * 1000 for i in range(jobs - 1)]
    to_thread = [(generate[i + 1][0] - starts[ids[i + 1]]) * 1000 for i in range(jobs - 1)]
    return gaps, idle, to_started, to_thread


def run(ctx: Context, server: Server) -> list[Row]:
    jobs = 3 if ctx.smoke else 20
    steps = 2 if ctx.smoke else 4
    gaps, idle, to_started, to_thread = asyncio.run(queue_run(server, jobs, steps))
    target = 10.0
    return [
        Row("queue", f"{jobs} queued jobs: complete published → next pipeline entered, median",
            round(median(gaps), 2), "ms"),
        Row("queue", f"{jobs} queued jobs: complete published → next pipeline entered, max",
            round(max(gaps), 2), "ms", f"≤ {target:g} ms", max(gaps) <= target),
        Row("queue", "… of which complete published → next generation_started published, median / max",
            f"{median(to_started):.2f} / {max(to_started):.2f}", "ms", note="the worker loop on the event loop"),
        Row("queue", "… of which generation_started published → pipeline entered in the generation process, "
            "median / max", f"{median(to_thread):.2f} / {max(to_thread):.2f}", "ms",
            note="hand-off to the generation process over its pipe"),
        Row("queue", "model idle between jobs (pipeline left → next entered, incl. PNG + SQLite), median / max",
            f"{median(idle):.2f} / {max(idle):.2f}", "ms"),
    ]


if __name__ == "__main__":
    import sys

    from .run import main

    sys.exit(main(["--only", "queue_gap", *sys.argv[1:]]))
