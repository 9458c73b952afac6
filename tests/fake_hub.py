"""A minimal local stand-in for the Hugging Face hub's HTTP API, serving diffusers folders, so the real
download path (`DiffusionPipeline.download` -> huggingface_hub) runs offline with `HF_ENDPOINT` set.

Serves `GET /api/models/{repo}[/revision/{rev}]` (model info with file sizes) and
`HEAD/GET /{repo}/resolve/{rev}/{path}` (files, with the commit and ETag headers the client checks).
"""
from __future__ import annotations

import hashlib
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlparse

COMMIT = "0123456789abcdef0123456789abcdef01234567"


class FakeHub:
    def __init__(self, repos: dict[str, Path], gate: threading.Event | None = None) -> None:
        """`gate`: when given, weight files (.safetensors) are held back until it is set: configs come at
        once, and the download stays in progress (the model "loading") until the test says."""
        self.repos = repos
        self.gate = gate
        self.requests: list[str] = []
        hub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_HEAD(self) -> None:
                hub._serve(self, body=False)

            def do_GET(self) -> None:
                hub._serve(self, body=True)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def __enter__(self) -> "FakeHub":
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()

    def _files(self, repo: str) -> dict[str, Path]:
        root = self.repos[repo]
        return {p.relative_to(root).as_posix(): p for p in sorted(root.rglob("*")) if p.is_file()}

    def _send(self, handler: BaseHTTPRequestHandler, status: int, data: bytes, headers: dict[str, str], body: bool) -> None:
        handler.send_response(status)
        for key, value in headers.items():
            handler.send_header(key, value)
        handler.send_header("Content-Length", str(len(data)))
        handler.end_headers()
        if body:
            handler.wfile.write(data)

    def _serve(self, handler: BaseHTTPRequestHandler, body: bool) -> None:
        path = unquote(urlparse(handler.path).path)
        self.requests.append(f"{handler.command} {path}")
        parts = path.strip("/").split("/")
        if parts[:2] == ["api", "models"] and len(parts) >= 4:
            repo = "/".join(parts[2:4])
            if repo not in self.repos:
                return self._send(handler, 404, b'{"error":"Repository not found"}', {"X-Error-Code": "RepoNotFound"}, body)
            files = self._files(repo)
            if len(parts) >= 6 and parts[4] == "tree":  # list_repo_tree: every file, recursively
                prefix = "/".join(parts[6:])
                entries = [
                    {"type": "file", "path": name, "size": file.stat().st_size,
                     "oid": hashlib.sha1(file.read_bytes()).hexdigest()}
                    for name, file in files.items() if name.startswith(prefix)
                ]
                return self._send(handler, 200, json.dumps(entries).encode(), {"Content-Type": "application/json"}, body)
            siblings = [{"rfilename": name, "size": file.stat().st_size} for name, file in files.items()]
            info = {"id": repo, "modelId": repo, "sha": COMMIT, "siblings": siblings, "private": False,
                    "gated": False, "disabled": False, "tags": [], "downloads": 0, "likes": 0}
            return self._send(handler, 200, json.dumps(info).encode(), {"Content-Type": "application/json"}, body)
        if len(parts) >= 5 and parts[2] == "resolve":
            repo, name = "/".join(parts[:2]), "/".join(parts[4:])
            file = self._files(repo).get(name) if repo in self.repos else None
            if file is None:
                return self._send(handler, 404, b"not found", {"X-Error-Code": "EntryNotFound"}, body)
            if body and self.gate is not None and name.endswith(".safetensors"):
                self.gate.wait()
            data = file.read_bytes()
            headers = {"X-Repo-Commit": COMMIT, "ETag": f'"{hashlib.sha256(data).hexdigest()}"',
                       "Content-Type": "application/octet-stream"}
            return self._send(handler, 200, data, headers, body)
        self._send(handler, 404, b"not found", {}, body)
