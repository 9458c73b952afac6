"""Slow clients: a client that stops reading must not delay the generation or the other clients.

Phase A: a job watched by normal clients. Phase B: the same job, the same clients, plus one client that
has stopped reading (small receive buffer, reading paused) and whose socket buffers are already
full (it asked for replays of a finished job without reading them): its outbox may only grow by the coalesced progress slot and the milestones. After the job the
stalled client reads again: it gets the terminal message and fewer progress messages than were
published (coalesced, latest wins). Phase C: the stalled client keeps asking (subscribe requests, each
answered with two messages) without reading until its outbox overflows; when it reads again it finds the close frame, 1013 with the reason.
The server is the hooked one (`/bench/outboxes` shows each connection's waiting messages).

    .venv/bin/python -m bench.slow_client [--smoke] [--model PATH]
"""
from __future__ import annotations

import asyncio
import json

import httpx

from .common import Context, Row, Server, job_body, percentile
from .latency import progress_latencies
from .ws_client import WsClient, connect_many, post_job, subscribe_all, wait_terminals


async def outbox_of(http: httpx.AsyncClient, session_id: str) -> dict | None:
    boxes = (await http.get("/bench/outboxes")).json()
    mine = [box for box in boxes if session_id in box["sessions"]]
    return max(mine, key=lambda box: box["pending"]) if mine else None


async def watched_job(server: Server, clients: list[WsClient], steps: int, seed: int,
                      stalled: WsClient | None, http: httpx.AsyncClient) -> dict:
    session_id = await post_job(server.base_url, job_body(steps, seed))
    await subscribe_all(clients, [session_id])
    if stalled is not None:
        stalled.subscribe(session_id)
    peak = 0
    waiting = asyncio.ensure_future(wait_terminals(clients, [session_id]))
    while not waiting.done():
        if stalled is not None:
            box = await outbox_of(http, session_id)
            peak = max(peak, box["pending"] if box else 0)
        await asyncio.sleep(0.05)
    await waiting
    stamps = (await http.get("/bench/stamps")).json()
    entered, left = stamps["generate"][-1]
    latencies, published = progress_latencies(clients, [session_id], stamps)
    for client in clients:
        client.messages.clear()
    return {"session": session_id, "generation": left - entered, "p99": percentile(latencies, 99),
            "max": max(latencies), "published": published, "peak": peak}


async def scenario(server: Server, normal: int, steps: int) -> tuple[dict, dict, dict]:
    async with httpx.AsyncClient(base_url=server.base_url, timeout=60) as http:
        clients = await connect_many(server.port, normal)
        await watched_job(server, clients, 2, 1, None, http)  # warm-up
        before = await watched_job(server, clients, steps, 7, None, http)

        stalled = await WsClient.connect(server.port, rcvbuf=4096)
        stalled.pause()
        # Fill the stalled connection's socket buffers: each subscribe to a finished job replays its
        # generation_complete (~0.7 KB), so the buffers fill quickly; stop once messages wait in its outbox.
        probe = await post_job(server.base_url, job_body(1, seed=3))
        while (await http.get(f"/api/jobs/{probe}")).json()["status"] != "completed":
            await asyncio.sleep(0.05)
        requests, blocked_at = 0, None
        while requests < 100_000:
            for _ in range(100):
                stalled.subscribe(probe)
            requests += 100
            await asyncio.sleep(0.02)
            box = await outbox_of(http, probe)
            if box is not None and box["pending"] > 50:
                blocked_at = box["pending"]
                break
        during = await watched_job(server, clients, steps, 7, stalled, http)
        during["prefill"], during["blocked_at"] = requests, blocked_at

        stalled.resume()
        await stalled.wait_for(lambda: during["session"] in stalled.terminals, 60)
        mine = [json.loads(t) for _, t in stalled.messages if during["session"] in t]
        mine = [m for m in mine if m.get("session_id") == during["session"] and "seq" in m]
        resumed = {
            "progress": sum(m["type"] == "generation_progress" for m in mine),
            "terminal_last": bool(mine) and mine[-1]["type"] == "generation_complete",
            "seq_ordered": [m["seq"] for m in mine] == sorted(m["seq"] for m in mine),
        }

        stalled.pause()
        flood = 0
        while flood < 400_000:
            for _ in range(200):
                stalled.subscribe(probe)
            flood += 200
            await asyncio.sleep(0.02)
            box = await outbox_of(http, probe)
            if box is None or box["closed"]:
                break
        stalled.resume()
        try:
            await asyncio.wait_for(stalled.closed, 60)
        except asyncio.TimeoutError:
            pass
        resumed.update(flood=flood, code=stalled.close_code, reason=stalled.close_reason)
        stalled.close()
        for client in clients:
            client.close()
    return before, during, resumed


def run(ctx: Context, server: Server) -> list[Row]:
    normal = 3 if ctx.smoke else 10
    steps = 6 if ctx.smoke else 30
    before, during, resumed = asyncio.run(scenario(server, normal, steps))
    ratio = during["generation"] / before["generation"]
    rows = [
        Row("slow client", "generation time: without / with a stalled client",
            f"{before['generation']:.3f} / {during['generation']:.3f}", "s", note=f"ratio {ratio:.3f}"),
        Row("slow client", "other clients' progress latency p99: without / with",
            f"{before['p99']:.2f} / {during['p99']:.2f}", "ms",
            note=f"max {before['max']:.2f} / {during['max']:.2f} ms; {normal} clients"),
        Row("slow client", "stalled client's outbox, most messages waiting during the job",
            during["peak"], "msgs",
            note=f"{during['blocked_at']} already waiting after {during['prefill']} unread replays; "
                 f"{during['published']} progress published"),
        Row("slow client", "stalled client after reading again: progress messages received",
            f"{resumed['progress']} of {during['published']}", "", note="coalesced, latest wins"),
        Row("slow client", "stalled client got the terminal message, last and in seq order",
            "yes" if resumed["terminal_last"] and resumed["seq_ordered"] else "NO", ""),
        Row("slow client", "client too far behind: close code and reason",
            f"{resumed['code']} “{resumed['reason']}”", "",
            note=f"after {resumed['flood']} more requests whose answers it did not read"),
    ]
    return rows


if __name__ == "__main__":
    import sys

    from .run import main

    sys.exit(main(["--only", "slow_client", *sys.argv[1:]]))
