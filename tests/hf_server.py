"""A small Hugging Face-compatible file server for tests: real GGUF bytes over real HTTP.

It answers what ``huggingface_hub.hf_hub_download`` asks (HEAD, then GET with optional Range on
``/{repo_id}/resolve/{revision}/{filename}``), so downloads go through huggingface_hub's own code
and land in a genuine HF cache layout.
"""

from __future__ import annotations

import hashlib
import os
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

COMMIT = "0123456789abcdef0123456789abcdef01234567"


class HFServer:
    def __init__(self, files: dict[tuple[str, str], str]) -> None:
        self.files = {k: (p, _sha256(p)) for k, p in files.items()}
        self.requests: list[str] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *a):  # keep test output clean
                pass

            def _lookup(self):
                m = re.fullmatch(r"/([^/]+/[^/]+)/resolve/([^/]+)/(.+)", self.path.split("?")[0])
                if not m:
                    return None
                return server.files.get((m.group(1), m.group(3)))

            def _head(self, send_body: bool) -> None:
                server.requests.append(f"{self.command} {self.path}")
                hit = self._lookup()
                if hit is None:
                    self.send_response(404)
                    self.send_header("X-Error-Code", "EntryNotFound")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                path, sha = hit
                size = os.path.getsize(path)
                start, end = 0, size - 1
                rng = self.headers.get("Range")
                if rng and send_body:
                    m = re.fullmatch(r"bytes=(\d+)-(\d*)", rng)
                    start = int(m.group(1))
                    end = int(m.group(2)) if m.group(2) else size - 1
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{end}/{size}")
                else:
                    self.send_response(200)
                self.send_header("X-Repo-Commit", COMMIT)
                self.send_header("ETag", f'"{sha}"')
                self.send_header("X-Linked-Etag", f'"{sha}"')
                self.send_header("X-Linked-Size", str(size))
                self.send_header("Content-Length", str(end - start + 1))
                self.end_headers()
                if send_body:
                    with open(path, "rb") as f:
                        f.seek(start)
                        left = end - start + 1
                        while left > 0:
                            block = f.read(min(1 << 20, left))
                            if not block:
                                break
                            self.wfile.write(block)
                            left -= len(block)

            def do_HEAD(self):
                self._head(send_body=False)

            def do_GET(self):
                self._head(send_body=True)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self._thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> "HFServer":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def _sha256(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()
