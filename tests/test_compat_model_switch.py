"""Switching the model the A1111 way (`util_set_model`, Open WebUI's options round trip) on a server of its own
with two local models; OpenAI clients name the loaded one."""
from __future__ import annotations

import shutil
import time

import httpx
import openai
import pytest

from tests.compat_clients import SMALL, InThread, a1111_client, openai_client


@pytest.fixture
def two_model_server(start_server, model_dir, tmp_path):
    data_dir = tmp_path / "data"
    shutil.copytree(model_dir, data_dir / "models" / "other-artist")
    return start_server(data_dir=data_dir)


def test_switch_with_webuiapi_and_open_webuis_options_round_trip_then_requests_name_the_loaded_one(
    two_model_server,
):
    server = two_model_server
    api = a1111_client(server)
    assert api.util_get_model_names() == ["ai-artist-tiny", "other-artist"]

    seen_while_loading = []
    switch = InThread(lambda: api.util_set_model("Other-Artist"))  # find_closest lowercases; matched to the title
    while not switch.done:
        seen_while_loading.append(httpx.get(f"{server.base_url}/sdapi/v1/progress").json())
        time.sleep(0.05)  # a client's polling rate; the loop ends when the switch call returns
    switch.result()  # returns once the model is loaded, like A1111
    assert any(progress["state"]["job"] == "Loading model" for progress in seen_while_loading)
    assert api.util_get_current_model() == "other-artist"
    assert httpx.get(f"{server.base_url}/api/health").json()["model"]["id"].endswith("other-artist")
    assert api.util_wait_for_ready(check_interval=0.1) is None

    result = api.txt2img(prompt="drawn by the other model", steps=3, **SMALL)
    assert result.info["sd_model_name"] == "other-artist" and "Model: other-artist" in result.info["infotexts"][0]

    # Open WebUI posts every option back with the new checkpoint
    options = api.get_options()
    response = httpx.post(
        f"{server.base_url}/sdapi/v1/options", json={**options, "sd_model_checkpoint": "ai-artist-tiny"}, timeout=180
    )
    assert response.status_code == 200, response.text
    assert api.util_get_current_model() == "ai-artist-tiny"

    # A request naming the model that is not loaded says so (one model serves every client)
    client = openai_client(server)
    assert [model.id for model in client.models.list()] == ["ai-artist-tiny", "other-artist"]
    with pytest.raises(openai.BadRequestError) as raised:
        client.images.generate(model="other-artist", prompt="x", size="64x64")
    assert raised.value.code == "model_not_loaded" and "ai-artist-tiny" in raised.value.message
    response = httpx.post(
        f"{server.base_url}/sdapi/v1/txt2img",
        json={"prompt": "x", "override_settings": {"sd_model_checkpoint": "other-artist"}, **SMALL},
    )
    assert response.status_code == 422 and "POST /sdapi/v1/options" in response.json()["detail"][0]["msg"]
