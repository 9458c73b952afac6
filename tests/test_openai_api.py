"""The OpenAI-compatible images API through the real `openai` package, against the shared real server."""
from __future__ import annotations

import base64
import io

import httpx
import openai
import pytest
from PIL import Image

from tests.compat_clients import InThread, openai_client, running_step, wait_for


def test_generate_with_urls_served_by_the_server(server):
    client = openai_client(server)
    response = client.images.generate(
        model="dall-e-3", prompt="an orange moon", n=2, size="64x64", response_format="url", quality="hd", style="vivid"
    )
    assert len(response.data) == 2 and response.created > 0
    names = []
    for item in response.data:
        assert item.b64_json is None and item.revised_prompt == "an orange moon"
        assert item.url.startswith(server.base_url + "/images/")
        fetched = httpx.get(item.url)
        assert fetched.status_code == 200 and fetched.headers["content-type"] == "image/png"
        with Image.open(io.BytesIO(fetched.content)) as image:
            assert image.size == (64, 64) and image.info["parameters"].startswith("an orange moon\n")
        names.append(item.url.rsplit("/", 1)[-1])
    gallery = {item["name"] for item in httpx.get(f"{server.base_url}/api/gallery").json()["items"]}
    assert set(names) <= gallery


def test_generate_base64_at_the_models_native_size(server):
    client = openai_client(server)
    response = client.images.generate(prompt="a purple triangle", response_format="b64_json")
    (item,) = response.data
    assert item.url is None
    with Image.open(io.BytesIO(base64.b64decode(item.b64_json))) as image:
        assert image.format == "PNG" and image.size == (64, 64)


def test_models_lists_the_loaded_model_first_and_it_can_be_named(server):
    client = openai_client(server)
    ids = [model.id for model in client.models.list()]
    assert ids[0] == "ai-artist-tiny"
    response = client.images.generate(
        model="ai-artist-tiny", prompt="a white cloud", size="auto", response_format="b64_json"
    )
    assert len(response.data) == 1


def test_a_size_the_model_cannot_do_is_a_400_naming_the_sizes_it_can(server):
    client = openai_client(server)
    with pytest.raises(openai.BadRequestError) as raised:
        client.images.generate(prompt="too big", size="1024x1024")
    error = raised.value
    assert error.status_code == 400 and error.param == "size" and error.code == "invalid_size"
    assert error.type == "invalid_request_error"
    assert "1024x1024" in error.message and "64x64 (native)" in error.message and "256x256" in error.message


def test_unknown_model_is_a_404_in_openais_shape(server):
    with pytest.raises(openai.NotFoundError) as raised:
        openai_client(server).images.generate(model="midjourney-v9", prompt="x")
    assert raised.value.code == "model_not_found" and raised.value.param == "model"


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({}, "prompt"),
        ({"prompt": ""}, "prompt"),
        ({"prompt": "x", "n": 9}, "n"),
        ({"prompt": "x", "n": 0}, "n"),
        ({"prompt": "x", "size": "big"}, "size"),
        ({"prompt": "x", "size": "100x100"}, "size"),
        ({"prompt": "x", "response_format": "png"}, "response_format"),
        ({"prompt": "x", "output_format": "webp"}, "output_format"),
        ({"prompt": "x", "stream": True}, "stream"),
        ({"prompt": 5}, "prompt"),
    ],
)
def test_bad_parameters_are_400s_in_openais_error_shape(server, body, param):
    response = httpx.post(f"{server.base_url}/v1/images/generations", json=body)
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["type"] == "invalid_request_error" and error["param"] == param and param in error["message"]


def test_a_body_that_is_not_json_is_a_400_too(server):
    response = httpx.post(
        f"{server.base_url}/v1/images/generations", content=b"{not json", headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 400 and response.json()["error"]["type"] == "invalid_request_error"


def test_a_job_cancelled_meanwhile_is_a_409_that_the_client_does_not_retry(server):
    """Cancelled in the studio or over /api while the client waits: OpenAI's shape, and `x-should-retry: false`
    so the openai package (which retries 409s by itself) does not queue the job again."""
    client = openai_client(server, max_retries=2)
    prompt = "cancelled while an OpenAI client waits"
    call = InThread(lambda: client.images.generate(prompt=prompt, size="64x64"))
    job = wait_for(lambda: running_step(server, prompt), what="the job running")
    httpx.post(f"{server.base_url}/api/jobs/{job['session_id']}/cancel")
    with pytest.raises(openai.ConflictError) as raised:
        call.result()
    assert raised.value.code == "job_cancelled"
    jobs = httpx.get(f"{server.base_url}/api/jobs", params={"limit": 200}).json()["items"]
    assert [item["status"] for item in jobs if item["request"]["prompt"] == prompt] == ["cancelled"]
