"""The limits, each a config key, against one real server started with small values: request body (413), a /ws
message's size (close 1009), subscriptions per connection, WebSockets per address (429 at the handshake) and
queued jobs per client (429 naming queue.max_pending_per_client)."""
from __future__ import annotations

import asyncio
from collections.abc import Iterator

import httpx
import pytest
import websockets

from app.config import Settings
from tests.compat_clients import wait_for
from tests.server_process import ServerProcess
from tests.ws_client import WsClient

pytestmark = pytest.mark.slow

LIMITS = {
    "AI_ARTIST_SERVER__MAX_BODY_BYTES": "100000",
    "AI_ARTIST_SERVER__WS_MAX_MESSAGE_BYTES": "1024",
    "AI_ARTIST_SERVER__MAX_SUBSCRIPTIONS_PER_CONNECTION": "2",
    "AI_ARTIST_SERVER__MAX_CONNECTIONS_PER_CLIENT": "3",
    "AI_ARTIST_QUEUE__MAX_PENDING_PER_CLIENT": "2",
}


@pytest.fixture(scope="module")
def limited(model_dir, tmp_path_factory) -> Iterator[ServerProcess]:
    server = ServerProcess(model_dir, tmp_path_factory.mktemp("limited"), LIMITS)
    server.start()
    yield server
    server.stop()


def job(prompt: str, steps: int = 1) -> dict:
    return {"prompt": prompt, "num_inference_steps": steps, "width": 64, "height": 64}


def test_the_defaults_fit_an_upload_sent_as_base64_json():
    settings = Settings()
    assert settings.server.max_body_bytes >= settings.uploads.max_bytes * 4 / 3 + 1_000_000
    assert settings.server.api_keys == [] and settings.queue.max_pending_per_client <= settings.queue.max_pending


def test_a_body_over_max_body_bytes_is_413_declared_or_streamed(limited):
    big = {"prompt": "x" * 150_000}
    answer = httpx.post(f"{limited.base_url}/api/generate", json=big)
    assert answer.status_code == 413 and "server.max_body_bytes (100000 bytes)" in answer.json()["detail"]

    def chunks() -> Iterator[bytes]:  # no Content-Length: counted as it arrives
        yield b'{"prompt": "'
        for _ in range(20):
            yield b"y" * 10_000
        yield b'"}'

    streamed = httpx.post(f"{limited.base_url}/api/generate", content=chunks(),
                          headers={"Content-Type": "application/json"})
    assert streamed.status_code == 413 and "server.max_body_bytes" in streamed.json()["detail"]
    assert httpx.post(f"{limited.base_url}/api/generate", json={"prompt": ""}).status_code == 422  # small: served


async def test_a_ws_message_over_the_limit_closes_the_socket_naming_it(limited):
    async with WsClient(limited.ws_url) as ws:
        await ws.send({"type": "ping"})
        assert (await ws.recv())["type"] == "pong"
        await ws.send({"type": "ping", "padding": "z" * 2000})
        with pytest.raises(websockets.ConnectionClosed) as closed:
            await ws.recv()
    assert closed.value.rcvd.code == 1009 and "server.ws_max_message_bytes" in closed.value.rcvd.reason


async def test_subscriptions_per_connection_are_bounded(limited):
    async with httpx.AsyncClient(base_url=limited.base_url, timeout=60) as http, WsClient(limited.ws_url) as ws:
        ids = []
        for index in range(3):
            answer = await http.post("/api/generate", json=job(f"subscription {index}"))
            ids.append(answer.json()["session_id"])
            await wait_for_not_queued(http, ids[-1])
        assert (await ws.subscribe(ids[0]))["type"] == "subscribed"
        assert (await ws.subscribe(ids[1]))["type"] == "subscribed"
        refused = await ws.subscribe(ids[2])
        assert refused["type"] == "error" and "server.max_subscriptions_per_connection = 2" in refused["error"]
        await ws.send({"type": "unsubscribe", "session_id": ids[0]})
        assert (await ws.subscribe(ids[2]))["type"] == "subscribed"


async def wait_for_not_queued(http: httpx.AsyncClient, session_id: str) -> None:
    async with asyncio.timeout(120):
        while (await http.get(f"/api/jobs/{session_id}")).json()["status"] in ("queued", "running"):
            await asyncio.sleep(0.05)


async def test_websockets_per_address_are_bounded_at_the_handshake(limited):
    opened = [await websockets.connect(limited.ws_url) for _ in range(3)]
    with pytest.raises(websockets.InvalidStatus) as refused:
        await websockets.connect(limited.ws_url)
    assert refused.value.response.status_code == 429
    assert b"server.max_connections_per_client = 3" in refused.value.response.body
    await opened.pop().close()
    async with asyncio.timeout(30):  # the server sees the close, then has room again
        while True:
            try:
                opened.append(await websockets.connect(limited.ws_url))
                break
            except websockets.InvalidStatus:
                await asyncio.sleep(0.05)
    for socket in opened:
        await socket.close()


def test_queued_jobs_per_client_are_bounded_with_a_429_naming_the_limit(limited):
    base = limited.base_url
    blocker = httpx.post(f"{base}/api/generate", json=job("a long blocker", 150)).json()["session_id"]
    wait_for(lambda: httpx.get(f"{base}/api/jobs/{blocker}").json()["status"] == "running", what="blocker running")
    waiting = [httpx.post(f"{base}/api/generate", json=job(f"waiting {i}")) for i in range(2)]
    assert [answer.status_code for answer in waiting] == [200, 200]
    refused = httpx.post(f"{base}/api/generate", json=job("one too many"))
    assert refused.status_code == 429 and "queue.max_pending_per_client = 2" in refused.json()["detail"]
    a1111 = httpx.post(f"{base}/sdapi/v1/txt2img", json=job("a1111 too many"), timeout=30)
    assert a1111.status_code == 429 and "max_pending_per_client" in a1111.text
    for session_id in [blocker] + [answer.json()["session_id"] for answer in waiting]:
        httpx.post(f"{base}/api/jobs/{session_id}/cancel")


async def test_a_frame_over_two_mib_is_refused_by_the_server_before_it_is_buffered_whole(limited):
    async with WsClient(limited.ws_url) as ws:
        await ws.send("x" * (3 * 1024 * 1024))
        with pytest.raises(websockets.ConnectionClosed) as closed:
            await ws.recv()
    assert closed.value.rcvd.code == 1009
    assert "server.ws_max_message_bytes" not in closed.value.rcvd.reason  # uvicorn's frame limit, not /ws's check
    async with WsClient(limited.ws_url) as ws:  # and it goes on serving
        await ws.send({"type": "ping"})
        assert (await ws.recv())["type"] == "pong"
