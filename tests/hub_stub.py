"""A minimal Hugging Face hub on 127.0.0.1: the endpoints huggingface_hub calls for model_info,
snapshot_download and hf_hub_download, so tests run the real client code without the network."""

from __future__ import annotations

import hashlib
import json
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote, urlsplit


@dataclass
class StubRepo:
    files: dict[str, bytes]
    sha: str = "0123456789abcdef0123456789abcdef01234567"
    gated: bool = False
    revisions: tuple[str, ...] = ("main",)


@dataclass
class StubHub:
    repos: dict[str, StubRepo] = field(default_factory=dict)
    requests: list[str] = field(default_factory=list)


def _oid(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def make_handler(hub: StubHub) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: object) -> None:  # keep pytest output clean
            pass

        def _send(self, status: int, body: bytes = b"", headers: dict[str, str] | None = None) -> None:
            self.send_response(status)
            for key, value in (headers or {}).items():
                self.send_header(key, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        def _error(self, status: int, code: str, message: str) -> None:
            body = json.dumps({"error": message}).encode()
            self._send(
                status,
                body,
                {"X-Error-Code": code, "X-Error-Message": message, "Content-Type": "application/json"},
            )

        def _repo(self, repo_id: str, revision: str | None) -> StubRepo | None:
            repo = hub.repos.get(repo_id)
            if repo is None:
                self._error(404, "RepoNotFound", "Repository not found")
                return None
            if revision is not None and revision not in (*repo.revisions, repo.sha):
                self._error(404, "RevisionNotFound", "Invalid rev id")
                return None
            return repo

        def do_HEAD(self) -> None:
            self.do_GET()

        def do_GET(self) -> None:
            path = unquote(urlsplit(self.path).path)
            hub.requests.append(f"{self.command} {path}")
            parts = path.strip("/").split("/")
            if parts[:2] == ["api", "models"]:
                repo_id = "/".join(parts[2:4])
                rest = parts[4:]
                revision = rest[1] if len(rest) >= 2 else None
                repo = self._repo(repo_id, revision)
                if repo is None:
                    return
                if not rest or rest[0] == "revision":
                    siblings = [
                        {"rfilename": n, "size": len(d), "blobId": _oid(d)}
                        | (
                            {
                                "lfs": {
                                    "size": len(d),
                                    "sha256": hashlib.sha256(d).hexdigest(),
                                    "pointerSize": 134,
                                }
                            }
                            if n.endswith(".safetensors")
                            else {}
                        )
                        for n, d in repo.files.items()
                    ]
                    info = {
                        "id": repo_id,
                        "modelId": repo_id,
                        "sha": repo.sha,
                        "private": False,
                        "gated": "manual" if repo.gated else False,
                        "siblings": siblings,
                        "tags": [],
                    }
                    self._send(200, json.dumps(info).encode(), {"Content-Type": "application/json"})
                elif rest[0] == "tree":
                    tree = [
                        {"type": "file", "path": n, "size": len(d), "oid": _oid(d)}
                        for n, d in repo.files.items()
                    ]
                    self._send(200, json.dumps(tree).encode(), {"Content-Type": "application/json"})
                else:
                    self._error(404, "EntryNotFound", "unknown api path")
                return
            if len(parts) >= 5 and parts[2] == "resolve":
                repo_id, revision, filename = "/".join(parts[:2]), parts[3], "/".join(parts[4:])
                repo = self._repo(repo_id, revision)
                if repo is None:
                    return
                if repo.gated:
                    self._error(
                        403, "GatedRepo", "Access to model is restricted. You must have access to it."
                    )
                    return
                if filename not in repo.files:
                    self._error(404, "EntryNotFound", "Entry not found")
                    return
                data = repo.files[filename]
                headers = {
                    "ETag": f'"{_oid(data)}"',
                    "X-Repo-Commit": repo.sha,
                    "Accept-Ranges": "bytes",
                    "Content-Type": "application/octet-stream",
                }
                start = 0
                if (ranged := self.headers.get("Range")) and ranged.startswith("bytes="):
                    start = int(ranged[6:].split("-")[0] or 0)
                    headers["Content-Range"] = f"bytes {start}-{len(data) - 1}/{len(data)}"
                    self._send(206, data[start:], headers)
                    return
                self._send(200, data, headers)
                return
            self._error(404, "EntryNotFound", "unknown path")

    return Handler


class RunningHub:
    def __init__(self, hub: StubHub) -> None:
        self.hub = hub
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), make_handler(hub))
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def __enter__(self) -> RunningHub:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join()
