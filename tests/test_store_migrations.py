"""The store upgrades a database of an earlier layout in place, keeping every job and gallery item."""
from __future__ import annotations

import sqlite3
from datetime import datetime, timezone

import pytest

from app.engine.migrations import LATEST_VERSION, SchemaTooNew
from app.engine.store import Store
from app.protocol import GenerateRequest, GenerationMetadata

# The layout every database had before schema versions were counted (user_version 0), verbatim.
LAYOUT_BEFORE_VERSIONS = """
CREATE TABLE IF NOT EXISTS jobs (
    id TEXT PRIMARY KEY,
    status TEXT NOT NULL,
    request TEXT NOT NULL,
    model TEXT NOT NULL,
    seed INTEGER,
    step INTEGER NOT NULL DEFAULT 0,
    total_steps INTEGER NOT NULL DEFAULT 0,
    attempts INTEGER NOT NULL DEFAULT 0,
    error TEXT,
    image_names TEXT NOT NULL DEFAULT '[]',
    created_at TEXT NOT NULL,
    started_at TEXT,
    finished_at TEXT,
    last_seq INTEGER NOT NULL DEFAULT 0,
    metadata TEXT
);
CREATE INDEX IF NOT EXISTS jobs_status ON jobs(status, created_at);
CREATE TABLE IF NOT EXISTS gallery (
    name TEXT PRIMARY KEY,
    session_id TEXT NOT NULL,
    idx INTEGER NOT NULL,
    created_at TEXT NOT NULL,
    metadata TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS gallery_created ON gallery(created_at DESC);
"""


def old_database(path) -> GenerationMetadata:
    """A database as the first release wrote it: one completed job with its image, one still queued."""
    created = datetime(2026, 11, 1, 12, 0, tzinfo=timezone.utc)
    metadata = GenerationMetadata(
        prompt="a red circle", negative_prompt="", seed=7, num_inference_steps=20, guidance_scale=7.5,
        model="ai-artist-tiny", width=64, height=64, scheduler="default", created_at=created, duration_seconds=1.2,
    )
    db = sqlite3.connect(path)
    db.executescript(LAYOUT_BEFORE_VERSIONS)
    request = GenerateRequest(prompt="a red circle", num_inference_steps=20, seed=7).model_dump_json()
    db.execute(
        "INSERT INTO jobs (id, status, request, model, seed, step, total_steps, attempts, image_names, created_at,"
        " started_at, finished_at, last_seq, metadata) VALUES (?, 'completed', ?, 'ai-artist-tiny', 7, 20, 20, 1,"
        " '[\"done-0.png\"]', ?, ?, ?, 24, ?)",
        ("done", request, created.isoformat(), created.isoformat(), created.isoformat(), metadata.model_dump_json()),
    )
    db.execute(
        "INSERT INTO jobs (id, status, request, model, created_at) VALUES ('waiting', 'queued', ?, 'ai-artist-tiny', ?)",
        (GenerateRequest(prompt="a blue square").model_dump_json(), created.isoformat()),
    )
    db.execute(
        "INSERT INTO gallery (name, session_id, idx, created_at, metadata) VALUES ('done-0.png', 'done', 0, ?, ?)",
        (created.isoformat(), metadata.model_dump_json()),
    )
    db.commit()
    db.close()
    return metadata


def test_a_database_of_the_first_layout_is_upgraded_without_losing_a_job_or_an_image(tmp_path):
    path = tmp_path / "ai-artist.sqlite3"
    metadata = old_database(path)

    store = Store(path)
    try:
        done = store.get_job("done")
        assert done is not None and done.status == "completed" and done.image_names == ["done-0.png"]
        assert done.metadata == metadata and done.last_seq == 24 and done.seed == 7
        assert done.client == "", "jobs from before clients were recorded belong to no one in particular"
        assert [record.id for record in store.unfinished_jobs()] == ["waiting"]
        items, total = store.gallery(0, 10)
        assert total == 1 and items[0].name == "done-0.png" and items[0].metadata == metadata
        store.mark_running("waiting", seed=1, total_steps=30)
        store.update_step("waiting", 3, eta_seconds=2.5)  # a column the first layout did not have
        assert store.get_job("waiting").eta_seconds == 2.5
    finally:
        store.close()
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA user_version").fetchone()[0] == LATEST_VERSION


def test_opening_an_up_to_date_database_again_changes_nothing(tmp_path):
    path = tmp_path / "ai-artist.sqlite3"
    Store(path).close()
    Store(path).close()
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA user_version").fetchone()[0] == LATEST_VERSION


def test_a_database_from_a_newer_release_is_refused_with_a_reason(tmp_path):
    path = tmp_path / "ai-artist.sqlite3"
    with sqlite3.connect(path) as db:
        db.execute(f"PRAGMA user_version = {LATEST_VERSION + 1}")
    with pytest.raises(SchemaTooNew, match="newer AI Artist"):
        Store(path)
