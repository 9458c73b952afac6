"""The one status line under a job card's bar, for each state of the job."""
from __future__ import annotations

from app.ui.live_jobs import LiveJob
from components.job_card import status_line


def test_status_line_follows_the_job():
    job = LiveJob(session_id="s", status="queued", position=1)
    assert status_line(job) == "next in line"
    job.position = 3
    assert status_line(job) == "#3 in the queue"
    job.status, job.step, job.total_steps, job.eta_seconds = "running", 15, 30, 2.6
    assert status_line(job) == "step 15/30 · about 3 s left"
    job.eta_seconds = None
    assert status_line(job) == "step 15/30"
    job.status, job.step = "completed", 30
    assert status_line(job) == "step 30/30"
    job.status = "failed"
    assert status_line(job) == ""  # the chip says "Failed" until the error arrives
    job.error = "Out of memory"
    assert status_line(job) == "Out of memory"
    job.status = "cancelled"
    assert status_line(job) == ""  # the chip says it


def test_status_line_says_which_worker_runs_the_job():
    job = LiveJob(session_id="s", status="running", step=3, total_steps=10, eta_seconds=5, worker="gpu-box-2")
    assert status_line(job) == "step 3/10 · about 5 s left · on gpu-box-2"
    job.status, job.step = "completed", 10
    assert status_line(job) == "step 10/10 · on gpu-box-2"
