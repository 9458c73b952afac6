"""config.yaml -> typed settings; environment overrides; invalid values stop the launch naming the key."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

from app.config import ConfigError, load_config
from tests.server_process import PROJECT_ROOT


def test_shipped_config_loads_and_reads_like_the_guide():
    config = load_config()
    assert config["model"]["base_model"] == config.model.base_model
    assert config["model"]["device"] in ("auto", "cpu", "cuda", "mps")
    assert config.server.port == 8000 and config.queue.max_pending >= 1


def test_environment_overrides_the_file():
    config = load_config(environ={"AI_ARTIST_MODEL__DEVICE": "cpu", "AI_ARTIST_QUEUE__MAX_PENDING": "7"})
    assert config.model.device == "cpu" and config.queue.max_pending == 7


def test_relative_model_paths_resolve_against_the_config_file(tmp_path):
    (tmp_path / "models" / "mine").mkdir(parents=True)
    path = tmp_path / "config.yaml"
    path.write_text("model:\n  base_model: models/mine\n")
    assert load_config(path, environ={}).model.base_model == str(tmp_path / "models" / "mine")
    path.write_text("model:\n  base_model: some-org/some-model\n")
    assert load_config(path, environ={}).model.base_model == "some-org/some-model"


@pytest.mark.parametrize(
    ("text", "environ", "expected"),
    [
        ("model:\n  device: gpu\n", {}, ["model.device", "'auto', 'cpu', 'cuda' or 'mps'", "'gpu'"]),
        ("", {"AI_ARTIST_MODEL__DTYPE": "float8"}, ["model.dtype", "float16", "'float8'"]),
        ("server:\n  port: 0\n", {}, ["server.port", "greater than or equal to 1"]),
        ("queue:\n  max_pending: many\n", {}, ["queue.max_pending", "'many'"]),
        ("model:\n  colour: red\n", {}, ["model.colour", "unknown setting"]),
        ("- just\n- a list\n", {}, ["expected a mapping"]),
        ("model: [unclosed\n", {}, ["not valid YAML"]),
    ],
)
def test_invalid_values_name_the_key_and_what_is_allowed(tmp_path, text, environ, expected):
    path = tmp_path / "config.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as raised:
        load_config(path, environ=environ)
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
