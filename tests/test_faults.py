"""Faults against real servers: the images folder's disk full (a small tmpfs where the test may mount one, else
an injected OSError(ENOSPC) from the PNG writer) and a launch on a read-only data folder or a corrupt database."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

import httpx
import pytest

from tests.server_process import PROJECT_ROOT, free_port
from tests.ws_client import WsClient, for_session, is_terminal

INJECTOR = '''
import errno, os
FLAG = os.environ.get("AI_ARTIST_TEST_DISK_FULL_FLAG")
if FLAG:
    from PIL import Image
    _save = Image.Image.save
    def save(self, fp, *args, **kwargs):
        if os.path.exists(FLAG) and isinstance(fp, (str, os.PathLike)):
            with open(fp, "wb") as partial:
                partial.write(b"\\x89PNG half")
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(fp))
        return _save(self, fp, *args, **kwargs)
    Image.Image.save = save
'''


def mount_tmpfs(target: Path, options: str) -> bool:
    """Mount a tmpfs at `target` when this process may (root in a container that allows it)."""
    if os.environ.get("AI_ARTIST_TEST_FAULTS") == "inject" or shutil.which("mount") is None:
        return False
    target.mkdir(parents=True, exist_ok=True)
    command = ["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(target)]
    done = subprocess.run(command, capture_output=True, check=False)
    return done.returncode == 0


def unmount(target: Path) -> None:
    subprocess.run(["umount", "-l", str(target)], capture_output=True, check=False)


class DiskFull:
    """`fill()` leaves the images folder without room for a PNG; `free()` gives it back."""

    def __init__(self, data_dir: Path, tmp_path: Path) -> None:
        self.images = data_dir / "images"
        self.flag = tmp_path / "disk-full"
        self.injector = tmp_path / "injector"
        self.tmpfs = mount_tmpfs(self.images, "size=512k")
        self.env = {}
        if not self.tmpfs:
            self.injector.mkdir()
            (self.injector / "sitecustomize.py").write_text(INJECTOR)
            self.env = {"PYTHONPATH": os.pathsep.join([str(self.injector), str(PROJECT_ROOT)]),
                        "AI_ARTIST_TEST_DISK_FULL_FLAG": str(self.flag)}

    def fill(self) -> None:
        if self.tmpfs:
            room = os.statvfs(self.images)
            (self.images / "filler.bin").write_bytes(b"\0" * (room.f_bavail * room.f_frsize - 1024))
        else:
            self.flag.touch()

    def free(self) -> None:
        (self.images / "filler.bin").unlink(missing_ok=True)
        self.flag.unlink(missing_ok=True)

    def close(self) -> None:
        if self.tmpfs:
            unmount(self.images)


@contextmanager
def disk_full(data_dir: Path, tmp_path: Path) -> Iterator[DiskFull]:
    fault = DiskFull(data_dir, tmp_path)
    try:
        yield fault
    finally:
        fault.close()


async def run_job(server, prompt: str) -> dict:
    body = {"prompt": prompt, "num_inference_steps": 2, "width": 64, "height": 64}
    async with httpx.AsyncClient(base_url=server.base_url) as http, WsClient(server.ws_url) as ws:
        session_id = (await http.post("/api/generate", json=body)).json()["session_id"]
        await ws.subscribe(session_id)
        return (await ws.recv_until(for_session(session_id, is_terminal)))[-1]


async def test_a_full_disk_fails_the_job_naming_it_leaves_no_partial_png_and_the_next_job_works(
    start_server, tmp_path
):
    data_dir = tmp_path / "data"
    with disk_full(data_dir, tmp_path) as fault:
        server = start_server(data_dir=data_dir, env=fault.env)
        fault.fill()
        failed = await run_job(server, "no room for me")
        assert failed["type"] == "generation_error", failed
        assert "Disk full" in failed["error"] and "No space left on device" in failed["error"]
        assert not [name for name in os.listdir(fault.images) if name != "filler.bin"]  # nothing half-written
        fault.free()
        done = await run_job(server, "room again")
        assert done["type"] == "generation_complete", done
        assert all(Path(path).is_file() for path in done["image_paths"])
        assert not list(fault.images.glob("*.partial"))
        server.stop()


def launch(data_dir: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "PYTEST_CURRENT_TEST"}
    return subprocess.run(
        [sys.executable, "-m", "app", "--port", str(free_port()), "--data-dir", str(data_dir)],
        cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, timeout=120, check=False,
    )


@pytest.mark.slow
def test_a_read_only_data_folder_stops_the_launch_naming_it(tmp_path):
    data_dir = tmp_path / "read-only"
    mounted = os.geteuid() == 0 and mount_tmpfs(data_dir, "ro,size=64k")
    if not mounted:  # as a plain user, permissions make it read-only (root would ignore them)
        data_dir.mkdir()
        data_dir.chmod(0o555)
    try:
        result = launch(data_dir)
    finally:
        if mounted:
            unmount(data_dir)
        with suppress(OSError):
            data_dir.chmod(0o755)
    assert result.returncode != 0
    message = result.stderr.strip().splitlines()[-1]
    assert str(data_dir) in message and "make it writable" in message and "--data-dir" in message, result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.slow
def test_a_corrupt_database_stops_the_launch_naming_it_and_what_to_do(tmp_path):
    data_dir = tmp_path / "corrupt"
    data_dir.mkdir()
    (data_dir / "ai-artist.sqlite3").write_bytes(b"this is not a database " * 200)
    result = launch(data_dir)
    assert result.returncode != 0
    message = result.stderr.strip().splitlines()[-1]
    assert str(data_dir / "ai-artist.sqlite3") in message and "move it aside" in message, result.stderr
    assert "Traceback" not in result.stderr
