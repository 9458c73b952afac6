"""config.yaml -> typed settings; environment overrides; invalid values stop the launch naming the key."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from app.config import ConfigError, load_config
from tests.server_process import PROJECT_ROOT


def test_shipped_config_loads_and_reads_like_the_guide():
    config = load_config()
    assert config["model"]["base_model"] == config.model.base_model
    assert config["model"]["device"] in ("auto", "cpu", "cuda", "mps")
    assert config.server.port == 8000 and config.queue.max_pending >= 1


@pytest.fixture(autouse=True)
def no_overrides(monkeypatch):
    """Each test sees only the AI_ARTIST_* variables it sets itself."""
    for name in [name for name in os.environ if name.startswith("AI_ARTIST_")]:
        monkeypatch.delenv(name)


def test_environment_overrides_the_file_and_the_file_the_defaults(tmp_path, monkeypatch):
    path = tmp_path / "config.yaml"
    path.write_text("model:\n  device: cuda\n  dtype: float16\nqueue:\n  max_pending: 3\n")
    monkeypatch.setenv("AI_ARTIST_MODEL__DEVICE", "cpu")
    monkeypatch.setenv("AI_ARTIST_QUEUE__MAX_PENDING", "7")
    monkeypatch.setenv("AI_ARTIST_MODEL__CPU_THREADS", "null")
    config = load_config(path)
    assert config.model.device == "cpu" and config.queue.max_pending == 7  # the environment wins
    assert config.model.dtype == "float16"  # the file's value where the environment says nothing
    assert config.model.cpu_threads is None and config.server.port == 8000  # defaults
    assert config.previews.max_side == 256


def test_relative_model_paths_resolve_against_the_config_file(tmp_path):
    (tmp_path / "models" / "mine").mkdir(parents=True)
    path = tmp_path / "config.yaml"
    path.write_text("model:\n  base_model: models/mine\n")
    assert load_config(path).model.base_model == str(tmp_path / "models" / "mine")
    path.write_text("model:\n  base_model: some-org/some-model\n")
    assert load_config(path).model.base_model == "some-org/some-model"


@pytest.mark.parametrize(
    ("text", "environ", "expected"),
    [
        ("model:\n  device: gpu\n", {}, ["model.device", "'auto', 'cpu', 'cuda' or 'mps'", "'gpu'"]),
        ("", {"AI_ARTIST_MODEL__DTYPE": "float8"}, ["model.dtype", "float16", "'float8'"]),
        ("server:\n  port: 0\n", {}, ["server.port", "greater than or equal to 1"]),
        ("queue:\n  max_pending: many\n", {}, ["queue.max_pending", "'many'"]),
        ("model:\n  colour: red\n", {}, ["model.colour", "unknown setting"]),
        ("", {"AI_ARTIST_MODEL__COLOUR": "red"}, ["model.colour", "unknown setting"]),
        ("- just\n- a list\n", {}, ["expected a mapping"]),
        ("model: [unclosed\n", {}, ["not valid YAML"]),
    ],
)
def test_invalid_values_name_the_key_and_what_is_allowed(tmp_path, monkeypatch, text, environ, expected):
    path = tmp_path / "config.yaml"
    path.write_text(text)
    for name, value in environ.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError) as raised:
        load_config(path)
    for fragment in expected:
        assert fragment in str(raised.value)


def test_a_missing_config_file_is_named(tmp_path):
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "nope.yaml")


def test_invalid_config_stops_the_launch_with_a_message():
    env = {k: v for k, v in os.environ.items() if k != "PYTEST_CURRENT_TEST"}
    env["AI_ARTIST_MODEL__DEVICE"] = "gpu"
    result = subprocess.run(
        [sys.executable, "-m", "app", "--port", "1"], cwd=PROJECT_ROOT, env=env, capture_output=True, text=True,
        timeout=60,
    )
    assert result.returncode != 0
    assert "model.device" in result.stderr and "'gpu'" in result.stderr


def test_a_model_path_relative_to_the_working_folder_becomes_absolute(tmp_path, monkeypatch):
    """`--model models/mine` from another folder names one model, not two (a bug: it was listed twice)."""
    (tmp_path / "models" / "mine").mkdir(parents=True)
    monkeypatch.chdir(tmp_path)
    config = load_config()
    config.model.base_model = "models/mine"
    assert config.resolved_model(Path.cwd()) == str(tmp_path / "models" / "mine")
    config.model.base_model = "./models/mine"
    assert config.resolved_model(Path("/nowhere")) == str(tmp_path / "models" / "mine")
    config.model.base_model = "some-org/some-model"
    assert config.resolved_model(Path.cwd()) == "some-org/some-model"


def test_api_keys_and_allowed_hosts_take_comma_separated_environment_values(monkeypatch):
    monkeypatch.setenv("AI_ARTIST_SERVER__API_KEYS", "first-key, second-key,,")
    monkeypatch.setenv("AI_ARTIST_SERVER__ALLOWED_HOSTS", "studio.lan")
    config = load_config()
    assert config.server.api_keys == ["first-key", "second-key"] and config.server.allowed_hosts == ["studio.lan"]
    monkeypatch.delenv("AI_ARTIST_SERVER__API_KEYS")
    assert load_config().server.api_keys == []  # config.yaml's default: no key on loopback
