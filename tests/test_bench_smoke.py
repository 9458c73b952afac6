"""The benchmarks' smoke run (tiny counts, real servers) produces the table with measured numbers.

Figures are not checked against the targets here: timing belongs in docs/benchmarks.md, not in tests.
"""
from __future__ import annotations

import re
import subprocess
import sys

import pytest

from tests.server_process import PROJECT_ROOT

pytestmark = [pytest.mark.bench, pytest.mark.browser, pytest.mark.slow]

BENCHES = ("start-up", "overhead", "img2img", "lora switch", "progress latency", "queue", "slow client", "compat",
           "capacity", "studio", "soak", "workers", "batching")
NUMBER = re.compile(r"^-?\d+(\.\d+)?( / -?\d+(\.\d+)?)?$")


def table_rows(text: str) -> list[list[str]]:
    rows = []
    for line in text.splitlines():
        if line.startswith("| ") and not line.startswith("| Benchmark") and not line.startswith("|---"):
            rows.append([cell.strip() for cell in line.strip().strip("|").split(" | ")])
    return rows


def test_smoke_run_writes_a_table_of_numbers(tmp_path, model_dir):
    out = tmp_path / "benchmarks.md"
    result = subprocess.run(
        [sys.executable, "-m", "bench.run", "--smoke", "--model", str(model_dir), "--out", str(out),
         "--work", str(tmp_path / "work")],
        cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=1200,  # bench/workers.py starts five servers
    )
    assert result.returncode == 0, result.stderr[-4000:]
    text = out.read_text()
    assert "| Benchmark | Measurement | Value | Unit | Target | Met | Notes |" in text
    for needle in ("Machine:", "cores", "python ", "torch ", "diffusers ", "nicegui "):
        assert needle in text
    assert re.search(r"on \d{4}-\d\d-\d\d \d\d:\d\d UTC", text)
    rows = table_rows(text)
    assert not [row for row in rows if row[1] == "FAILED"], text
    for bench in BENCHES:
        values = [row[2] for row in rows if row[0] == bench]
        assert values, f"no rows for {bench}:\n{text}"
        assert any(NUMBER.match(value) for value in values), f"no measured number for {bench}: {values}"
    delivered = next(row for row in rows if row[0] == "capacity" and "delivered" in row[1])
    got, expected = (int(part) for part in delivered[2].split(" / "))
    assert got == expected > 0
    assert "WebSocketsSansIOProtocol × " in text  # /ws is served by uvicorn's websockets-sansio (app/web/server.py)
    thresholds = re.search(r"garbage-collector thresholds: \((\d+), (\d+), (\d+)\)", text)
    assert thresholds and int(thresholds[3]) >= 100  # app/web/idle_gc.py ran in the server
    close = next(row for row in rows if row[0] == "slow client" and "close code" in row[1])
    assert close[2].startswith("1013") and "too slow" in close[2]


def test_the_gpu_batching_script_runs_the_app_path(model_dir, tmp_path):
    """bench/gpu_batching.py waits for a machine with a GPU: it must still run when one is lent (here on the CPU,
    with the embedded model, tiny counts)."""
    from bench.gpu_batching import main

    steps = 2
    result = main(["--model", str(model_dir), "--device", "cpu", "--dtype", "float32", "--size", "64",
                   "--steps", str(steps), "--rounds", "1", "--json", str(tmp_path / "gpu.json")])
    assert set(result["images_per_minute"]) == {"8 calls of 1", "2 calls of 4", "1 call of 8"}
    assert all(value > 0 for value in result["images_per_minute"].values())
    assert result["previews_per_watched_job"] == steps, "a watched job gets a preview at every step"
    assert (tmp_path / "gpu.json").is_file()
