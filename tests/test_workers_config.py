"""The workers' and the queue backend's settings: config.yaml, AI_ARTIST_* variables, and the flags."""
from __future__ import annotations

import subprocess
import sys

import pytest

from app.config import ConfigError, load_config
from tests.server_process import PROJECT_ROOT


def test_defaults_are_one_local_worker_and_the_local_queue():
    settings = load_config()
    assert settings.workers.local == 1 and settings.workers.devices == []
    assert settings.queue.backend == "local" and settings.queue.redis_url is None
    assert settings.workers.local_devices("cpu") == ["cpu"]


def test_devices_from_the_environment_override_local(tmp_path, monkeypatch):
    monkeypatch.setenv("AI_ARTIST_WORKERS__LOCAL", "3")
    monkeypatch.setenv("AI_ARTIST_WORKERS__DEVICES", '["cuda:0", "cuda:1"]')
    settings = load_config()
    assert settings.workers.local_devices("auto") == ["cuda:0", "cuda:1"]


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        ({"AI_ARTIST_QUEUE__BACKEND": "redis"}, "queue.backend redis needs queue.redis_url"),
        ({"AI_ARTIST_WORKERS__LOCAL": "0"}, "workers.local is 0 with queue.backend local"),
        ({"AI_ARTIST_QUEUE__BACKEND": "kafka"}, "queue.backend: must be one of 'local' or 'redis'"),
    ],
)
def test_settings_no_worker_could_use_are_refused(monkeypatch, environ, expected):
    for name, value in environ.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError, match=expected):
        load_config()


def test_no_local_worker_is_fine_with_redis(monkeypatch):
    monkeypatch.setenv("AI_ARTIST_WORKERS__LOCAL", "0")
    monkeypatch.setenv("AI_ARTIST_QUEUE__BACKEND", "redis")
    monkeypatch.setenv("AI_ARTIST_QUEUE__REDIS_URL", "redis://127.0.0.1:6379/0")
    assert load_config().workers.local_devices("cpu") == []


def test_the_flags_say_what_is_wrong():
    result = subprocess.run(
        [sys.executable, "-m", "app", "--workers", "0"], cwd=PROJECT_ROOT, capture_output=True, text=True,
        timeout=60, check=False,
    )
    assert result.returncode != 0 and "nothing would run jobs" in result.stderr
    result = subprocess.run(
        [sys.executable, "-m", "app", "worker"], cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=60,
        check=False,
    )
    assert result.returncode != 0 and "--redis" in result.stderr
