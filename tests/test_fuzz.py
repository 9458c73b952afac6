"""Property-based tests against one real server: every REST route from its OpenAPI schema (schemathesis) and
every /ws client message (hypothesis: random JSON, wrong types, huge numbers, unicode, deep nesting). Never a
500, never a dropped connection or a crash, and a normal job still runs afterwards. The counts of cases tried
go to test-artifacts/fuzz-figures.json (quoted in docs/security.md)."""
from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from websockets.sync.client import connect

from app.protocol import client_message_types
from tests.server_process import PROJECT_ROOT, ServerProcess

pytestmark = pytest.mark.slow

REST_EXAMPLES = 25  # per operation: about 45 operations
WS_EXAMPLES = 400
FIGURES = PROJECT_ROOT / "test-artifacts" / "fuzz-figures.json"
tried: Counter[str] = Counter()


@pytest.fixture(scope="module")
def fuzzed(model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """A server of its own: a short queue (fuzzed jobs mostly answer 429 fast) and no model downloads."""
    data_dir = tmp_path_factory.mktemp("fuzzed")
    env = {"AI_ARTIST_QUEUE__MAX_PENDING": "2", "HF_HUB_OFFLINE": "1", "HF_HOME": str(data_dir / "hf-home")}
    server = ServerProcess(model_dir, data_dir, env)
    server.start()
    yield server
    server.stop()
    FIGURES.parent.mkdir(exist_ok=True)
    FIGURES.write_text(json.dumps(dict(tried), indent=1))


def test_no_rest_route_answers_500(fuzzed: ServerProcess) -> None:
    """Each operation of /openapi.json in turn, with cases schemathesis generates from its schema."""
    rest_schema = schemathesis.openapi.from_url(f"{fuzzed.base_url}/openapi.json")
    operations = [result.ok() for result in rest_schema.get_all_operations()]
    failures: list[str] = []
    for operation in operations:
        tried["rest operations"] += 1

        @given(operation.as_strategy())
        @settings(max_examples=REST_EXAMPLES, deadline=None, derandomize=True, database=None,
                  suppress_health_check=list(HealthCheck))
        def never_500(case) -> None:
            response = case.call(timeout=120)
            tried["rest cases"] += 1
            tried[f"rest {response.status_code}"] += 1
            if response.status_code >= 500:
                failures.append(f"{case.method} {case.formatted_path} {case.body!r:.200}: "
                                f"{response.status_code} {response.text[:300]}")

        never_500()
    assert not failures, "\n".join(failures)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(min_value=-(2**80), max_value=2**80) | st.floats() | st.text(),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=20,
)
wrong_or_right = st.one_of(json_values, st.uuids().map(str), st.text(min_size=1, max_size=40),
                           st.integers(min_value=-(2**70), max_value=2**70))
client_messages = st.one_of(
    json_values.map(json.dumps),
    st.fixed_dictionaries(
        {"type": st.sampled_from(client_message_types())},
        optional={"session_id": wrong_or_right, "previews": wrong_or_right, "after_seq": wrong_or_right},
    ).map(json.dumps),
    st.integers(min_value=1, max_value=20_000).map(lambda depth: "[" * depth + "]" * depth),
    st.integers(min_value=1, max_value=10_000).map(lambda depth: '{"a":' * depth + "1" + "}" * depth),  # < 64 KiB
    st.text(max_size=200),  # not JSON at all
    st.binary(max_size=200),  # a binary frame
)


def test_no_ws_message_breaks_the_connection_or_the_server(fuzzed: ServerProcess) -> None:
    with connect(fuzzed.ws_url, max_size=None, open_timeout=30) as socket:

        @given(client_messages)
        @settings(max_examples=WS_EXAMPLES, deadline=None, derandomize=True, database=None,
                  suppress_health_check=list(HealthCheck))
        def answers_then_pongs(message: str | bytes) -> None:
            tried["ws messages"] += 1
            socket.send(message)
            socket.send(json.dumps({"type": "ping"}))
            while True:  # whatever the answer to the message, the ping after it is answered: still serving
                answer = json.loads(socket.recv(timeout=30))
                tried[f"ws answer {answer['type']}"] += 1
                if answer["type"] == "pong":
                    return

        answers_then_pongs()


def test_a_normal_job_still_runs_after_the_fuzzing(fuzzed: ServerProcess, model_dir: Path) -> None:
    base = fuzzed.base_url
    if httpx.get(f"{base}/api/health").json()["model"]["id"] != str(model_dir):  # the fuzzer may switch models
        httpx.post(f"{base}/api/model", json={"model": str(model_dir)}).raise_for_status()
    fuzzed.wait_until(lambda health: health["model"]["state"] == "ready" and health["queue"]["pending"] == 0,
                      timeout=300)
    with connect(fuzzed.ws_url, open_timeout=30) as socket:
        body = {"prompt": "after the fuzz", "num_inference_steps": 2, "width": 64, "height": 64}
        session_id = httpx.post(f"{base}/api/generate", json=body).json()["session_id"]
        socket.send(json.dumps({"type": "subscribe", "session_id": session_id}))
        while (message := json.loads(socket.recv(timeout=120)))["type"] not in (
                "generation_complete", "generation_error", "generation_cancelled"):
            pass
    assert message["type"] == "generation_complete", message
    log = (fuzzed.data_dir / "logs" / "ai-artist.log").read_text()
    assert "Traceback" not in log and "Task exception was never retrieved" not in log, log[-3000:]
