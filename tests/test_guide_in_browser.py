"""The websocket guide's JavaScript snippets, run as written in Debian's chromium against a real server.

The snippets name http://localhost:8000; the server runs there when that port is free (else the
snippets' port is the only thing replaced). The page running them is served from 127.0.0.1, another
origin, so the API's CORS answer for external browser clients is exercised too.
"""
from __future__ import annotations

from collections.abc import Iterator

import pytest
from playwright.sync_api import Browser, ConsoleMessage, Page

from tests.fixtures.browser import JOB_TIMEOUT_MS
from tests.server_process import port_is_free

pytestmark = [pytest.mark.browser, pytest.mark.slow]

CONNECT_SNIPPET = """
const ws = new WebSocket('ws://localhost:8000/ws');

ws.onopen = () => {
    console.log('Connected!');
    // Send ping to keep alive
    ws.send(JSON.stringify({ type: 'ping' }));
};

ws.onmessage = (event) => {
    const data = JSON.parse(event.data);
    console.log('Received:', data);
};
"""

GENERATE_SNIPPET = """
// POST to /api/generate
const response = await fetch('http://localhost:8000/api/generate', {
    method: 'POST',
    headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify({
        prompt: "A serene mountain landscape at sunset",
        negative_prompt: "blurry, low quality",
        num_inference_steps: 30,
        guidance_scale: 7.5,
        num_images: 1
    })
});

const { session_id } = await response.json();

// Subscribe to updates for this session
ws.send(JSON.stringify({
    type: 'subscribe',
    session_id: session_id
}));
"""

@pytest.fixture
def guide_server(start_server):
    port = 8000 if port_is_free(8000) else None
    return start_server(port=port)


def as_written(snippet: str, port: int) -> str:
    return snippet if port == 8000 else snippet.replace("localhost:8000", f"localhost:{port}")


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    page = browser.new_page()
    page.set_default_timeout(JOB_TIMEOUT_MS)
    yield page
    page.close()


def test_guide_snippets_work_unchanged(guide_server, page):
    received: list[dict] = []
    logged: list[str] = []

    def on_console(message: ConsoleMessage) -> None:
        logged.append(message.text)
        if message.text.startswith("Received:"):
            received.append(message.args[1].json_value())

    page.on("console", on_console)
    page.goto(f"http://127.0.0.1:{guide_server.port}/api/health")
    script = as_written(CONNECT_SNIPPET, guide_server.port)
    # Both snippets run in one page scope, as they would in one <script type="module">.
    page.evaluate(
        "async () => {" + script
        + "\nawait new Promise(r => ws.readyState === 1 ? r() : ws.addEventListener('open', r));\n"
        + as_written(GENERATE_SNIPPET, guide_server.port)
        + "\nwindow.__session = session_id;"
        + "\nws.addEventListener('message', e => { if (JSON.parse(e.data).type === 'generation_complete')"
        + " window.__complete = true; }); }"
    )
    session_id = page.evaluate("window.__session")
    page.wait_for_function("window.__complete === true", timeout=120_000)
    page.wait_for_function("() => true")  # one more round trip: the console events before it have arrived
    assert "Connected!" in logged
    types = [message["type"] for message in received]
    assert types[0] == "pong" and "subscribed" in types
    progress = [m for m in received if m["type"] == "generation_progress"]
    assert progress and all(m["session_id"] == session_id for m in progress)
    (complete,) = [m for m in received if m["type"] == "generation_complete"]
    assert complete["session_id"] == session_id
    assert complete["image_paths"] and complete["metadata"]["prompt"] == "A serene mountain landscape at sunset"
