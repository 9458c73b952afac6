"""Soak (bench/soak.py) for about two minutes against a real server: continuous jobs, /ws clients connecting,
subscribing, dropping and resuming with after_seq. Every followed job ends for its follower; RSS and open files
stay flat after warm-up; no unretrieved-task or exception lines in the log. The 10-minute run: `python -m
bench.soak` (docs/benchmarks.md)."""
from __future__ import annotations

import os

from bench.soak import soak

SECONDS = float(os.environ.get("AI_ARTIST_SOAK_SECONDS", "120"))


async def test_continuous_jobs_with_dropping_clients_stay_flat_and_every_job_ends(start_server):
    server = start_server()
    logs = [server.data_dir / "logs" / "ai-artist.log", server.log_path]
    report = await soak(server.base_url, server.process.pid, logs, SECONDS, clients=5)
    assert len(report.jobs) >= 10 and report.drops >= 5 and report.resumed_with_after_seq >= 1, report
    assert not report.missing, report.missing
    assert not report.errors, report.errors[:5]
    growth = report.figures()
    assert all(value <= 10 for value in growth.values()), (growth, report.samples[::5])
    assert not report.log_problems, report.log_problems[:10]
