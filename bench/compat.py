"""Imitated APIs: what answering a blocking A1111 `txt2img` or OpenAI `generations` call adds to a job.

Sequential jobs of one small image each through `POST /sdapi/v1/txt2img`, `POST /v1/images/generations`
(b64_json and url) and, as the reference, `POST /api/generate` followed on /ws. Measured from the job's
terminal message being published in the hooked server (`perf_counter`) to the client having the whole
answer (for /ws: the `generation_complete` frame). Same machine, same CLOCK_MONOTONIC.

    .venv/bin/python -m bench.compat [--smoke] [--model PATH]
"""
from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

import httpx

from .common import PROMPT, Context, Row, Server, median
from .ws_client import WsClient, post_job, subscribe_all, wait_terminals

Call = Callable[[httpx.AsyncClient, int], Awaitable[None]]


async def a1111(http: httpx.AsyncClient, seed: int) -> None:
    body = {"prompt": PROMPT, "steps": 4, "seed": seed, "sampler_name": "Default"}
    (await http.post("/sdapi/v1/txt2img", json=body)).raise_for_status()


def openai(response_format: str) -> Call:
    async def call(http: httpx.AsyncClient, seed: int) -> None:
        body = {"prompt": PROMPT, "response_format": response_format}
        (await http.post("/v1/images/generations", json=body)).raise_for_status()

    return call


async def answer_after_end(server: Server, call: Call, jobs: int) -> list[float]:
    """Terminal published → answer received, in ms, per job."""
    after_end = []
    async with httpx.AsyncClient(base_url=server.base_url, timeout=300) as http:
        for index in range(jobs):
            known = len(server.stamps()["terminal"])
            await call(http, 700 + index)
            received = time.perf_counter()
            ((_sid, _seq, kind, published),) = server.stamps()["terminal"][known:]
            assert kind == "generation_complete", kind
            after_end.append((received - published) * 1000)
    return after_end


async def ws_reference(server: Server, jobs: int) -> list[float]:
    after_end = []
    watcher = await WsClient.connect(server.port)
    for index in range(jobs):
        session_id = await post_job(server.base_url, {"prompt": PROMPT, "num_inference_steps": 4, "seed": 700 + index})
        await subscribe_all([watcher], [session_id])
        await wait_terminals([watcher], [session_id])
        received = next(t for t, m in watcher.parsed() if m.get("session_id") == session_id
                        and m["type"] == "generation_complete")
        published = next(t for sid, _seq, _kind, t in server.stamps()["terminal"] if sid == session_id)
        after_end.append((received - published) * 1000)
    watcher.close()
    return after_end


def run(ctx: Context, server: Server) -> list[Row]:
    jobs = 1 if ctx.smoke else 15
    ctx.note("compat", f"{jobs} sequential jobs per API after one warm-up job each, one image at the model's "
             "native size (4 steps; OpenAI's API has no steps: the default 30). The answer carries the PNG as "
             "base64 (A1111, OpenAI b64_json) or its URL.")
    cases: list[tuple[str, Callable[[int], Awaitable[list[float]]]]] = [
        ("/api/generate + /ws generation_complete", lambda n: ws_reference(server, n)),
        ("A1111 txt2img (base64 PNG)", lambda n: answer_after_end(server, a1111, n)),
        ("OpenAI generations b64_json", lambda n: answer_after_end(server, openai("b64_json"), n)),
        ("OpenAI generations url", lambda n: answer_after_end(server, openai("url"), n)),
    ]
    rows = []
    for label, measure in cases:
        if not ctx.smoke:
            asyncio.run(measure(1))  # warm-up
        after_end = asyncio.run(measure(jobs))
        rows.append(Row("compat", f"{label}: terminal published → answer received, median / max",
                        f"{median(after_end):.2f} / {max(after_end):.2f}", "ms"))
    return rows


if __name__ == "__main__":
    import argparse

    from .common import default_model

    parser = argparse.ArgumentParser(prog="python -m bench.compat")
    parser.add_argument("--smoke", action="store_true")
    parser.add_argument("--model", default=None)
    args = parser.parse_args()
    from pathlib import Path

    from .common import WORK_ROOT

    context = Context(model=Path(args.model or default_model()).resolve(), smoke=args.smoke, work=WORK_ROOT / "compat")
    with Server(context.model, context.work / "server", hooked=True).start() as running:
        running.wait_until(lambda health: health["model"]["state"] == "ready")
        for row in run(context, running):
            print(f"{row.metric}: {row.value} {row.unit}")
