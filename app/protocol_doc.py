"""Generate docs/protocol.md from the pydantic models in app/protocol.py.

    python -m app.protocol_doc          # rewrite docs/protocol.md
    python -m app.protocol_doc --check  # exit 1 when the file is stale
"""
from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import get_args

from pydantic import BaseModel

from . import protocol as p

DOC_PATH = Path(__file__).resolve().parent.parent / "docs" / "protocol.md"

REST = [
    ("POST /api/generate", p.GenerateRequest, p.GenerateResponse, "Queue a generation (from the prompt, an input image, or a masked part of it; with LoRAs). 422 names each bad field, including a mode or LoRA the loaded model cannot use; 429 when the queue is full."),
    ("POST /api/uploads", None, p.UploadResponse, "Multipart, one file field `file` (PNG, JPEG or WebP): keep an input image under a name for `init_image`/`mask_image`. 413 over uploads.max_bytes; 422 (field `file`) when it is not an image or over uploads.max_side pixels on a side."),
    ("GET /api/uploads/{name}", None, None, "A stored input image (PNG): an upload, or an input a job was sent with. 404 when unknown."),
    ("GET /api/loras", None, p.LoraList, "The LoRA files in model.lora_dir: names, hashes, and whether each fits the loaded model."),
    ("GET /api/jobs/{session_id}", None, p.JobView, "One job: status, step, ETA, images, error, timestamps. 404 when unknown."),
    ("GET /api/jobs?status=&offset=&limit=", None, p.JobPage, "Jobs, newest first, optionally filtered by status."),
    ("POST /api/jobs/{session_id}/cancel", None, p.JobView, "Cancel a queued or running job. 409 when it already ended."),
    ("GET /api/gallery?offset=&limit=", None, p.GalleryPage, "Every generated image, newest first."),
    ("GET /api/health", None, p.Health, "Server, model, queue and workers state."),
    ("GET /api/workers", None, p.WorkerView, "A JSON list of these: every worker (local processes and remote ones over Redis)."),
    ("GET /api/jobs/{session_id}/preview.jpg", None, None, "The latest live preview of a running job (JPEG); 404 when it has none."),
    ("GET /api/models", None, p.ModelList, "The current model and the local models found under assets/models and <data_dir>/models."),
    ("POST /api/model", p.ModelSwitchRequest, p.ModelSwitchResponse, "Load another model in the background (202). 409 while one is loading; 422 when it cannot be loaded here, saying what is missing."),
]
CLIENT = [
    (p.PingMessage, "Keep-alive; answered with `pong`."),
    (p.SubscribeMessage, "Follow a session. Answered with `subscribed`, then at once a snapshot (latest progress, or the terminal message) or, with `after_seq`, every stored message after it."),
    (p.UnsubscribeMessage, "Stop following a session."),
    (p.CancelMessage, "Cancel a queued or running session."),
]
SERVER = [
    (p.PongMessage, "Answer to `ping`."),
    (p.SubscribedMessage, "Subscription confirmed, with the session's status and latest seq."),
    (p.UnsubscribedMessage, "Unsubscription confirmed."),
    (p.ErrorMessage, "Malformed JSON, unknown type, invalid fields or unknown session. The connection stays open."),
    (p.ModelLoading, "To every client while a model downloads from the hub (about every half second), and once when done."),
    (p.GenerationQueued, "Waiting; sent again whenever the position changes (1 = next)."),
    (p.GenerationStarted, "A worker (named in `worker`) started the job; sent again when another worker takes it over."),
    (p.GenerationProgress, "After each denoising step. Coalesced (latest wins) for a client that reads slowly."),
    (p.GenerationPreview, "A cheap preview of the first image; only to subscribers that asked with `previews: true`."),
    (p.GenerationComplete, "Terminal: the images and their parameters."),
    (p.GenerationError, "Terminal: the job failed; `error` says why and what to try."),
    (p.GenerationCancelled, "Terminal: the job was cancelled."),
]


def _schema(model: type[BaseModel]) -> str:
    return "```json\n" + json.dumps(model.model_json_schema(), indent=2, sort_keys=True) + "\n```"


def _type_of(model: type[BaseModel]) -> str:
    (literal,) = get_args(model.model_fields["type"].annotation)
    return literal


def render() -> str:
    lines = [
        "# AI Artist protocol",
        "",
        "Generated from `app/protocol.py` by `python -m app.protocol_doc`; a test fails when this file is stale.",
        "Every message is JSON. Every message about a session carries `session_id` and `seq`, which grows by",
        "one with each message of that session (also across server restarts), so a client can resume with",
        "`subscribe {session_id, after_seq}` after a disconnect and miss nothing.",
        "",
        "The AUTOMATIC1111-compatible (`/sdapi/v1/*`) and OpenAI-compatible (`/v1/images/*`, `/v1/models`) routes",
        "speak those APIs' own formats: see [compatibility.md](compatibility.md).",
        "",
        "With `server.api_keys` set, every route but `GET /api/health` needs `Authorization: Bearer KEY` (401",
        "otherwise) and `/ws` needs `?token=KEY` (refused at the handshake with HTTP 403 otherwise). Browser",
        "pages of other origins are refused (403) unless listed in `server.cors_origins`. Bodies, `/ws` messages,",
        "subscriptions per connection, connections per address and queued jobs per client are limited: see",
        "[security.md](security.md).",
        "",
        "## REST",
        "",
    ]
    for route, body, response, summary in REST:
        lines += [f"### `{route}`", "", summary, ""]
        if body is not None:
            lines += [f"Request body `{body.__name__}`:", "", _schema(body), ""]
        if response is not None:
            lines += [f"Response `{response.__name__}`:", "", _schema(response), ""]
    lines += ["## WebSocket `/ws`: client to server", ""]
    for model, summary in CLIENT:
        lines += [f"### `{_type_of(model)}`", "", summary, "", _schema(model), ""]
    lines += ["## WebSocket `/ws`: server to client", ""]
    for model, summary in SERVER:
        lines += [f"### `{_type_of(model)}`", "", summary, "", _schema(model), ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    text = render()
    if "--check" in args:
        current = DOC_PATH.read_text() if DOC_PATH.exists() else ""
        if current != text:
            print(f"{DOC_PATH} is stale: run python -m app.protocol_doc", file=sys.stderr)
            return 1
        return 0
    DOC_PATH.parent.mkdir(parents=True, exist_ok=True)
    DOC_PATH.write_text(text)
    print(f"wrote {DOC_PATH}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
