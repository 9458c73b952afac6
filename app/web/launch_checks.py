"""Checks before the server starts: a data folder it cannot write or a database it cannot open stops the
launch with one line naming the file and what to do, instead of a traceback."""
from __future__ import annotations

import errno
import os
import sqlite3
from pathlib import Path

DATABASE_NAME = "ai-artist.sqlite3"


class LaunchProblem(Exception):
    """The server cannot start; the message names the file and what to do."""


def check_writable(data_dir: Path) -> None:
    """The data folder (images, database, logs) must exist or be creatable, and take a new file."""
    probe = data_dir / f".write-test-{os.getpid()}"
    try:
        data_dir.mkdir(parents=True, exist_ok=True)
        probe.write_bytes(b"ok")
        probe.unlink()
    except OSError as error:
        why = "the disk is full" if error.errno == errno.ENOSPC else (error.strerror or str(error)).lower()
        raise LaunchProblem(
            f"cannot write to the data folder {data_dir} ({why}): make it writable, free some space, or choose "
            "another folder with --data-dir or storage.data_dir"
        ) from None


def database_problem(data_dir: Path, error: sqlite3.DatabaseError) -> LaunchProblem:
    database = data_dir / DATABASE_NAME
    if "readonly" in str(error) or "read-only" in str(error):
        return LaunchProblem(f"the database {database} is read-only ({error}): make it and its folder writable")
    return LaunchProblem(
        f"the database {database} is damaged or not an SQLite database ({error}): move it aside (e.g. rename it to "
        f"{DATABASE_NAME}.broken) to start with an empty job history; the images in {data_dir / 'images'} are kept"
    )
