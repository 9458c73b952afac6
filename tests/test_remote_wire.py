"""Redis entries between the server and its remote workers: our messages round-trip, and an entry that
names anything else (a function to call) is refused instead of run."""
from __future__ import annotations

import os
import pickle
from datetime import datetime, timezone
from pathlib import Path

import pytest

from app.config import PreviewSettings
from app.pipeline.messages import InputImage, JobSpec
from app.pipeline.values import LoraRef
from app.protocol import GenerationMetadata, LoraUse
from app.remote.wire import RemoteJob, WorkerEvent, pack, unpack


def a_job() -> RemoteJob:
    spec = JobSpec(
        session_id="s1", prompt="a red circle", negative_prompt="", num_inference_steps=3, guidance_scale=7.5,
        num_images=1, seed=42, width=64, height=64, scheduler=None, previews=PreviewSettings(), images_dir="",
        init_image=InputImage("in.png", b"\x89PNG..."), mask_image=None, strength=0.75, mask_blur=4,
        loras=(LoraRef("style", "ab" * 32, 0.8),),
    )
    return RemoteJob(spec=spec, max_attempts=2)


def test_a_job_and_a_finished_event_round_trip():
    job = a_job()
    assert unpack(pack(job)) == job
    metadata = GenerationMetadata(
        prompt="p", negative_prompt="", seed=1, num_inference_steps=3, guidance_scale=7.5, model="m", width=64,
        height=64, created_at=datetime.now(timezone.utc), duration_seconds=0.5, loras=[LoraUse(name="style", weight=0.8, hash="abcdef012345")],
    )
    event = WorkerEvent("finished", "s1", "w1", "stream", "1-0", {"images": [("a.png", b"png")], "metadata": metadata})
    assert unpack(pack(event)) == event


class RunsACommand:
    def __reduce__(self):
        return (os.system, ("touch /tmp/should-not-exist",))


@pytest.mark.parametrize("payload", [RunsACommand(), Path("/etc/passwd")])
def test_an_entry_naming_anything_but_our_messages_is_refused(payload):
    with pytest.raises(pickle.UnpicklingError, match="not a message class"):
        unpack(pickle.dumps(payload))
