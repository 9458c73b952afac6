"""API keys against a real server: REST (Bearer), /ws (?token=), the A1111 API through `webuiapi` (HTTP Basic),
the OpenAI API through `openai` (Bearer), images and uploads; the key generated for a non-loopback host."""
from __future__ import annotations

import asyncio
import base64
import io
import re

import httpx
import openai
import pytest
import websockets
from PIL import Image

from tests.compat_clients import SMALL, a1111_client, openai_client
from tests.ws_client import WsClient, for_session, is_terminal

CLI_KEYS = ["cli-key-one", "cli-key-two"]
ENV_KEYS = "env-key-a, env-key-b"


@pytest.fixture
def keyed(start_server):
    return start_server(args=[arg for key in CLI_KEYS for arg in ("--api-key", key)],
                        env={"AI_ARTIST_SERVER__API_KEYS": ENV_KEYS})


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def png() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (64, 64), "red").save(buffer, "PNG")
    return buffer.getvalue()


def test_every_route_but_health_needs_a_key_and_every_configured_key_works(keyed):
    base = keyed.base_url
    assert httpx.get(f"{base}/api/health").status_code == 200
    for method, path in [("GET", "/api/gallery"), ("GET", "/api/jobs"), ("POST", "/api/generate"),
                         ("GET", "/api/models"), ("GET", "/images/x.png"), ("GET", "/api/uploads/x.png"),
                         ("GET", "/openapi.json"), ("GET", "/docs"), ("GET", "/test/websocket"), ("GET", "/"),
                         ("GET", "/sdapi/v1/samplers"), ("GET", "/v1/models")]:
        answer = httpx.request(method, base + path, json={} if method == "POST" else None)
        assert answer.status_code == 401, (path, answer.status_code)
        assert answer.headers["www-authenticate"].startswith(("Bearer", "Basic")), path
        wrong = httpx.request(method, base + path, headers=bearer("nope"))
        assert wrong.status_code == 401, path
    for key in [*CLI_KEYS, "env-key-a", "env-key-b"]:
        assert httpx.get(f"{base}/api/gallery", headers=bearer(key)).status_code == 200, key
    assert httpx.get(f"{base}/sdapi/v1/samplers").headers["www-authenticate"].startswith("Basic")
    # A browser asking for a page goes to the sign-in page instead.
    page = httpx.get(f"{base}/", headers={"Accept": "text/html"})
    assert page.status_code == 303 and page.headers["location"].startswith("/signin?next=")
    # NiceGUI's own socket needs the sign-in (or a key) too.
    socket_io = keyed.ws_url.removesuffix("/ws") + "/_nicegui_ws/socket.io/?EIO=4&transport=websocket"
    assert asyncio.run(handshake_status(socket_io)) == 403
    assert asyncio.run(handshake_status(socket_io, bearer(CLI_KEYS[0]))) == 101
    # A wrong key on the sign-in page: 401 again, and a warning in the log (without the key).
    wrong = httpx.post(f"{base}/signin", data={"key": "guessed-key", "next": "/"})
    assert wrong.status_code == 401 and "That key is not right." in wrong.text
    signed = httpx.post(f"{base}/signin", data={"key": "env-key-b", "next": "/docs"})
    assert signed.status_code == 303 and signed.headers["location"] == "/docs"
    assert "HttpOnly" in signed.headers["set-cookie"] and "env-key-b" not in signed.headers["set-cookie"]
    log = (keyed.data_dir / "logs" / "ai-artist.log").read_text()
    assert "failed sign-in to the studio from 127.0.0.1" in log and "guessed-key" not in log


async def handshake_status(url: str, headers: dict[str, str] | None = None) -> int:
    try:
        async with websockets.connect(url, additional_headers=headers or {}, open_timeout=30):
            return 101
    except websockets.InvalidStatus as refused:
        return refused.response.status_code


async def test_a_job_with_a_key_over_rest_and_ws_and_its_image_and_upload_are_protected(keyed):
    key, base = CLI_KEYS[1], keyed.base_url
    with pytest.raises(websockets.InvalidStatus) as refused:
        async with websockets.connect(keyed.ws_url):
            pass
    assert refused.value.response.status_code == 403
    with pytest.raises(websockets.InvalidStatus) as wrong:
        async with websockets.connect(keyed.ws_url + "?token=wrong"):
            pass
    assert wrong.value.response.status_code == 403
    async with httpx.AsyncClient(base_url=base, headers=bearer(key), timeout=60) as http, \
            WsClient(f"{keyed.ws_url}?token={key}") as ws:
        uploaded = (await http.post("/api/uploads", files={"file": ("in.png", png(), "image/png")})).json()
        answer = await http.post("/api/generate", json={"prompt": "a keyed fox", "num_inference_steps": 2, **SMALL})
        session_id = answer.json()["session_id"]
        assert (await ws.subscribe(session_id))["type"] == "subscribed"
        done = (await ws.recv_until(for_session(session_id, is_terminal)))[-1]
        assert done["type"] == "generation_complete"
        image_url = (await http.get(f"/api/jobs/{session_id}")).json()["image_urls"][0]
        assert (await http.get(image_url)).status_code == 200
        assert (await http.get(uploaded["url"])).status_code == 200
    async with httpx.AsyncClient(base_url=base) as anonymous:
        assert (await anonymous.get(image_url)).status_code == 401
        assert (await anonymous.get(uploaded["url"])).status_code == 401
    # The keys never reach the log file.
    log = (keyed.data_dir / "logs" / "ai-artist.log").read_text()
    assert not any(secret in log for secret in [*CLI_KEYS, "env-key-a", "env-key-b"])


def test_a1111_clients_sign_in_with_http_basic_and_openai_clients_with_bearer(keyed):
    key = CLI_KEYS[0]
    signed_in = a1111_client(keyed, username="anyone", password=key)
    result = signed_in.txt2img(prompt="a basic-auth cat", steps=2, seed=3, **SMALL)
    assert len(result.images) == 1
    assert signed_in.util_get_current_model() == "ai-artist-tiny"
    refused = httpx.get(f"{keyed.base_url}/sdapi/v1/sd-models", auth=("anyone", "not-the-key"))
    assert refused.status_code == 401 and refused.headers["www-authenticate"].startswith("Basic")

    client = openai_client(keyed, api_key=key)
    response = client.images.generate(prompt="a bearer owl", size="64x64", response_format="b64_json")
    assert Image.open(io.BytesIO(base64.b64decode(response.data[0].b64_json))).size == (64, 64)
    with pytest.raises(openai.AuthenticationError) as raised:
        openai_client(keyed, api_key="wrong").models.list()
    assert raised.value.status_code == 401 and raised.value.code == "invalid_api_key"


def test_a_non_loopback_host_without_a_key_gets_one_printed_once(start_server):
    server = start_server(args=["--host", "0.0.0.0"])
    output = server.output()
    (key,) = set(re.findall(r"\?token=([\w-]+)", output))
    assert output.count(f"?token={key}") == len(re.findall(r"http://\S+\?token=", output))  # one line of URLs
    assert httpx.get(f"{server.base_url}/api/gallery").status_code == 401
    assert httpx.get(f"{server.base_url}/api/gallery", headers=bearer(key)).status_code == 200
    # Opening the printed URL signs the browser in (a session cookie), like Jupyter's.
    with httpx.Client(base_url=server.base_url) as browser:
        assert browser.get(f"/?token={key}").status_code == 200
        assert browser.get("/api/gallery").status_code == 200
    assert key not in (server.data_dir / "logs" / "ai-artist.log").read_text()


def test_no_auth_serves_a_non_loopback_host_without_a_key_and_says_so(start_server):
    server = start_server(args=["--host", "0.0.0.0", "--no-auth"])
    assert "--no-auth" in server.output() and "?token=" not in server.output()
    assert httpx.get(f"{server.base_url}/api/gallery").status_code == 200
