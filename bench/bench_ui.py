"""How the studio costs the server while tabs watch a job: the event loop's longest stall, and socket traffic.

    .venv/bin/python bench/bench_ui.py [--tabs 5] [--steps 30] [--model DIR]

Starts the real app in a child process (this file with --serve: `app.web.server.build` plus a loop-lag probe
at /bench/loop), opens N studio tabs in chromium, submits one job over REST with previews on, and waits
until every tab shows the image. It prints, for 0 tabs and for N tabs: the longest event-loop stall and
the 99th percentile of stalls while the job ran (a 5 ms probe measures how late it wakes), and per tab
the NiceGUI socket traffic (bytes received over /_nicegui_ws) for the job and per step.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx

PROJECT_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(PROJECT_ROOT))

PROBE_INTERVAL = 0.005
CHROMIUM_ARGS = ["--no-sandbox", "--disable-background-networking", "--disable-component-update", "--no-first-run", "--disable-gpu"]


# --------------------------------------------------------------------------- the server side (child)


@dataclass
class LoopProbe:
    """Wakes every 5 ms and records how late it woke: the event loop's stalls."""

    stalls_ms: list[float] = field(default_factory=list)
    busy_ms: list[float] = field(default_factory=list)
    events: dict[str, int] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)

    def count(self, kind: str) -> None:
        self.events[kind] = self.events.get(kind, 0) + 1

    def watch_gc(self) -> None:
        """Record the longest garbage collection (a pause of the whole interpreter)."""
        import gc

        started = [0.0]

        def on_gc(phase: str, info: dict) -> None:
            if phase == "start":
                started[0] = time.perf_counter()
            else:
                key = f"gc_gen{info['generation']}_max_ms"
                self.timings[key] = max(self.timings.get(key, 0.0), (time.perf_counter() - started[0]) * 1000)
                self.count(f"gc_gen{info['generation']}")

        gc.callbacks.append(on_gc)

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        schedstat = Path("/proc/thread-self/schedstat")
        while True:
            started, cpu_started = loop.time(), time.thread_time()
            waited_before = int(schedstat.read_text().split()[1]) if schedstat.exists() else 0
            await asyncio.sleep(PROBE_INTERVAL)
            stall = max(0.0, (loop.time() - started - PROBE_INTERVAL) * 1000)
            self.stalls_ms.append(stall)
            # CPU the loop's own thread burned meanwhile: the part of a stall that is the loop's work,
            # as opposed to waiting for a core (runnable, not running) or being blocked (I/O, a lock).
            busy = (time.thread_time() - cpu_started) * 1000
            self.busy_ms.append(busy)
            if schedstat.exists() and stall >= self.timings.get("longest_stall_ms", 0.0):
                self.timings["longest_stall_ms"] = stall
                waited = (int(schedstat.read_text().split()[1]) - waited_before) / 1e6
                self.timings["longest_stall_cpu_ms"] = busy
                self.timings["longest_stall_runqueue_ms"] = waited
                self.timings["longest_stall_blocked_ms"] = stall + PROBE_INTERVAL * 1000 - busy - waited

    def report(self, reset: bool) -> dict[str, float | int]:
        samples = sorted(self.stalls_ms) or [0.0]
        over_20 = sum(1 for stall in samples if stall > 20)
        busy = sorted(self.busy_ms) or [0.0]
        report = {
            "busy_max_ms": busy[-1],
            "busy_p99_ms": busy[min(len(busy) - 1, int(len(busy) * 0.99))],
            "max_ms": samples[-1],
            "p99_ms": samples[min(len(samples) - 1, int(len(samples) * 0.99))],
            "samples": len(samples),
            "stalls_over_20_ms": over_20,
            "previews": self.events.get("generation_preview", 0),
            "progress_events": self.events.get("generation_progress", 0),
            **{f"{kind}_count": count for kind, count in self.events.items() if kind.startswith("gc_")},
            **{key: round(value, 2) for key, value in self.timings.items()},
        }
        if reset:
            self.stalls_ms.clear()
            self.busy_ms.clear()
            self.events.clear()
            self.timings.clear()
        return report


BUSY_MACHINE_WAIT_MS = 120_000  # a page of five tabs loads slowly on two busy cores: wait on it, generously


def report_slow_callbacks(threshold_ms: float) -> None:
    """asyncio's debug mode logs every callback or task step that ran longer than the threshold."""
    import logging

    loop = asyncio.get_running_loop()
    loop.set_debug(True)
    loop.slow_callback_duration = threshold_ms / 1000
    logging.getLogger("asyncio").addHandler(logging.StreamHandler())


def serve(port: int, data_dir: Path, model: str, switch_interval: float | None, slow_callback_ms: float | None) -> None:
    from nicegui import app as web_app
    from nicegui import background_tasks, ui

    from app.config import load_config
    from app.web.server import build

    if switch_interval:
        sys.setswitchinterval(switch_interval)
    settings = load_config()
    settings.server.port, settings.storage.data_dir, settings.model.base_model = port, data_dir, model
    settings.previews.enabled = True
    probe = LoopProbe()
    probe.watch_gc()
    instrument_live_jobs(probe)
    engine = build(settings)
    engine.events.add_global_listener(lambda event, _text: probe.count(event.type))
    web_app.on_startup(lambda: background_tasks.create(probe.run(), name="loop-probe"))
    if slow_callback_ms:
        web_app.on_startup(lambda: report_slow_callbacks(slow_callback_ms))

    @web_app.get("/bench/loop")
    async def loop_report(reset: bool = False) -> dict[str, float | int]:
        return probe.report(reset)

    ui.run(host="127.0.0.1", port=port, reload=False, show=False, show_welcome_message=False)


def instrument_live_jobs(probe: LoopProbe) -> None:
    """Time each bus event's trip through `LiveJobs` (binding propagation and page hooks included)."""
    from app.ui.live_jobs import Hooks, LiveJobs

    original = LiveJobs._on_event

    def timed(self: LiveJobs, event, text: str) -> None:
        started = time.perf_counter()
        original(self, event, text)
        elapsed = (time.perf_counter() - started) * 1000
        key = f"ui_{event.type}_max_ms"
        probe.timings[key] = max(probe.timings.get(key, 0.0), elapsed)

    LiveJobs._on_event = timed  # type: ignore[method-assign]
    original_run = Hooks.run

    def timed_hook(self: Hooks, hook, argument) -> None:
        started = time.perf_counter()
        original_run(self, hook, argument)
        elapsed = (time.perf_counter() - started) * 1000
        key = f"ui_hook_{getattr(hook, '__qualname__', 'hook')}_max_ms"
        probe.timings[key] = max(probe.timings.get(key, 0.0), elapsed)

    Hooks.run = timed_hook  # type: ignore[method-assign]


# --------------------------------------------------------------------------- the measuring side (parent)


def cpu_seconds_by_program() -> dict[str, float]:
    """CPU time (user + system) every process on the machine has used so far, summed by program:
    chromium, the AI Artist server, its generation process, Playwright's driver, and the rest."""
    tick = os.sysconf("SC_CLK_TCK")
    totals: dict[str, float] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if "chromium" in command or "chrome" in command:
            program = "chromium"
        elif "--serve" in command and "bench_ui.py" in command:
            program = "server"
        elif "multiprocessing" in command or "pipeline_imports" in command:
            program = "generation process"
        elif "playwright" in command or command.startswith("node") or "/node " in command:
            program = "playwright driver"
        else:
            program = "other (bench, system)"
        totals[program] = totals.get(program, 0.0) + (int(fields[11]) + int(fields[12])) / tick
    return totals


@dataclass
class Measurement:
    tabs: int
    steps: int
    seconds: float
    loop: dict[str, float]
    bytes_per_tab: list[int]
    frames_per_tab: list[int]
    frame_sizes: list[int]
    cpu_seconds: dict[str, float] = field(default_factory=dict)

    def row(self) -> str:
        per_tab = statistics.mean(self.bytes_per_tab) if self.bytes_per_tab else 0
        frames = statistics.mean(self.frames_per_tab) if self.frames_per_tab else 0
        step_frame = statistics.median(self.frame_sizes) if self.frame_sizes else 0
        return (
            f"| {self.tabs:>4} | {self.steps:>5} | {self.loop['previews']:>8} | {self.seconds:>5.1f} "
            f"| {self.loop['max_ms']:>12.1f} | {self.loop['p99_ms']:>6.1f} "
            f"| {self.loop['busy_max_ms']:>11.1f} | {self.loop['busy_p99_ms']:>11.1f} | {per_tab:>13,.0f} | {frames:>6.0f} "
            f"| {step_frame:>15,.0f} |"
        )


HEADER = (
    "| tabs | steps | previews | job s | max stall ms | p99 ms | max busy ms | p99 busy ms "
    "| bytes/tab/job | frames | bytes/frame p50 |\n"
    "|-----:|------:|---------:|------:|-------------:|-------:|------------:|------------:"
    "|--------------:|-------:|----------------:|"
)


def measure(base_url: str, browser, tabs: int, steps: int) -> Measurement:
    from playwright.sync_api import expect

    pages, received, frames, sizes = [], [0] * tabs, [0] * tabs, []
    counting = {"on": False}
    for index in range(tabs):
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.set_default_timeout(BUSY_MACHINE_WAIT_MS)

        def on_socket(socket, index: int = index) -> None:
            if "_nicegui_ws" not in socket.url:
                return

            def count(payload: str | bytes) -> None:
                if counting["on"]:
                    size = len(payload.encode() if isinstance(payload, str) else payload)
                    received[index] += size
                    frames[index] += 1
                    sizes.append(size)

            socket.on("framereceived", count)

        page.on("websocket", on_socket)
        page.goto(base_url + "/")
        expect(page.locator(".q-chip", has_text="Ready")).to_be_visible(timeout=120_000)
        pages.append(page)
    prompt = f"bench {time.time_ns()}"
    httpx.get(base_url + "/bench/loop", params={"reset": True})
    counting["on"] = True
    cpu_before = cpu_seconds_by_program()
    started = time.perf_counter()
    session_id = httpx.post(
        base_url + "/api/generate", json={"prompt": prompt, "num_inference_steps": steps}
    ).json()["session_id"]
    wait_for_end(base_url, session_id)  # on /ws: polling the REST API would load the loop
    seconds = time.perf_counter() - started
    cpu_after = cpu_seconds_by_program()
    cpu_used = {program: round(cpu_after[program] - cpu_before.get(program, 0.0), 2) for program in cpu_after}
    loop = httpx.get(base_url + "/bench/loop", params={"reset": True}).json()
    for page in pages:
        expect(page.locator(".job-card", has_text=prompt).locator("img[src^='/images/']")).to_be_visible(timeout=120_000)
    counting["on"] = False
    for page in pages:
        page.close()
    return Measurement(tabs, steps, seconds, loop, received if tabs else [], frames if tabs else [], sizes, cpu_used)


def wait_for_end(base_url: str, session_id: str) -> None:
    from websockets.sync.client import connect

    with connect(base_url.replace("http", "ws", 1) + "/ws") as ws:
        ws.send(json.dumps({"type": "subscribe", "session_id": session_id}))
        for text in ws:
            if json.loads(text).get("type") in ("generation_complete", "generation_error", "generation_cancelled"):
                return


def browser_executable(work: Path, nice: bool) -> str:
    """Debian's chromium, or a wrapper that starts it at the lowest CPU priority.

    Playwright starts the browser in a session of its own, and Linux schedules each session as one
    group (autogroup) with an equal share of the CPU against the server's: `nice` alone acts only
    inside the browser's group, so the wrapper lowers the group's own priority too."""
    if not nice:
        return "/usr/bin/chromium"
    wrapper = work / "chromium-nice"
    wrapper.write_text(
        "#!/bin/sh\n"
        "[ -w /proc/self/autogroup ] && echo 19 > /proc/self/autogroup\n"
        'exec nice -n 19 /usr/bin/chromium "$@"\n'
    )
    wrapper.chmod(0o755)
    return str(wrapper)


def wait_for_server(base_url: str, process: subprocess.Popen[bytes], timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError("the bench server exited")
        try:
            if httpx.get(base_url + "/api/health", timeout=2).json()["model"]["state"] == "ready":
                return
        except (httpx.HTTPError, ValueError, KeyError):
            pass
        time.sleep(0.2)
    raise TimeoutError("the bench server did not become ready")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tabs", type=int, default=5)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--model", default=None, help="model folder (default: a tiny random SD pipeline)")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--nice-browser", action="store_true", help="run chromium at nice 19 (less CPU contention)")
    parser.add_argument("--switch-interval", type=float, default=None, help="sys.setswitchinterval in the server (GIL)")
    parser.add_argument("--slow-callback-ms", type=float, default=None,
                        help="log each event-loop callback that runs longer (asyncio debug mode: slows the loop)")
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--data-dir", type=Path, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve:
        serve(args.port, args.data_dir, args.model, args.switch_interval, args.slow_callback_ms)
        return
    run_bench(args)


@contextmanager
def studio_server(work: Path, model: str | None = None, switch_interval: float | None = None,
                  slow_callback_ms: float | None = None, port: int = 0) -> Iterator[str]:
    """This file's server (the app plus the loop probe) in a child process; yields its base URL."""
    from bench.common import server_environment
    from tests.server_process import free_port

    if model is None:
        from app.testing.tiny_models import build_tiny_pipeline

        model = str(build_tiny_pipeline("sd", work / "tiny-sd"))
    port = port or free_port()
    base_url = f"http://127.0.0.1:{port}"
    env = server_environment({"AI_ARTIST_MODEL__CPU_THREADS": os.environ.get("AI_ARTIST_MODEL__CPU_THREADS", "1")})
    command = [sys.executable, __file__, "--serve", "--port", str(port), "--data-dir", str(work / "data"), "--model", model]
    if switch_interval:
        command += ["--switch-interval", str(switch_interval)]
    if slow_callback_ms:
        command += ["--slow-callback-ms", str(slow_callback_ms)]
    work.mkdir(parents=True, exist_ok=True)
    with (work / "server.log").open("wb") as log:
        server = subprocess.Popen(command, cwd=PROJECT_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
        try:
            wait_for_server(base_url, server)
            yield base_url
        finally:
            server.terminate()
            server.wait(20)


def launch_browser(playwright, work: Path, nice: bool):
    if not Path("/usr/bin/chromium").exists():
        raise RuntimeError("the studio bench drives Debian's chromium: apt-get install -y chromium")
    return playwright.chromium.launch(executable_path=browser_executable(work, nice), args=CHROMIUM_ARGS)


def run_bench(args: argparse.Namespace) -> None:
    from playwright.sync_api import sync_playwright

    work = Path(tempfile.mkdtemp(prefix="bench-ui-"))
    with studio_server(work, args.model, args.switch_interval, args.slow_callback_ms, args.port) as base_url:
        with sync_playwright() as playwright:
            browser = launch_browser(playwright, work, args.nice_browser)
            measure(base_url, browser, 1, args.steps)  # warm-up: first page build, first job
            results = [measure(base_url, browser, 0, args.steps), measure(base_url, browser, args.tabs, args.steps)]
            browser.close()
        model_id = httpx.get(base_url + "/api/health").json()["model"]["id"]
    print(HEADER)
    for result in results:
        print(result.row())
    for result in results:
        timings = {key: value for key, value in result.loop.items() if key.startswith("ui_")}
        print(f"{result.tabs} tabs, time in LiveJobs per event (binding + page hooks):", json.dumps(timings))
        pauses = {key: value for key, value in result.loop.items() if key.startswith(("gc_", "longest_", "stalls_", "samples"))}
        print(f"{result.tabs} tabs, longest garbage collection per generation; the longest stall's parts:",
              json.dumps(pauses))
        busy = {program: seconds for program, seconds in result.cpu_seconds.items() if seconds > 0}
        print(f"{result.tabs} tabs, CPU seconds used during the {result.seconds:.1f} s job (2 cores: "
              f"{2 * result.seconds:.1f} s available):", json.dumps(busy))
    print(json.dumps({"model": model_id, "server_log": str(work / "server.log")}))


if __name__ == "__main__":  # not "__mp_main__": the generation process must not run the app
    main()
