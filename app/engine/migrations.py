"""The SQLite schema and its versions: one small function per step, numbered by `PRAGMA user_version`.

A database of any earlier version is brought up to date when the store opens it; each step runs in
its own transaction together with the version bump, so a step either happens whole or not at all.
Version 1 is the layout every database had before versions were counted (user_version 0), so its
statements must leave such a database as it is. Add a step at the end; never change one that shipped.
"""
from __future__ import annotations

import sqlite3
from collections.abc import Callable


class SchemaTooNew(RuntimeError):
    """The database was written by a newer AI Artist than this one."""


def _v1_jobs_and_gallery(db: sqlite3.Connection) -> None:
    db.execute(
        """CREATE TABLE IF NOT EXISTS jobs (
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
        )"""
    )
    db.execute("CREATE INDEX IF NOT EXISTS jobs_status ON jobs(status, created_at)")
    db.execute(
        """CREATE TABLE IF NOT EXISTS gallery (
            name TEXT PRIMARY KEY,
            session_id TEXT NOT NULL,
            idx INTEGER NOT NULL,
            created_at TEXT NOT NULL,
            metadata TEXT NOT NULL
        )"""
    )
    db.execute("CREATE INDEX IF NOT EXISTS gallery_created ON gallery(created_at DESC)")


def _v2_job_eta(db: sqlite3.Connection) -> None:
    """The ETA computed at a running job's latest step, so REST reports the one /ws and the studio got."""
    db.execute("ALTER TABLE jobs ADD COLUMN eta_seconds REAL")


def _v3_job_client(db: sqlite3.Connection) -> None:
    """Who submitted a job (an API key's name, a browser session or an address), for per-client limits
    and fair scheduling; jobs from before it was recorded belong to no one in particular ('')."""
    db.execute("ALTER TABLE jobs ADD COLUMN client TEXT NOT NULL DEFAULT ''")


def _v4_job_worker(db: sqlite3.Connection) -> None:
    """The name of the worker a job runs (or ran) on, for its view and the studio's job card."""
    db.execute("ALTER TABLE jobs ADD COLUMN worker TEXT NOT NULL DEFAULT ''")


MIGRATIONS: tuple[Callable[[sqlite3.Connection], None], ...] = (
    _v1_jobs_and_gallery, _v2_job_eta, _v3_job_client, _v4_job_worker,
)
LATEST_VERSION = len(MIGRATIONS)


def schema_version(db: sqlite3.Connection) -> int:
    return int(db.execute("PRAGMA user_version").fetchone()[0])


def migrate(db: sqlite3.Connection) -> int:
    """Bring `db` (opened with isolation_level=None) up to LATEST_VERSION; returns the version it had."""
    found = schema_version(db)
    if found > LATEST_VERSION:
        raise SchemaTooNew(
            f"schema version {found} was written by a newer AI Artist (this one knows up to {LATEST_VERSION}); "
            "upgrade AI Artist or point storage.data_dir at another folder"
        )
    for version in range(found + 1, LATEST_VERSION + 1):
        db.execute("BEGIN IMMEDIATE")
        try:
            MIGRATIONS[version - 1](db)
            db.execute(f"PRAGMA user_version = {version}")
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
    return found
