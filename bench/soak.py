"""Soak: continuous jobs for a while with /ws clients that connect, subscribe, drop and resume with `after_seq`.

A producer keeps two jobs waiting (2–6 steps each); every client follows most new jobs, drops its socket every
5–20 s (abruptly or cleanly), reconnects and subscribes again with the last `seq` it saw, and sometimes leaves a
job (unsubscribes: not expected to see its end). At the end every job a client still follows must have
reached a terminal message for it. The server's and the generation process's RSS and open file descriptors
are sampled every few seconds; growth = median of the last fifth of the run over the median of the fifth after
warm-up (the first quarter). The server's log must hold no unretrieved-task or exception lines.

    .venv/bin/python -m bench.soak [--duration 600] [--clients 6] [--model PATH]   # upserts its rows

`tests/test_soak.py` runs the same for about two minutes.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import random
import re
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import websockets

TERMINAL = ("generation_complete", "generation_error", "generation_cancelled")
LOG_PROBLEMS = re.compile(r"Task exception was never retrieved|Traceback|Exception in |exception was never|\bERROR\b")


@dataclass
class SoakReport:
    seconds: float = 0.0
    jobs: list[str] = field(default_factory=list)
    completed: int = 0
    connections: int = 0
    drops: int = 0
    resumed_with_after_seq: int = 0
    followed: int = 0
    left: int = 0
    messages: int = 0
    missing: list[tuple[int, str]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    samples: list[dict[str, float]] = field(default_factory=list)
    log_problems: list[str] = field(default_factory=list)

    def growth(self, key: str) -> float:
        """Percent growth of `key`: median of the last fifth over the median of the fifth after warm-up."""
        values = [sample[key] for sample in self.samples if key in sample]
        if len(values) < 10:
            return 0.0
        start = len(values) // 4
        fifth = max(len(values) // 5, 2)
        base = statistics.median(values[start:start + fifth])
        return round(100 * (statistics.median(values[-fifth:]) - base) / base, 1) if base else 0.0

    def figures(self) -> dict[str, float]:
        return {key: self.growth(key) for key in ("server_rss_kb", "server_fds", "worker_rss_kb", "worker_fds")}


def process_figures(pid: int, prefix: str) -> dict[str, float]:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
        rss = int(re.search(r"VmRSS:\s+(\d+)", status).group(1))
        return {f"{prefix}_rss_kb": rss, f"{prefix}_fds": len(list(Path(f"/proc/{pid}/fd").iterdir()))}
    except (OSError, AttributeError):
        return {}


class Follower:
    """One /ws client: follows jobs across reconnects, resuming each with the last seq it saw."""

    def __init__(self, index: int, ws_url: str, report: SoakReport, rng: random.Random) -> None:
        self.index, self.ws_url, self.report, self.rng = index, ws_url, report, rng
        self.following: dict[str, int] = {}
        self.seen_jobs = 0
        self.socket = None

    async def connect(self) -> None:
        self.socket = await websockets.connect(self.ws_url, max_size=None, open_timeout=60)
        self.report.connections += 1
        for session_id, last_seq in self.following.items():
            await self.subscribe(session_id, last_seq)
            self.report.resumed_with_after_seq += last_seq > 0

    async def subscribe(self, session_id: str, after_seq: int = 0) -> None:
        await self.socket.send(json.dumps({"type": "subscribe", "session_id": session_id, "after_seq": after_seq}))

    async def take_new_jobs(self) -> None:
        for session_id in self.report.jobs[self.seen_jobs:]:
            if self.rng.random() < 0.8:
                self.following[session_id] = 0
                self.report.followed += 1
                await self.subscribe(session_id)
        self.seen_jobs = len(self.report.jobs)

    async def handle(self, message: dict) -> None:
        self.report.messages += 1
        session_id = message.get("session_id")
        if message["type"] == "error":
            self.report.errors.append(f"client {self.index}: {message['error']}")
        if session_id not in self.following:
            return
        if "seq" in message:
            self.following[session_id] = max(self.following[session_id], message["seq"])
        if message["type"] in TERMINAL:
            del self.following[session_id]
            self.report.completed += message["type"] == "generation_complete"
            await self.socket.send(json.dumps({"type": "unsubscribe", "session_id": session_id}))
        elif message["type"] == "generation_progress" and self.rng.random() < 0.01:  # leaves this job
            del self.following[session_id]
            self.report.left += 1
            await self.socket.send(json.dumps({"type": "unsubscribe", "session_id": session_id}))

    async def run(self, stopping: asyncio.Event, final_deadline: Callable[[], float]) -> None:
        while True:
            await self.connect()
            lives_until = time.monotonic() + self.rng.uniform(5, 20)
            while time.monotonic() < lives_until:
                if stopping.is_set() and (not self.following or time.monotonic() > final_deadline()):
                    await self.socket.close()
                    return
                await self.take_new_jobs()
                try:
                    raw = await asyncio.wait_for(self.socket.recv(), 0.5)
                except TimeoutError:
                    continue
                await self.handle(json.loads(raw))
            self.report.drops += 1
            if self.rng.random() < 0.5:
                self.socket.transport.abort()  # as a lost network would: no close frame
            else:
                await self.socket.close()


async def produce(base_url: str, report: SoakReport, until: float, rng: random.Random) -> None:
    async with httpx.AsyncClient(base_url=base_url, timeout=60) as http:
        while time.monotonic() < until:
            health = (await http.get("/api/health")).json()
            if health["queue"]["pending"] < 2:
                body = {"prompt": f"soak {len(report.jobs)}", "num_inference_steps": rng.randint(2, 6),
                        "width": 64, "height": 64, "seed": len(report.jobs)}
                answer = await http.post("/api/generate", json=body)
                answer.raise_for_status()
                report.jobs.append(answer.json()["session_id"])
            await asyncio.sleep(0.2)


async def sample(base_url: str, server_pid: int, report: SoakReport, stopping: asyncio.Event, every: float) -> None:
    async with httpx.AsyncClient(base_url=base_url, timeout=60) as http:
        while not stopping.is_set():
            worker_pid = (await http.get("/api/health")).json()["model"].get("process_id")
            figures = {"t": time.monotonic(), **process_figures(server_pid, "server")}
            if worker_pid:
                figures.update(process_figures(worker_pid, "worker"))
            report.samples.append(figures)
            try:
                await asyncio.wait_for(stopping.wait(), every)
            except TimeoutError:
                pass


async def soak(base_url: str, server_pid: int, logs: list[Path], seconds: float, clients: int = 6,
               seed: int = 15, sample_every: float = 3.0) -> SoakReport:
    report = SoakReport()
    rng = random.Random(seed)
    ws_url = base_url.replace("http://", "ws://") + "/ws"
    began = time.monotonic()
    stopping = asyncio.Event()
    followers = [Follower(i, ws_url, report, random.Random(seed + i)) for i in range(clients)]
    final = began + seconds + 180
    tasks = [asyncio.create_task(f.run(stopping, lambda: final)) for f in followers]
    sampler = asyncio.create_task(sample(base_url, server_pid, report, stopping, sample_every))
    await produce(base_url, report, began + seconds, rng)
    stopping.set()
    await asyncio.gather(*tasks)
    await sampler
    report.seconds = time.monotonic() - began
    report.missing = [(f.index, session_id) for f in followers for session_id in f.following]
    for log in logs:
        if log.exists():
            report.log_problems += [line for line in log.read_text(errors="replace").splitlines()
                                    if LOG_PROBLEMS.search(line)]
    return report


def rows(report: SoakReport) -> list:
    from .common import Row

    growth = report.figures()
    minutes = report.seconds / 60
    return [
        Row("soak", f"{minutes:.1f} min: jobs run / followed (client, job) pairs / left on purpose",
            f"{len(report.jobs)} / {report.followed} / {report.left}", "",
            note=f"{report.connections} connections, {report.drops} drops, "
                 f"{report.resumed_with_after_seq} resumes with after_seq > 0, {report.messages} messages"),
        Row("soak", "followed jobs without a terminal message", len(report.missing), "", "0", not report.missing),
        Row("soak", "server RSS / open fds growth after warm-up", f"{growth['server_rss_kb']} / {growth['server_fds']}",
            "%", "≤ 10 %", max(growth["server_rss_kb"], growth["server_fds"]) <= 10),
        Row("soak", "generation process RSS / open fds growth after warm-up",
            f"{growth['worker_rss_kb']} / {growth['worker_fds']}", "%", "≤ 10 %",
            max(growth["worker_rss_kb"], growth["worker_fds"]) <= 10),
        Row("soak", "unretrieved-task / exception lines in the log", len(report.log_problems), "", "0",
            not report.log_problems),
    ]


def run(ctx, seconds: float | None = None) -> list:
    from .common import Server

    duration = seconds or (20 if ctx.smoke else 600)
    with Server(ctx.model, ctx.work / "soak").start() as server:
        logs = [server.data_dir / "logs" / "ai-artist.log", server.data_dir / "server-output.log"]
        report = asyncio.run(soak(server.base_url, server.process.pid, logs, duration))
    ctx.note("soak", f"{duration:.0f} s of continuous jobs, 6 /ws clients dropping every 5–20 s and resuming "
                     "with after_seq; RSS/fds sampled every 3 s, warm-up = the first quarter.")
    return rows(report)


def upsert(rows_: list, path: Path) -> None:
    """Put the soak rows into the table of docs/benchmarks.md in place of any earlier ones."""
    from .run import _cell

    lines = [line for line in path.read_text().splitlines() if not line.startswith("| soak |")]
    last = max(i for i, line in enumerate(lines) if line.startswith("| "))
    new = [f"| {' | '.join(_cell(v) for v in (r.bench, r.metric, r.value, r.unit, r.target))} | "
           f"{'' if r.met is None else ('✅ met' if r.met else '❌ missed')} | {_cell(r.note)} |" for r in rows_]
    path.write_text("\n".join(lines[:last + 1] + new + lines[last + 1:]) + "\n")


if __name__ == "__main__":
    from .common import PROJECT_ROOT, WORK_ROOT, Context, default_model

    parser = argparse.ArgumentParser(prog="python -m bench.soak", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=float, default=600, help="seconds of jobs (default 600)")
    parser.add_argument("--model", type=Path, default=None)
    parser.add_argument("--out", type=Path, default=PROJECT_ROOT / "docs" / "benchmarks.md")
    args = parser.parse_args()
    context = Context(model=(args.model or default_model()).resolve(), smoke=False, work=WORK_ROOT / "soak-run")
    context.work.mkdir(parents=True, exist_ok=True)
    measured = run(context, args.duration)
    for row in measured:
        print(row)
    upsert(measured, args.out)
