"""Capacity: 1,000 concurrent /ws connections subscribed to live jobs; every terminal message delivered
to every client; the server's RSS growth per connection.

Each variant gets a fresh `python -m app` (so freed memory of an earlier variant can't hide growth):
warm-up job, RSS, a long blocker job, the measured jobs queued, N connections each subscribed to every
measured job, RSS, the blocker cancelled, all jobs run to the end, RSS. Per connection = (highest RSS
with the connections open - RSS before) / N. Variants: plain connections (API clients) and connections
that negotiate permessage-deflate (what browsers and the `websockets` library ask for).

    .venv/bin/python -m bench.capacity [--smoke] [--model PATH]
"""
from __future__ import annotations

import asyncio
import time

import httpx

from .common import Context, Row, Server, job_body, raise_open_files
from .ws_client import connect_many, post_job, subscribe_all, wait_terminals


async def hold(server: Server, count: int, jobs: int, steps: int, deflate: bool) -> dict[str, float]:
    warm = await connect_many(server.port, 1, deflate=deflate)
    warm_id = await post_job(server.base_url, job_body(2, seed=1))
    await subscribe_all(warm, [warm_id])
    await wait_terminals(warm, [warm_id])
    warm[0].close()
    await asyncio.sleep(0.5)
    rss_before = server.rss_kb()
    blocker = await post_job(server.base_url, job_body(150, seed=2))
    ids = [await post_job(server.base_url, job_body(steps, seed=10 + i)) for i in range(jobs)]
    began = time.perf_counter()
    clients = await connect_many(server.port, count, deflate=deflate)
    connected = time.perf_counter() - began
    await subscribe_all(clients, ids)
    rss_open = server.rss_kb()
    async with httpx.AsyncClient(base_url=server.base_url) as http:
        (await http.post(f"/api/jobs/{blocker}/cancel")).raise_for_status()
    try:
        await wait_terminals(clients, ids, timeout=900)
    except asyncio.TimeoutError:
        pass
    rss_after = server.rss_kb()
    delivered = sum(len(client.terminals & set(ids)) for client in clients)
    for client in clients:
        client.close()
    return {
        "delivered": delivered,
        "expected": count * jobs,
        "per_connection": (max(rss_open, rss_after) - rss_before) / count,
        "rss_before": rss_before,
        "rss_peak": max(rss_open, rss_after),
        "connect_s": connected,
    }


def run(ctx: Context, server: Server | None = None) -> list[Row]:
    count = 20 if ctx.smoke else 1000
    jobs, steps = (1, 2) if ctx.smoke else (3, 10)
    limits = raise_open_files(count * 2 + 256)
    rows: list[Row] = []
    variants = [False] if ctx.smoke else [False, True]
    for deflate in variants:
        label = f"{count} connections" + (", permessage-deflate" if deflate else "")
        if server is not None:
            result = asyncio.run(hold(server, count, jobs, steps, deflate))
        else:
            with Server(ctx.model, ctx.work / f"capacity-{int(deflate)}").start() as fresh:
                fresh.wait_until(lambda h: h["model"]["state"] == "ready")
                result = asyncio.run(hold(fresh, count, jobs, steps, deflate))
        all_delivered = result["delivered"] == result["expected"]
        per_kb = result["per_connection"]
        rows += [
            Row("capacity", f"{label}: terminal messages delivered",
                f"{result['delivered']} / {result['expected']}", "", "all", all_delivered,
                f"{jobs} live jobs, every connection subscribed to each; connected in {result['connect_s']:.1f} s"),
            Row("capacity", f"{label}: server RSS per connection", round(per_kb, 1), "KB", "≤ 50 KB",
                per_kb <= 50, f"RSS {result['rss_before'] / 1024:.0f} → {result['rss_peak'] / 1024:.0f} MiB"),
        ]
    ctx.note("capacity", f"open-file limit in the bench process: soft {limits[0]}, hard {limits[1]} "
                         "(the server inherits it).")
    return rows


if __name__ == "__main__":
    import sys

    from .run import main

    sys.exit(main(["--only", "capacity", *sys.argv[1:]]))
