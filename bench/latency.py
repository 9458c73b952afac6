"""Progress latency: from the diffusion callback firing (server) to each /ws client having the message.

The server runs with the bench-only hooks of `bench.hooked_server` (callback `perf_counter` per seq); the
clients stamp `perf_counter` as the bytes arrive. Same machine, same CLOCK_MONOTONIC.
For each subscriber count: a long "blocker" job runs while every client subscribes to the measured
job, the blocker is cancelled, and the measured job runs with all of them watching.

    .venv/bin/python -m bench.latency [--smoke] [--model PATH]
"""
from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import httpx

from .common import Context, Row, Server, job_body, percentile, raise_open_files
from .ws_client import WsClient, connect_many, post_job, subscribe_all, wait_terminals

TARGETS_MS = {100: 20.0, 1000: 100.0}
# With 100 subscribers one step is 1/30 of a job's samples: a single late step (the machine is shared)
# would be the whole p99 of one job. Three jobs per figure make p99 a statistic over 90 steps.
JOBS_PER_MEASUREMENT = 3


def progress_latencies(clients: list[WsClient], session_ids: list[str], stamps: dict) -> tuple[list[float], int]:
    """Milliseconds from callback to arrival for every progress message of the jobs any client got,
    and how many progress messages the server published for them."""
    wanted = set(session_ids)
    fired = {(sid, seq): t for sid, seq, _step, t, _published in stamps["progress"] if sid in wanted}
    latencies = []
    for client in clients:
        for arrived, text in client.messages:
            if '"generation_progress"' in text:
                message = json.loads(text)
                key = (message.get("session_id"), message["seq"])
                if key in fired:
                    latencies.append((arrived - fired[key]) * 1000)
    return latencies, len(fired)


async def measure(server: Server, count: int, steps: int, deflate: bool = False, jobs: int = 1) -> dict[str, Any]:
    """`jobs` jobs run back to back while `count` clients watch all of them; latencies are pooled."""
    clients: list[WsClient] = await connect_many(server.port, count, deflate=deflate)
    try:
        blocker = await post_job(server.base_url, job_body(150, seed=1))
        measured = [await post_job(server.base_url, job_body(steps, seed=2 + index)) for index in range(jobs)]
        await subscribe_all(clients, measured)
        runtime = await asyncio.to_thread(server.runtime)
        async with httpx.AsyncClient(base_url=server.base_url) as http:
            (await http.post(f"/api/jobs/{blocker}/cancel")).raise_for_status()
        cpu_before, began = server.cpu_wait_ms(), time.perf_counter()
        await wait_terminals(clients, measured)
        cpu_after, wall = server.cpu_wait_ms(), (time.perf_counter() - began) * 1000
    finally:
        for client in clients:
            client.close()
    stamps = await asyncio.to_thread(server.stamps)
    latencies, published = progress_latencies(clients, measured, stamps)
    progress = [row for row in stamps["progress"] if row[0] in measured]
    job_began = min(fired for _sid, _seq, _step, fired, _published in progress)
    collections = [pause for began, pause, _generation in stamps["gc"] if began >= job_began]
    received = len(latencies)
    loop_cpu_ms = cpu_after["event loop"][0] - cpu_before["event loop"][0]
    return {
        "p50": percentile(latencies, 50),
        "p99": percentile(latencies, 99),
        "max": max(latencies),
        "delivered": received / (published * count),
        "published": published / jobs,
        "loop_ran": loop_cpu_ms / wall,
        "loop_waited": (cpu_after["event loop"][1] - cpu_before["event loop"][1]) / wall,
        "protocols": runtime["protocols"],
        "gc_threshold": runtime["gc_threshold"],
        "longest_gc_ms": max(collections, default=0.0),
        "loop_us_per_message": 1000 * loop_cpu_ms / max(received, 1),
    }


def run(ctx: Context, server: Server) -> list[Row]:
    counts = [1, 5] if ctx.smoke else [1, 100, 1000]
    steps = 6 if ctx.smoke else 30
    raise_open_files(max(counts) * 2 + 256)
    rows: list[Row] = []
    jobs = 1 if ctx.smoke else JOBS_PER_MEASUREMENT
    asyncio.run(measure(server, 1, 2))  # warm-up: first pipeline call, first connections
    conditions = [(n, False) for n in counts] + ([] if ctx.smoke else [(100, True), (1000, True)])
    protocols: dict[str, int] = {}
    gc_threshold: list[int] = []
    for count, deflate in conditions:
        result = asyncio.run(measure(server, count, steps, deflate, jobs))
        protocols, gc_threshold = result["protocols"], result["gc_threshold"]
        label = f"{count} subscriber{'s' if count > 1 else ''}" + (" (permessage-deflate)" if deflate else "")
        target = TARGETS_MS.get(count) if not deflate else None
        for key in ("p50", "p99", "max"):
            is_target = key == "p99" and target is not None
            rows.append(
                Row(
                    "progress latency", f"{label}: {key}", round(result[key], 2), "ms",
                    f"≤ {target:g} ms" if is_target else "",
                    (result[key] <= target) if is_target else None,
                )
            )
        rows.append(
            Row("progress latency", f"{label}: progress messages delivered (rest coalesced)",
                round(100 * result["delivered"], 1), "%",
                note=f"{result['published']:.1f} published per client and job")
        )
        rows.append(
            Row("progress latency", f"{label}: server event-loop thread on a CPU / waiting for one",
                f"{100 * result['loop_ran']:.0f} / {100 * result['loop_waited']:.0f}", "% of the job",
                note="runnable but not running = the machine's other load (/proc schedstat)")
        )
        rows.append(
            Row("progress latency", f"{label}: server event-loop CPU per progress message delivered",
                round(result["loop_us_per_message"], 1), "µs",
                note="all of the loop's work during the job, over the progress messages the clients got")
        )
        rows.append(
            Row("progress latency", f"{label}: server's longest garbage collection during the jobs",
                round(result["longest_gc_ms"], 1), "ms", note="the whole server pauses; 0 = none over 1 ms")
        )
    ctx.note("progress latency", f"{jobs} {steps}-step jobs back to back per figure, every client watching all "
             "of them; one client process on the same 2 cores as the server.")
    served_by = ", ".join(f"{name} × {count}" for name, count in sorted(protocols.items()))
    ctx.note("progress latency", f"uvicorn connections during the last measurement, by protocol class: {served_by}.")
    ctx.note("progress latency", f"Server's garbage-collector thresholds: {tuple(gc_threshold)} (app/web/idle_gc.py "
             "makes automatic full collections rarer and runs them while no job runs).")
    return rows


if __name__ == "__main__":
    import sys

    from .run import main

    sys.exit(main(["--only", "latency", *sys.argv[1:]]))
