"""Start the real app (`python -m app`) as a subprocess on a free port, for end-to-end tests."""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

PROJECT_ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def port_is_free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


class ServerProcess:
    def __init__(
        self, model_dir: Path, data_dir: Path, env: dict[str, str] | None = None, port: int | None = None,
        args: list[str] | None = None,
    ) -> None:
        self.args = args or []  # extra command-line arguments (--api-key KEY, --host ...)
        self.model_dir = model_dir
        self.data_dir = data_dir
        self.env = env or {}
        self.fixed_port = port
        self.port = 0
        self.process: subprocess.Popen[bytes] | None = None
        self.log_path = data_dir / "server-output.log"

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws"

    def start(self, wait_for_model: bool = True, timeout: float = 90) -> "ServerProcess":
        self.launch()
        self.wait_until(lambda health: not wait_for_model or health["model"]["state"] != "loading", timeout)
        return self

    def launch(self) -> "ServerProcess":
        """Start the process without waiting (start several, then `wait_until` each)."""
        self.port = self.fixed_port or free_port()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        inherited = {k: v for k, v in os.environ.items() if k != "PYTEST_CURRENT_TEST"}  # NiceGUI's test mode
        env = {**inherited, "AI_ARTIST_MODEL__CPU_THREADS": "1", "PYTHONUNBUFFERED": "1", **self.env}
        command = [
            sys.executable, "-m", "app",
            "--port", str(self.port),
            "--data-dir", str(self.data_dir),
            "--model", str(self.model_dir),
            *self.args,
        ]
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(command, cwd=PROJECT_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
        return self

    def wait_until(self, condition, timeout: float = 90) -> dict:
        """Poll /api/health until `condition(health)` holds; fail with the server log if it never does."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                raise RuntimeError(f"server exited with {self.process.returncode}:\n{self.output()}")
            try:
                health = httpx.get(f"{self.base_url}/api/health", timeout=2).json()
            except httpx.HTTPError:
                health = None
            if health is not None and condition(health):
                return health
            time.sleep(0.1)
        raise TimeoutError(f"server not ready in {timeout}s:\n{self.output()}")

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")[-5000:] if self.log_path.exists() else ""

    def kill(self) -> None:
        """kill -9: no shutdown handlers run, as in a crash."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(10)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.kill()
