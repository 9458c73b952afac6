"""How the server reads its generation process's messages when several arrived at once."""
from __future__ import annotations

from app.pipeline.client import latest_progress_only
from app.pipeline.messages import JobCancelled, PreviewReady, StepDone
from app.pipeline.spawning import describe_exit


def step(session_id: str, number: int) -> StepDone:
    return StepDone(session_id, number, 30, at=float(number))


def preview(session_id: str, number: int) -> PreviewReady:
    return PreviewReady(session_id, number, b"jpeg", 64, 64, render_seconds=0.001)


def test_a_backlog_of_steps_and_previews_is_coalesced_to_the_latest_of_each_job_in_order() -> None:
    end = JobCancelled("a", entered_at=0.0, left_at=1.0)
    arrived = [step("a", 1), preview("a", 1), step("a", 2), step("b", 7), step("a", 3), preview("a", 3), end]
    assert latest_progress_only(arrived) == [step("b", 7), step("a", 3), preview("a", 3), end]


def test_messages_that_arrive_one_at_a_time_all_pass() -> None:
    for message in (step("a", 1), preview("a", 1), JobCancelled("a", 0.0, 1.0)):
        assert latest_progress_only([message]) == [message]


def test_an_exit_is_described_in_words() -> None:
    assert describe_exit(-9) == "was killed by SIGKILL (often the system's out-of-memory killer)"
    assert describe_exit(-11) == "was killed by SIGSEGV"
    assert describe_exit(3) == "exited with status 3"
