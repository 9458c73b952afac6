"""Shared pieces of the benchmarks: the model, the machine, statistics and a real server subprocess.

The /ws clients are in bench/ws_client.py; the hooked server's bench-only stamps in bench/hooked_server.py.
"""
from __future__ import annotations

import os
import platform
import resource
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

PROJECT_ROOT = Path(__file__).resolve().parent.parent
EMBEDDED_MODEL = PROJECT_ROOT / "assets" / "models" / "ai-artist-tiny"
WORK_ROOT = Path(tempfile.gettempdir()) / "ai-artist-bench"
PROMPT = "A serene mountain landscape at sunset"


@dataclass
class Row:
    bench: str
    metric: str
    value: float | str | None
    unit: str = ""
    target: str = ""
    met: bool | None = None
    note: str = ""


@dataclass
class Context:
    model: Path
    smoke: bool
    work: Path
    notes: dict[str, list[str]] = field(default_factory=dict)

    def note(self, bench: str, text: str) -> None:
        self.notes.setdefault(bench, []).append(text)


# --------------------------------------------------------------------------- model and machine


def default_model(work: Path = WORK_ROOT) -> Path:
    """The embedded model when it is there, else a tiny random SD pipeline built once into `work`."""
    if (EMBEDDED_MODEL / "model_index.json").is_file():
        return EMBEDDED_MODEL
    path = work / "tiny-sd"
    if not (path / "model_index.json").is_file():
        from app.testing.tiny_models import build_tiny_pipeline

        build_tiny_pipeline("sd", path)
    return path


def model_label(model: Path) -> str:
    if model.resolve() == EMBEDDED_MODEL.resolve():
        return "assets/models/ai-artist-tiny (embedded)"
    if model.name == "tiny-sd" and model.parent == WORK_ROOT:
        return "tiny random SD pipeline (`build_tiny_pipeline('sd')`; the embedded model was not present)"
    return str(model)


def machine() -> dict[str, str]:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    versions = {"python": platform.python_version()}
    for name in ("torch", "diffusers", "nicegui", "uvicorn", "websockets"):
        try:
            from importlib.metadata import version

            versions[name] = version(name)
        except Exception:
            versions[name] = "?"
    return {
        "cpu": cpu,
        "cores": str(os.cpu_count()),
        "os": f"{platform.system()} {platform.release()}",
        "versions": ", ".join(f"{k} {v}" for k, v in versions.items()),
        "clock": time.get_clock_info("perf_counter").implementation,
    }


def raise_open_files(needed: int) -> tuple[int, int]:
    """Raise this process's soft RLIMIT_NOFILE to `needed` (or the hard limit); returns (soft, hard)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < needed:
        target = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)


# --------------------------------------------------------------------------- statistics


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


# --------------------------------------------------------------------------- the server


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def server_environment(overrides: dict[str, str]) -> dict[str, str]:
    """This process's environment for a server child, minus pytest's marker: with it, NiceGUI's
    `ui.run` goes into its test mode and asks for a screen-test port (the smoke test runs the benches)."""
    inherited = {k: v for k, v in os.environ.items() if k != "PYTEST_CURRENT_TEST"}
    return {**inherited, "PYTHONUNBUFFERED": "1", **BENCH_LIMITS, **overrides}


BENCH_LIMITS = {
    # Every bench client connects from 127.0.0.1: the per-address limits would stop the capacity bench's
    # 1,000 sockets and the queue benches' backlog (docs/security.md).
    "AI_ARTIST_SERVER__MAX_CONNECTIONS_PER_CLIENT": "100000",
    "AI_ARTIST_QUEUE__MAX_PENDING_PER_CLIENT": "100000",
}


class Server:
    """`python -m app` (or the hooked variant) on a free loopback port, one thread for torch."""

    def __init__(self, model: Path, data_dir: Path, hooked: bool = False, env: dict[str, str] | None = None) -> None:
        self.model, self.data_dir, self.hooked = model, data_dir, hooked
        self.env = env or {}
        self.port = 0
        self.process: subprocess.Popen[bytes] | None = None
        self.started_at = 0.0

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, wait: str | None = "model", timeout: float = 120) -> "Server":
        self.port = free_port()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        env = server_environment({"AI_ARTIST_MODEL__CPU_THREADS": "1", **self.env})
        flags = ["--port", str(self.port), "--data-dir", str(self.data_dir), "--model", str(self.model)]
        command = [sys.executable, "-m", "bench.hooked_server", *flags] if self.hooked else [
            sys.executable, "-m", "app", *flags]
        log = (self.data_dir / "server-output.log").open("ab")
        self.started_at = time.perf_counter()
        self.process = subprocess.Popen(command, cwd=PROJECT_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
        if wait == "model":
            self.wait_until(lambda h: h["model"]["state"] != "loading", timeout)
        return self

    def health(self) -> dict[str, Any] | None:
        import httpx

        try:
            return httpx.get(f"{self.base_url}/api/health", timeout=2).json()
        except (httpx.HTTPError, ValueError):
            return None

    def wait_until(self, condition, timeout: float = 120) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                raise RuntimeError(f"server exited with {self.process.returncode}:\n{self.output()}")
            health = self.health()
            if health is not None and condition(health):
                if health["model"]["state"] == "error":
                    raise RuntimeError(f"model failed to load: {health['model']['error']}")
                return health
            time.sleep(0.05)
        raise TimeoutError(f"server not ready in {timeout}s:\n{self.output()}")

    def wait_idle(self, timeout: float = 120) -> None:
        self.wait_until(lambda h: h["queue"]["pending"] == 0 and h["queue"]["running"] == 0, timeout)

    def output(self) -> str:
        path = self.data_dir / "server-output.log"
        return path.read_text(errors="replace")[-4000:] if path.exists() else ""

    def rss_kb(self) -> int:
        assert self.process is not None
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        raise RuntimeError("no VmRSS")

    def cpu_wait_ms(self) -> dict[str, tuple[float, float]]:
        """Per thread: (ms on a CPU, ms runnable but waiting for a CPU) so far (/proc schedstat), for the
        server's threads ("event loop" is its main thread) and the generation process's ("pipeline:"...;
        "pipeline" is its main thread, the one that runs the pipeline)."""
        assert self.process is not None
        result: dict[str, tuple[float, float]] = {}
        health = self.health() or {}
        generation_pid = (health.get("model") or {}).get("process_id")
        processes = [(self.process.pid, "event loop", "")]
        if generation_pid:
            processes.append((generation_pid, "pipeline", "pipeline: "))
        for pid, main_name, prefix in processes:
            for task in Path(f"/proc/{pid}/task").iterdir():
                try:
                    name = prefix + (task / "comm").read_text().strip()
                    ran, waited, _ = (task / "schedstat").read_text().split()
                except (OSError, ValueError):
                    continue
                if task.name == str(pid):
                    name = main_name
                old = result.get(name, (0.0, 0.0))
                result[name] = (old[0] + int(ran) / 1e6, old[1] + int(waited) / 1e6)
        return result

    def stamps(self) -> dict[str, Any]:
        import httpx

        return httpx.get(f"{self.base_url}/bench/stamps", timeout=30).json()

    def runtime(self) -> dict[str, Any]:
        import httpx

        return httpx.get(f"{self.base_url}/bench/runtime", timeout=30).json()

    def outboxes(self) -> list[dict[str, Any]]:
        import httpx

        return httpx.get(f"{self.base_url}/bench/outboxes", timeout=30).json()

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)

    def __enter__(self) -> "Server":
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def job_body(steps: int, seed: int = 1234, **extra: Any) -> dict[str, Any]:
    return {"prompt": PROMPT, "num_inference_steps": steps, "guidance_scale": 7.5, "seed": seed, **extra}
