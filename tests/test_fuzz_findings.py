"""What the fuzzing (tests/test_fuzz.py) found, each kept as a plain test against the shared real server."""
from __future__ import annotations

import httpx
import pytest

from tests.ws_client import WsClient


@pytest.mark.parametrize("path", ["/api/gallery", "/api/jobs"])
def test_an_offset_beyond_sqlite_integers_is_a_422_not_a_500(server, path):
    answer = httpx.get(f"{server.base_url}{path}", params={"offset": 2**70})
    assert answer.status_code == 422 and answer.json()["detail"][0]["loc"] == ["query", "offset"]


def test_a1111_random_seed_with_a_huge_batch_is_a_422_naming_batch_size(server):
    body = {"prompt": "x", "seed": -1, "batch_size": 10**24, "width": 64, "height": 64}
    answer = httpx.post(f"{server.base_url}/sdapi/v1/txt2img", json=body, timeout=60)
    assert answer.status_code == 422, answer.text
    assert "batch_size" in [problem["loc"][-1] for problem in answer.json()["detail"]]


@pytest.mark.parametrize("nested", ["[" * 5000 + "]" * 5000, '{"a":' * 5000 + "1" + "}" * 5000])
async def test_deeply_nested_json_on_ws_is_an_error_answer_not_a_dropped_socket(server, nested):
    async with WsClient(server.ws_url) as ws:
        await ws.send(nested)
        answer = await ws.recv()
        assert answer["type"] == "error" and "nested too deeply" in answer["error"]
        await ws.send({"type": "ping"})
        assert (await ws.recv())["type"] == "pong"
