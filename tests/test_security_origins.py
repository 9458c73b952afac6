"""Origin checks against real servers: another web page cannot use /ws, NiceGUI's socket or any state-changing
route, whether or not a key is set; `Origin: null` and `Sec-Fetch-Site: cross-site` likewise; scripts without an
Origin are judged by the key alone; origins in server.cors_origins are let in."""
from __future__ import annotations

import asyncio

import httpx
import pytest
import websockets

EVIL = "http://evil.example"
SOCKET_IO = "/_nicegui_ws/socket.io/?EIO=4&transport=websocket"
JOB = {"prompt": "an origin-checked owl", "num_inference_steps": 1, "width": 64, "height": 64}


def handshake_status(url: str, headers: dict[str, str]) -> int:
    """101 when the WebSocket opened (and answered a ping), else the HTTP status of the refusal."""
    return asyncio.run(_handshake(url, headers))


async def _handshake(url: str, headers: dict[str, str]) -> int:
    try:
        async with websockets.connect(url, additional_headers=headers, open_timeout=30) as socket:
            await socket.ping()
            return 101
    except websockets.InvalidStatus as refused:
        return refused.response.status_code


@pytest.mark.parametrize("headers", [
    {"Origin": EVIL},
    {"Origin": "null"},
    {"Origin": "http://127.0.0.1.evil.example"},
    {"Sec-Fetch-Site": "cross-site"},
])
def test_other_origins_are_refused_at_the_handshake_and_on_posts(server, headers):
    ws_base = server.ws_url.removesuffix("/ws")
    assert handshake_status(server.ws_url, headers) == 403
    assert handshake_status(ws_base + SOCKET_IO, headers) == 403
    for path, body in [("/api/generate", JOB), ("/api/model", {"model": "x"}), ("/sdapi/v1/txt2img", JOB),
                       ("/v1/images/generations", {"prompt": "x"}), ("/api/jobs/x/cancel", None)]:
        answer = httpx.post(server.base_url + path, json=body, headers=headers)
        assert answer.status_code == 403, (path, answer.status_code)
        assert "refused" in answer.text or "not allowed" in answer.text


def test_same_origin_local_origins_and_scripts_without_origin_are_served(server):
    own = {"Origin": server.base_url}
    assert handshake_status(server.ws_url, own) == 101
    assert handshake_status(server.ws_url, {"Origin": "http://localhost:5173"}) == 101  # cors_origins default
    assert handshake_status(server.ws_url, {}) == 101
    assert handshake_status(server.ws_url, {"Sec-Fetch-Site": "same-origin"}) == 101
    for headers in (own, {}, {"Origin": "http://localhost:5173", "Sec-Fetch-Site": "same-site"}):
        answer = httpx.post(f"{server.base_url}/api/generate", json={"prompt": ""}, headers=headers)
        assert answer.status_code == 422, headers  # reached the route (an empty prompt is refused there)
    # Reading is fine from anywhere without an Origin (links, images); a cross-origin fetch is refused.
    assert httpx.get(f"{server.base_url}/api/health", headers={"Sec-Fetch-Site": "cross-site"}).status_code == 200
    assert httpx.get(f"{server.base_url}/api/gallery", headers={"Origin": EVIL}).status_code == 403


def test_a_keyless_loopback_studio_answers_loopback_host_names_only(server):
    """DNS rebinding: evil.example re-pointed at 127.0.0.1 is same-origin to itself; its Host gives it away."""
    rebound = {"Host": f"evil.example:{server.port}", "Origin": f"http://evil.example:{server.port}"}
    assert httpx.get(f"{server.base_url}/api/gallery", headers={"Host": "evil.example"}).status_code == 403
    assert httpx.post(f"{server.base_url}/api/generate", json=JOB, headers=rebound).status_code == 403
    assert handshake_status(server.ws_url, rebound) == 403
    for host in ("localhost", "127.0.0.1", "[::1]"):
        assert httpx.get(f"{server.base_url}/api/health", headers={"Host": f"{host}:{server.port}"}).status_code == 200


def test_with_a_key_other_origins_are_still_refused_and_configured_ones_let_in(start_server):
    server = start_server(args=["--api-key", "k"], env={"AI_ARTIST_SERVER__CORS_ORIGINS": r"https://app\.example"})
    token_url = server.ws_url + "?token=k"
    assert handshake_status(token_url, {"Origin": EVIL}) == 403
    assert handshake_status(token_url, {"Origin": "null"}) == 403
    assert handshake_status(token_url, {"Origin": "https://app.example"}) == 101
    assert handshake_status(server.ws_url, {"Origin": "https://app.example"}) == 403  # still needs the key
    key = {"Authorization": "Bearer k"}
    assert httpx.post(f"{server.base_url}/api/generate", json=JOB, headers={**key, "Origin": EVIL}).status_code == 403
    allowed = httpx.post(f"{server.base_url}/api/generate", json=JOB, headers={**key, "Origin": "https://app.example"})
    assert allowed.status_code == 200 and allowed.headers["access-control-allow-origin"] == "https://app.example"
    # A key set: any Host name is served (the key is the guard; a LAN name, a reverse proxy).
    assert httpx.get(f"{server.base_url}/api/gallery", headers={**key, "Host": "studio.lan"}).status_code == 200
