"""A local Hugging Face Hub for tests: real bytes over real HTTP, driven by the real ``huggingface_hub`` client.

It answers what ``huggingface_hub`` (2.x) asks of huggingface.co, so search, model info, tree listings and downloads
go through huggingface_hub's own code and land in a genuine HF cache layout:

- ``GET /api/models`` (search, filter, author, sort, limit, expand/full),
- ``GET /api/models/{repo}`` and ``.../revision/{rev}`` (model info, ``blobs=true`` for sizes and LFS sha256),
- ``GET /api/models/{repo}/tree/{rev}[/{path}]`` and ``POST .../paths-info/{rev}``,
- ``GET /api/models/{repo}/auth-check`` (gated repos),
- ``HEAD``/``GET /{repo}/resolve/{rev}/{path}``: small files are served directly; LFS files (``.gguf``, or 10 MB and
  more) answer ``302`` to a content-addressed CDN, ``{cdn_url}/cdn/{sha256}``, which supports ``Range``.

The CDN is a second listener on another port, so it is another origin than ``url``, as the real CDN is another host
than huggingface.co: huggingface_hub then stops its metadata ``HEAD`` at the ``302`` (reading ``X-Linked-Size`` /
``X-Linked-Etag`` there) and drops the ``Authorization`` header when it downloads from the CDN, exactly as with the
Hub. ``{url}/cdn/{sha256}`` serves the same bytes.

Faults for download tests (all keyed by a file's path in its repo, or its basename): ``drop_after`` (the next full GET
stops after N body bytes and the socket is closed: the client sees a premature end of the body), ``reset_after`` (the
same, but the socket is reset: the client sees "connection reset by peer"), ``corrupt`` (one byte flipped, same size,
the true sha256 still advertised), ``throttle_bps`` (slow bodies, e.g. to cancel mid-download). ``bytes_served``
counts the body bytes written.

Constructor forms::

    HFServer({(repo_id, filename): local_path})          # the original form: one repo per repo_id, defaults
    HFServer(repos={"org/name": Repo(files={...}, downloads=10, gated=True)}, tokens={"hf_ok"})
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import socket
import struct
import sys
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, quote, unquote, urlsplit

COMMIT = "0123456789abcdef0123456789abcdef01234567"
LFS_THRESHOLD = 10 * 1000 * 1000  # files this big (or any .gguf) are stored with git LFS and served by the CDN

# what `expand=` accepts on the Hub (huggingface_hub's ExpandModelProperty_T); anything else is a 400 there
EXPANDABLE = frozenset(
    [
        "author",
        "baseModels",
        "cardData",
        "childrenModelCount",
        "config",
        "createdAt",
        "disabled",
        "downloads",
        "downloadsAllTime",
        "evalResults",
        "gated",
        "gguf",
        "inference",
        "inferenceProviderMapping",
        "lastModified",
        "library_name",
        "likes",
        "mask_token",
        "model-index",
        "pipeline_tag",
        "private",
        "resourceGroup",
        "safetensors",
        "sha",
        "siblings",
        "spaces",
        "tags",
        "transformersInfo",
        "trendingScore",
        "usedStorage",
        "widgetData",
    ]
)
# what /api/models returns per model without expand/full
LIGHT = ("likes", "downloads", "trendingScore", "tags", "pipeline_tag", "library_name", "createdAt", "private")
SORTS = {"downloads", "likes", "lastModified", "createdAt", "trendingScore"}


@dataclass
class Repo:
    files: dict[str, str | bytes]  # path in repo (may include folders) -> local file path, or literal bytes
    downloads: int = 0
    likes: int = 0
    last_modified: str = "2026-01-01T00:00:00.000Z"
    created_at: str = "2025-01-01T00:00:00.000Z"
    tags: list[str] = field(default_factory=lambda: ["gguf"])
    pipeline_tag: str | None = "text-generation"
    gated: bool = False  # True: resolve (downloads) and auth-check need a token listed in HFServer.tokens
    gguf: dict | None = None  # the Hub's 'gguf' field, e.g. {"total": 134515008, "architecture": "llama", ...}
    sha: str = COMMIT  # commit id
    trending_score: int = 0
    library_name: str | None = None


@dataclass
class _Blob:
    path: str  # path in repo
    source: str | bytes
    size: int
    sha256: str
    lfs: bool
    blob_id: str  # git blob sha1 (of the LFS pointer for LFS files)
    pointer_size: int | None

    @property
    def basename(self) -> str:
        return self.path.rsplit("/", 1)[-1]


class _HTTPError(Exception):
    def __init__(self, status: int, message: str, code: str | None = None, headers: dict | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.code, self.headers = status, message, code, headers or {}


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address) -> None:
        if isinstance(sys.exc_info()[1], (ConnectionError, TimeoutError)):
            return  # a client that went away (cancelled download, dropped connection): not worth a traceback
        super().handle_error(request, client_address)


class HFServer:
    def __init__(
        self,
        files: dict[tuple[str, str], str] | None = None,
        *,
        repos: dict[str, Repo] | None = None,
        tokens: set[str] | frozenset[str] = frozenset(),
    ) -> None:
        self.repos: dict[str, Repo] = dict(repos or {})
        for (repo_id, filename), local in (files or {}).items():
            self.repos.setdefault(repo_id, Repo(files={})).files[filename] = local
        self.tokens: set[str] = set(tokens)
        self.requests: list[str] = []  # "METHOD /raw/path?query", in order, both listeners
        self.log: list[dict] = []  # {"method","path" (decoded),"query","range","auth","status"} per request
        self.drop_after: dict[str, int] = {}  # one-shot: the next full GET ends after N body bytes (FIN)
        self.reset_after: dict[str, int] = {}  # one-shot: the next full GET ends after N body bytes (RST)
        self.corrupt: set[str] = set()
        self.throttle_bps: int | None = None
        self.bytes_served: dict[str, int] = {}
        self._lock = threading.Lock()

        self._blobs: dict[str, dict[str, _Blob]] = {
            rid: {p: _make_blob(p, src) for p, src in repo.files.items()} for rid, repo in self.repos.items()
        }
        self._by_sha: dict[str, list[_Blob]] = {}
        for blobs in self._blobs.values():
            for b in blobs.values():
                self._by_sha.setdefault(b.sha256, []).append(b)
        # the original attribute: (repo_id, filename) -> (source, sha256)
        self.files = {(rid, p): (b.source, b.sha256) for rid, bl in self._blobs.items() for p, b in bl.items()}

        handler = _make_handler(self)
        self._hub = _Server(("127.0.0.1", 0), handler)
        self._cdn = _Server(("127.0.0.1", 0), handler)
        self.url = f"http://127.0.0.1:{self._hub.server_address[1]}"
        self.cdn_url = f"http://127.0.0.1:{self._cdn.server_address[1]}"
        self._threads: list[threading.Thread] = []

    # --- lifecycle

    def start(self) -> HFServer:
        if not self._threads:
            for srv in (self._hub, self._cdn):
                t = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
                t.start()
                self._threads.append(t)
        return self

    def stop(self) -> None:
        if self._threads:
            for srv in (self._hub, self._cdn):
                srv.shutdown()
            for t in self._threads:
                t.join(timeout=5)
            self._threads = []
        for srv in (self._hub, self._cdn):
            srv.server_close()

    def __enter__(self) -> HFServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # --- helpers for tests

    def sha256(self, repo_id: str, path: str) -> str:
        return self._blobs[repo_id][path].sha256

    def size(self, repo_id: str, path: str) -> int:
        return self._blobs[repo_id][path].size

    def _fault_key(self, table, blob: _Blob):
        return blob.path if blob.path in table else blob.basename if blob.basename in table else None

    # --- JSON views of a repo

    def _model_json(self, repo_id: str, *, blobs: bool = False, expand: list[str] | None = None, light=False) -> dict:
        repo, files = self.repos[repo_id], self._blobs[repo_id]
        siblings = []
        for b in sorted(files.values(), key=lambda b: b.path):
            s: dict[str, Any] = {"rfilename": b.path}
            if blobs:
                s.update(size=b.size, blobId=b.blob_id)
                if b.lfs:
                    s["lfs"] = {"sha256": b.sha256, "size": b.size, "pointerSize": b.pointer_size}
            siblings.append(s)
        props: dict[str, Any] = {
            "author": repo_id.split("/")[0] if "/" in repo_id else None,
            "sha": repo.sha,
            "lastModified": repo.last_modified,
            "createdAt": repo.created_at,
            "private": False,
            "gated": "auto" if repo.gated else False,
            "disabled": False,
            "downloads": repo.downloads,
            "downloadsAllTime": repo.downloads,
            "likes": repo.likes,
            "trendingScore": repo.trending_score,
            "tags": list(repo.tags),
            "pipeline_tag": repo.pipeline_tag,
            "library_name": repo.library_name,
            "gguf": repo.gguf,
            "siblings": siblings,
            "spaces": [],
            "usedStorage": sum(b.size for b in files.values()),
        }
        props = {k: v for k, v in props.items() if v is not None}
        if expand is not None:
            props = {k: v for k, v in props.items() if k in expand}
        elif light:
            props = {k: v for k, v in props.items() if k in LIGHT}
        return {"_id": hashlib.sha1(repo_id.encode()).hexdigest()[:24], "id": repo_id, "modelId": repo_id, **props}

    def _tree_entry(self, repo: Repo, path: str, blob: _Blob | None, expand: bool) -> dict:
        if blob is None:
            e: dict[str, Any] = {"type": "directory", "oid": _sha1(f"tree {repo.sha} {path}".encode()), "size": 0}
        else:
            e = {"type": "file", "oid": blob.blob_id, "size": blob.size}
            if blob.lfs:
                e["lfs"] = {"oid": blob.sha256, "size": blob.size, "pointerSize": blob.pointer_size}
        e["path"] = path
        if expand:
            e["lastCommit"] = {"id": repo.sha, "title": "Upload", "date": repo.last_modified}
            if blob is not None:
                e["securityFileStatus"] = {"status": "safe", "avScan": {"virusFound": False}, "pickleImportScan": None}
        return e

    def _tree(self, repo_id: str, path: str, recursive: bool, expand: bool) -> list[dict]:
        repo, files = self.repos[repo_id], self._blobs[repo_id]
        prefix = f"{path}/" if path else ""
        if path and not any(p.startswith(prefix) for p in files):
            raise _HTTPError(404, f"{path} does not exist on main", "EntryNotFound", {"X-Repo-Commit": repo.sha})
        dirs: set[str] = set()
        found: list[_Blob] = []
        for p, b in files.items():
            if not p.startswith(prefix):
                continue
            rest = p[len(prefix) :].split("/")
            if recursive:
                dirs.update(prefix + "/".join(rest[:i]) for i in range(1, len(rest)))
                found.append(b)
            elif len(rest) > 1:
                dirs.add(prefix + rest[0])
            else:
                found.append(b)
        entries = [(d, None) for d in dirs] + [(b.path, b) for b in found]
        # like the Hub: folders before files at each level (recursive listings are sorted by path)
        entries.sort(key=(lambda e: e[0]) if recursive else (lambda e: (e[1] is not None, e[0])))
        return [self._tree_entry(repo, p, b, expand) for p, b in entries]

    def _list_models(self, q: dict[str, list[str]]) -> list[dict]:
        search = (q.get("search") or [""])[-1].lower()
        author = (q.get("author") or [None])[-1]
        filters = [f for v in q.get("filter", []) for f in v.split(",") if f]
        pipeline = (q.get("pipeline_tag") or [None])[-1]
        gated = (q.get("gated") or [None])[-1]
        sort = (q.get("sort") or [None])[-1]
        if sort is not None and sort not in SORTS:
            raise _HTTPError(400, f"Invalid sort parameter: {sort}")
        expand = q.get("expand")
        if expand is not None:
            bad = [e for e in expand if e not in EXPANDABLE]
            if bad:
                raise _HTTPError(400, f'"expand" must be one of {sorted(EXPANDABLE)}, got {bad}')
        try:
            limit = int(q["limit"][-1]) if "limit" in q else None
        except ValueError:
            raise _HTTPError(400, "Invalid limit") from None
        full = (q.get("full") or ["false"])[-1].lower() in ("true", "1")

        hits = []
        for rid, repo in self.repos.items():
            if search and search not in rid.lower():
                continue
            if author is not None and rid.split("/")[0] != author:
                continue
            if any(f not in repo.tags for f in filters):
                continue
            if pipeline is not None and repo.pipeline_tag != pipeline:
                continue
            if gated is not None and repo.gated != (gated.lower() == "true"):
                continue
            hits.append(rid)
        if sort is not None:
            attr = {"downloads": "downloads", "likes": "likes", "lastModified": "last_modified",
                    "createdAt": "created_at", "trendingScore": "trending_score"}[sort]  # fmt: skip
            hits.sort(key=lambda rid: getattr(self.repos[rid], attr), reverse=True)
        if limit is not None:
            hits = hits[:limit]
        if expand is not None:
            return [self._model_json(rid, expand=expand) for rid in hits]
        if full:
            return [self._model_json(rid) for rid in hits]
        return [self._model_json(rid, light=True) for rid in hits]


def _make_handler(server: HFServer):
    class Handler(BaseHTTPRequestHandler):
        server_version = "lmnb-test-hub"

        def log_message(self, *a):  # keep test output clean
            pass

        _entry: dict = {}  # replaced per request in _dispatch

        def send_response(self, code, message=None):
            self._entry["status"] = code
            super().send_response(code, message)

        # --- plumbing

        def _send(self, status: int, body: bytes = b"", headers: dict | None = None, ctype="application/json"):
            self.send_response(status)
            for k, v in (headers or {}).items():
                self.send_header(k, str(v))
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if self.command != "HEAD" and body:
                self.wfile.write(body)

        def _json(self, obj, status=200, headers=None):
            self._send(status, json.dumps(obj).encode(), headers)

        def _error(self, e: _HTTPError):
            headers = dict(e.headers)
            if e.code:
                headers["X-Error-Code"] = e.code
            headers["X-Error-Message"] = e.message
            self._json({"error": e.message}, e.status, headers)

        def _dispatch(self):
            self._entry = {}
            parts = urlsplit(self.path)
            query = parse_qsl(parts.query, keep_blank_values=True)
            q: dict[str, list[str]] = {}
            for k, v in query:
                q.setdefault(k, []).append(v)
            segs = [unquote(s) for s in parts.path.split("/")[1:]]
            self._entry.update(
                method=self.command,
                path=unquote(parts.path),
                query=parts.query,
                range=self.headers.get("Range"),
                auth=self.headers.get("Authorization"),
                status=None,
            )
            with server._lock:
                server.requests.append(f"{self.command} {self.path}")
                server.log.append(self._entry)
            try:
                if any(p == ".." for s in segs for p in s.replace("\\", "/").split("/")):
                    raise _HTTPError(400, "Invalid path: '..' is not allowed", "BadRequest")
                self._route(segs, q)
            except _HTTPError as e:
                self._error(e)

        def do_GET(self):
            self._dispatch()

        def do_HEAD(self):
            self._dispatch()

        def do_POST(self):
            self._dispatch()

        def _route(self, segs: list[str], q: dict[str, list[str]]):
            m = self.command
            if len(segs) == 2 and segs[0] == "cdn" and m in ("GET", "HEAD"):
                return self._cdn(segs[1], (q.get("name") or [None])[-1])
            if segs[:2] == ["api", "models"]:
                if len(segs) == 2 or segs[2:] == [""]:
                    if m != "GET":
                        raise _HTTPError(405, "Method not allowed")
                    return self._json(server._list_models(q))
                return self._api_repo(segs[2:], q)
            for i in (1, 2):
                if len(segs) > i + 2 and segs[i] == "resolve" and m in ("GET", "HEAD"):
                    return self._resolve("/".join(segs[:i]), segs[i + 1], "/".join(segs[i + 2 :]))
            raise _HTTPError(404, "Not found")

        # --- checks shared by the endpoints

        def _repo(self, repo_id: str) -> Repo:
            repo = server.repos.get(repo_id)
            if repo is None:
                raise _HTTPError(404, "Repository not found", "RepoNotFound")
            return repo

        def _revision(self, repo: Repo, rev: str) -> None:
            if rev not in ("main", repo.sha):
                raise _HTTPError(404, f"Invalid rev id: {rev}", "RevisionNotFound")

        def _gate(self, repo_id: str, repo: Repo) -> None:
            if not repo.gated:
                return
            auth = self.headers.get("Authorization") or ""
            token = auth[7:].strip() if auth.lower().startswith("bearer ") else None
            if not token:
                raise _HTTPError(
                    401,
                    f"Access to model {repo_id} is restricted. You must have access to it and be authenticated to"
                    " access it. Please log in.",
                    "GatedRepo",
                )
            if token not in server.tokens:
                raise _HTTPError(
                    403,
                    f"Access to model {repo_id} is restricted and you are not in the authorized list."
                    f" Visit {server.url}/{repo_id} to ask for access.",
                    "GatedRepo",
                )

        # --- /api/models/{repo}/...

        def _api_repo(self, rest: list[str], q: dict[str, list[str]]):
            actions = {"revision", "tree", "auth-check", "paths-info"}
            if "/".join(rest[:2]) in server.repos or (len(rest) >= 2 and rest[1] not in actions):
                repo_id, rest = "/".join(rest[:2]), rest[2:]
            else:
                repo_id, rest = rest[0], rest[1:]
            repo = self._repo(repo_id)
            action = rest[0] if rest else None

            def flag(k: str) -> bool:
                return (q.get(k) or ["false"])[-1].lower() in ("true", "1")

            if self.command == "POST":
                if action != "paths-info" or len(rest) < 2:
                    raise _HTTPError(405, "Method not allowed")
                return self._paths_info(repo_id, repo, rest[1])
            if action is None or action == "revision":
                if action == "revision":
                    if len(rest) < 2:
                        raise _HTTPError(404, "Not found")
                    self._revision(repo, "/".join(rest[1:]))
                expand = q.get("expand")
                if expand is not None and any(e not in EXPANDABLE for e in expand):
                    raise _HTTPError(400, f'"expand" must be one of {sorted(EXPANDABLE)}')
                return self._json(server._model_json(repo_id, blobs=flag("blobs"), expand=expand))
            if action == "tree":
                if len(rest) < 2:
                    raise _HTTPError(404, "Not found")
                self._revision(repo, rest[1])
                path = "/".join(p for p in "/".join(rest[2:]).split("/") if p)
                return self._json(server._tree(repo_id, path, flag("recursive"), flag("expand")))
            if action == "auth-check" and len(rest) == 1:
                self._gate(repo_id, repo)
                return self._json({})
            raise _HTTPError(404, "Not found")

        def _paths_info(self, repo_id: str, repo: Repo, rev: str):
            self._revision(repo, rev)
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length).decode() if length else ""
            if "json" in (self.headers.get("Content-Type") or ""):
                data = json.loads(body or "{}")
                paths, expand = data.get("paths", []), bool(data.get("expand"))
            else:
                form = parse_qsl(body, keep_blank_values=True)
                paths = [v for k, v in form if k == "paths"]
                expand = any(k == "expand" and v.lower() == "true" for k, v in form)
            files = server._blobs[repo_id]
            out = []
            for p in paths:
                p = p.strip("/")
                if p in files:
                    out.append(server._tree_entry(repo, p, files[p], expand))
                elif any(f.startswith(p + "/") for f in files):
                    out.append(server._tree_entry(repo, p, None, expand))
            return self._json(out)

        # --- downloads

        def _resolve(self, repo_id: str, rev: str, path: str):
            repo = self._repo(repo_id)
            self._revision(repo, rev)
            self._gate(repo_id, repo)
            blob = server._blobs[repo_id].get(path)
            if blob is None:
                raise _HTTPError(404, f"{path} does not exist on {rev}", "EntryNotFound", {"X-Repo-Commit": repo.sha})
            if blob.lfs:
                location = f"{server.cdn_url}/cdn/{blob.sha256}?name={quote(blob.path, safe='')}"
                self.send_response(302)
                for k, v in {
                    "Location": location,
                    "X-Repo-Commit": repo.sha,
                    "ETag": f'"{blob.blob_id}"',
                    "X-Linked-Etag": f'"{blob.sha256}"',
                    "X-Linked-Size": blob.size,
                    "Accept-Ranges": "bytes",
                    "Content-Length": 0,
                }.items():
                    self.send_header(k, str(v))
                self.end_headers()
                return
            self._body(blob, {"ETag": f'"{blob.blob_id}"', "X-Repo-Commit": repo.sha}, ctype="text/plain")

        def _cdn(self, sha: str, name: str | None):
            candidates = server._by_sha.get(sha)
            if not candidates:
                raise _HTTPError(404, "NoSuchKey")
            blob = next((b for b in candidates if name in (b.path, b.basename)), candidates[0])
            disp = f"inline; filename*=UTF-8''{quote(blob.basename)}; filename=\"{blob.basename}\";"
            self._body(blob, {"ETag": f'"{blob.sha256}"', "Content-Disposition": disp})

        def _body(self, blob: _Blob, headers: dict, ctype="application/octet-stream"):
            size = blob.size
            start, end = 0, size - 1
            rng = self.headers.get("Range")
            partial = False
            if rng is not None:
                parsed = _parse_range(rng, size)
                if parsed == "unsatisfiable":
                    raise _HTTPError(416, "Range not satisfiable", headers={"Content-Range": f"bytes */{size}"})
                if parsed is not None:
                    (start, end), partial = parsed, True
            self.send_response(206 if partial else 200)
            for k, v in headers.items():
                self.send_header(k, str(v))
            self.send_header("Accept-Ranges", "bytes")
            self.send_header("Content-Type", ctype)
            if partial:
                self.send_header("Content-Range", f"bytes {start}-{end}/{size}")
            self.send_header("Content-Length", str(end - start + 1))
            self.end_headers()
            if self.command == "HEAD":
                return
            cut = None  # (how, after N bytes)
            with server._lock:
                for how, table in (("reset", server.reset_after), ("drop", server.drop_after)):
                    if cut is None and rng is None and (k := server._fault_key(table, blob)) is not None:
                        cut = (how, table.pop(k))
            corrupt = server._fault_key(server.corrupt, blob) is not None
            self._write_body(blob, start, end + 1, cut, corrupt)

        def _write_body(self, blob: _Blob, start: int, stop: int, cut: tuple[str, int] | None, corrupt: bool):
            if cut is not None:
                stop = min(stop, start + cut[1])
            mid = blob.size // 2
            src = blob.source
            with open(src, "rb") if isinstance(src, str) else contextlib.nullcontext() as f:
                try:
                    self._write_range(blob, f, start, stop, cut, corrupt, mid)
                except (BrokenPipeError, ConnectionResetError, ConnectionAbortedError):
                    self.close_connection = True  # the client went away (cancelled); nothing to report

        def _write_range(self, blob: _Blob, f, start: int, stop: int, cut, corrupt: bool, mid: int):
            if f is not None:
                f.seek(start)
            pos = start
            while pos < stop:
                bps = server.throttle_bps
                n = min(stop - pos, max(1024, bps // 50) if bps else 1 << 20)
                data = f.read(n) if f is not None else blob.source[pos : pos + n]
                if not data:
                    break
                if corrupt and pos <= mid < pos + len(data):
                    data = bytearray(data)
                    data[mid - pos] ^= 0xFF
                self.wfile.write(data)
                pos += len(data)
                with server._lock:
                    server.bytes_served[blob.path] = server.bytes_served.get(blob.path, 0) + len(data)
                if bps:
                    time.sleep(len(data) / bps)
            if cut is not None:  # cut the connection mid-body
                self.wfile.flush()
                self.close_connection = True
                try:
                    if cut[0] == "reset":  # RST: SO_LINGER with a zero timeout, then close
                        self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                        self.connection.close()
                    else:  # FIN: a premature end of the body
                        self.connection.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    return Handler


def _parse_range(value: str, size: int):
    """``bytes=N-``, ``bytes=N-M`` or ``bytes=-K`` -> (start, end) inclusive; None to ignore; 'unsatisfiable'."""
    value = value.strip()
    if not value.startswith("bytes=") or "," in value:
        return None
    first, _, last = value[6:].strip().partition("-")
    try:
        if first == "":
            k = int(last)
            return (max(size - k, 0), size - 1) if k > 0 and size > 0 else "unsatisfiable"
        start = int(first)
        end = int(last) if last else size - 1
    except ValueError:
        return None
    if start >= size or end < start:
        return "unsatisfiable"
    return start, min(end, size - 1)


_SHA_CACHE: dict[tuple[str, int, int], str] = {}
_SHA_LOCK = threading.Lock()


def _sha256(path: str) -> str:
    st = os.stat(path)
    key = (os.path.realpath(path), st.st_size, st.st_mtime_ns)
    with _SHA_LOCK:
        if key not in _SHA_CACHE:
            h = hashlib.sha256()
            with open(path, "rb") as f:
                for block in iter(lambda: f.read(1 << 20), b""):
                    h.update(block)
            _SHA_CACHE[key] = h.hexdigest()
        return _SHA_CACHE[key]


def _sha1(data: bytes) -> str:
    return hashlib.sha1(data).hexdigest()


def _git_blob_id(data: bytes) -> str:
    return _sha1(b"blob %d\0" % len(data) + data)


def _make_blob(path: str, source) -> _Blob:
    if isinstance(source, (bytes, bytearray, memoryview)):
        source = bytes(source)
        size, sha = len(source), hashlib.sha256(source).hexdigest()
    else:
        source = os.fspath(source)
        size, sha = os.path.getsize(source), _sha256(source)
    lfs = path.lower().endswith(".gguf") or size >= LFS_THRESHOLD
    if lfs:
        pointer = f"version https://git-lfs.github.com/spec/v1\noid sha256:{sha}\nsize {size}\n".encode()
        return _Blob(path, source, size, sha, True, _git_blob_id(pointer), len(pointer))
    if isinstance(source, bytes):
        data = source
    else:
        with open(source, "rb") as f:
            data = f.read()
    return _Blob(path, source, size, sha, False, _git_blob_id(data), None)
