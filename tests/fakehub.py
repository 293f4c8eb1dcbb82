"""A fake Hugging Face hub and Ollama registry on 127.0.0.1, for tests.

It answers the part of the hub API that ``huggingface_hub`` calls for model
info (``/api/models/<repo>`` with LFS sha256 and sizes when ``blobs=true``),
search (``/api/models?search=...``), and file resolve
(``/<repo>/resolve/<rev>/<file>``) with ``Range``, ``ETag``,
``X-Repo-Commit``, ``X-Linked-Size`` and ``X-Linked-Etag``; and the Ollama
registry's ``/v2/_catalog``, ``/v2/<name>/tags/list``,
``/v2/<name>/manifests/<tag>`` and ``/v2/<name>/blobs/<digest>``.

Knobs for tests: ``throttle_bps`` (bytes/s per response), ``corrupt`` (file
names served with one byte flipped while the metadata keeps the true sha256),
``fail_once`` (file names whose next body is cut halfway once), ``requests``
(every request with its Range header), and ``stop()``/``start()`` to take the
hub off the network. It runs in a daemon thread and stops by itself after
``lifetime_s``.
"""

from __future__ import annotations

import hashlib
import json
import re
import socket
import threading
import time
import urllib.parse
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import numpy as np

_CHUNK = 16 * 1024


def write_gguf(path: Path, *, payload_bytes: int = 64 * 1024, file_type: int = 15, name: str = "tiny",
               seed: int = 0, extra: dict[str, int] | None = None) -> Path:
    """A valid GGUF file (header, chat template, one tensor of about ``payload_bytes``), via the gguf package."""
    import gguf

    path.parent.mkdir(parents=True, exist_ok=True)
    w = gguf.GGUFWriter(str(path), "llama")
    w.add_name(name)
    w.add_context_length(256)
    w.add_file_type(file_type)
    w.add_chat_template("{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}assistant:")
    for k, v in (extra or {}).items():
        w.add_uint16(k, v)
    n = max(8, payload_bytes // 4)
    w.add_tensor("token_embd.weight", np.random.default_rng(seed).random(n, dtype=np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


def sha256_file(path: Path) -> str:
    """The sha256 of a file, hex."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(1024 * 1024):
            h.update(block)
    return h.hexdigest()


@dataclass
class FakeFile:
    """One file the hub serves, from disk."""

    name: str
    path: Path
    size: int
    sha256: str

    @classmethod
    def of(cls, name: str, path: Path) -> FakeFile:
        """Describe ``path`` (hashes it)."""
        return cls(name, Path(path), Path(path).stat().st_size, sha256_file(Path(path)))


@dataclass
class FakeRepo:
    """A Hugging Face model repository."""

    id: str
    files: dict[str, FakeFile]
    sha: str = ""
    downloads: int = 100
    likes: int = 10
    trending: int = 1
    pipeline_tag: str = "text-generation"
    tags: list[str] = field(default_factory=lambda: ["gguf", "text-generation"])
    params: int = 135_000_000

    def __post_init__(self) -> None:
        if not self.sha:
            self.sha = hashlib.sha1(self.id.encode()).hexdigest()


class FakeHub:
    """The server; ``url`` is its base URL (use it as HF_ENDPOINT and as the Ollama registry)."""

    def __init__(self, *, throttle_bps: int = 0, lifetime_s: float = 900.0, port: int = 0) -> None:
        self.repos: dict[str, FakeRepo] = {}
        self.ollama: dict[tuple[str, str], FakeFile] = {}  # (name, tag) -> blob
        self.throttle_bps = throttle_bps
        self.corrupt: set[str] = set()
        self.fail_once: set[str] = set()
        self.requests: list[dict[str, Any]] = []
        self.lifetime_s = lifetime_s
        self._port = port
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._timer: threading.Timer | None = None
        self._lock = threading.Lock()
        self._conns: set[Any] = set()  # open client sockets, cut by stop() (keep-alive would outlive it)

    # -- content ---------------------------------------------------------
    def add_repo(self, repo_id: str, files: dict[str, Path], **meta: Any) -> FakeRepo:
        """Serve ``files`` (name in the repo -> local path) as the LFS files of ``repo_id``."""
        repo = FakeRepo(repo_id, {n: FakeFile.of(n, p) for n, p in files.items()}, **meta)
        self.repos[repo_id] = repo
        return repo

    def add_ollama(self, name: str, tag: str, path: Path) -> FakeFile:
        """Serve ``path`` as the model layer of ``name:tag`` (``name`` like ``library/tinyllama``)."""
        f = FakeFile.of(f"{name}:{tag}", path)
        self.ollama[(name, tag)] = f
        return f

    def ranges(self, name: str) -> list[str | None]:
        """The Range headers of every GET of a file whose path ends with ``name``."""
        with self._lock:
            return [r["range"] for r in self.requests if r["method"] == "GET" and r["path"].endswith(name)]

    # -- lifecycle -------------------------------------------------------
    @property
    def url(self) -> str:
        """Base URL."""
        return f"http://127.0.0.1:{self._port}"

    def start(self) -> FakeHub:
        """Listen (again) on 127.0.0.1, on the same port after a :meth:`stop`."""
        hub = self

        class Handler(_Handler):
            fake = hub

        ThreadingHTTPServer.allow_reuse_address = True
        self._server = ThreadingHTTPServer(("127.0.0.1", self._port), Handler)
        self._server.daemon_threads = True
        self._port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True, name="fakehub")
        self._thread.start()
        if self._timer is None:
            self._timer = threading.Timer(self.lifetime_s, self.stop)
            self._timer.daemon = True
            self._timer.start()
        return self

    def stop(self) -> None:
        """Stop listening (connections are refused until :meth:`start`)."""
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()
        with self._lock:
            conns, self._conns = list(self._conns), set()
        for sock in conns:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def close(self) -> None:
        """Stop for good."""
        self.stop()
        if self._timer is not None:
            self._timer.cancel()

    def __enter__(self) -> FakeHub:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.close()


_RESOLVE = re.compile(r"^/(?P<repo>[^/]+/[^/]+)/resolve/(?P<rev>[^/]+)/(?P<file>.+)$")
_INFO = re.compile(r"^/api/models/(?P<repo>[^/]+/[^/]+?)(?:/revision/(?P<rev>[^/]+))?$")
_MANIFEST = re.compile(r"^/v2/(?P<name>.+)/manifests/(?P<tag>[^/]+)$")
_BLOB = re.compile(r"^/v2/(?P<name>.+)/blobs/(?P<digest>sha256:[0-9a-f]{64})$")
_TAGS = re.compile(r"^/v2/(?P<name>.+)/tags/list$")


class _Handler(BaseHTTPRequestHandler):
    fake: FakeHub
    protocol_version = "HTTP/1.1"

    def log_message(self, *args: Any) -> None:  # quiet
        pass

    def setup(self) -> None:
        super().setup()
        with self.fake._lock:
            self.fake._conns.add(self.connection)

    def finish(self) -> None:
        with self.fake._lock:
            self.fake._conns.discard(self.connection)
        try:
            super().finish()
        except OSError:
            pass

    def _json(self, obj: Any, status: int = 200, headers: dict[str, str] | None = None) -> None:
        body = json.dumps(obj).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _not_found(self, what: str, code: str = "RepoNotFound") -> None:
        self._json({"error": f"{what} not found"}, 404, {"X-Error-Code": code, "X-Error-Message": what})

    def do_HEAD(self) -> None:  # noqa: N802
        self.do_GET()

    def do_GET(self) -> None:  # noqa: N802
        parsed = urllib.parse.urlsplit(self.path)
        path = urllib.parse.unquote(parsed.path)
        query = urllib.parse.parse_qs(parsed.query)
        with self.fake._lock:
            self.fake.requests.append({"method": self.command, "path": path, "range": self.headers.get("Range"),
                                       "query": query, "time": time.time()})
        try:
            self._route(path, query)
        except (BrokenPipeError, ConnectionResetError):
            pass

    def _route(self, path: str, query: dict[str, list[str]]) -> None:
        fake = self.fake
        if path == "/api/models":
            return self._search(query)
        m = _INFO.match(path)
        if m:
            repo = fake.repos.get(m["repo"])
            if repo is None:
                return self._not_found(m["repo"])
            return self._json(self._info(repo, blobs=query.get("blobs", ["false"])[0].lower() == "true"))
        m = _RESOLVE.match(path)
        if m:
            repo = fake.repos.get(m["repo"])
            if repo is None:
                return self._not_found(m["repo"])
            f = repo.files.get(m["file"])
            if f is None:
                return self._not_found(m["file"], "EntryNotFound")
            return self._send_file(f, {"X-Repo-Commit": repo.sha, "ETag": f'"{f.sha256}"',
                                       "X-Linked-Etag": f'"{f.sha256}"', "X-Linked-Size": str(f.size)})
        if path == "/v2/_catalog":
            names = sorted({n for n, _ in fake.ollama})
            return self._json({"repositories": names})
        m = _TAGS.match(path)
        if m:
            tags = sorted(t for n, t in fake.ollama if n == m["name"])
            return self._json({"name": m["name"], "tags": tags}) if tags else self._not_found(m["name"])
        m = _MANIFEST.match(path)
        if m:
            f = fake.ollama.get((m["name"], m["tag"]))
            if f is None:
                return self._not_found(f"{m['name']}:{m['tag']}", "MANIFEST_UNKNOWN")
            config = json.dumps({"model_format": "gguf"}).encode()
            return self._json({
                "schemaVersion": 2, "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
                "config": {"mediaType": "application/vnd.docker.container.image.v1+json",
                           "digest": "sha256:" + hashlib.sha256(config).hexdigest(), "size": len(config)},
                "layers": [{"mediaType": "application/vnd.ollama.image.model", "digest": f"sha256:{f.sha256}",
                            "size": f.size},
                           {"mediaType": "application/vnd.ollama.image.params",
                            "digest": "sha256:" + "0" * 64, "size": 2}]},
                headers={"Docker-Content-Digest": "sha256:" + hashlib.sha256(f.name.encode()).hexdigest()})
        m = _BLOB.match(path)
        if m:
            for (name, _tag), f in fake.ollama.items():
                if name == m["name"] and f"sha256:{f.sha256}" == m["digest"]:
                    return self._send_file(f, {"Docker-Content-Digest": m["digest"], "ETag": f'"{m["digest"]}"'})
            return self._not_found(m["digest"], "BLOB_UNKNOWN")
        return self._not_found(path, "NotFound")

    def _item(self, repo: FakeRepo) -> dict[str, Any]:
        return {"id": repo.id, "modelId": repo.id, "author": repo.id.split("/")[0], "sha": repo.sha,
                "downloads": repo.downloads, "likes": repo.likes, "trendingScore": repo.trending,
                "pipeline_tag": repo.pipeline_tag, "tags": repo.tags, "private": False,
                "createdAt": "2024-01-01T00:00:00.000Z", "lastModified": "2024-06-01T00:00:00.000Z",
                "library_name": "gguf"}

    def _info(self, repo: FakeRepo, *, blobs: bool) -> dict[str, Any]:
        siblings = []
        for f in repo.files.values():
            s: dict[str, Any] = {"rfilename": f.name}
            if blobs:
                s.update({"size": f.size, "blobId": hashlib.sha1(f.sha256.encode()).hexdigest(),
                          "lfs": {"size": f.size, "sha256": f.sha256, "pointerSize": 134}})
            siblings.append(s)
        siblings.append({"rfilename": "README.md", **({"size": 10, "blobId": "0" * 40} if blobs else {})})
        return {**self._item(repo), "siblings": siblings, "gguf": {"total": repo.params, "architecture": "llama"},
                "cardData": {"description": f"fake model {repo.id}"}}

    def _search(self, query: dict[str, list[str]]) -> None:
        repos = list(self.fake.repos.values())
        search = (query.get("search") or [""])[0].lower()
        if search:
            repos = [r for r in repos if search in r.id.lower()]
        for flt in query.get("filter", []):
            repos = [r for r in repos if flt in r.tags]
        if query.get("pipeline_tag"):
            repos = [r for r in repos if r.pipeline_tag == query["pipeline_tag"][0]]
        sort = (query.get("sort") or ["downloads"])[0]
        key = {"downloads": lambda r: r.downloads, "likes": lambda r: r.likes,
               "trendingScore": lambda r: r.trending}.get(sort, lambda r: r.downloads)
        repos.sort(key=key, reverse=True)
        limit = int((query.get("limit") or [1000])[0])
        self._json([self._item(r) for r in repos[:limit]])

    def _send_file(self, f: FakeFile, headers: dict[str, str]) -> None:
        fake = self.fake
        start, end = 0, f.size - 1
        rng = self.headers.get("Range")
        status = 200
        if rng:
            m = re.fullmatch(r"bytes=(\d+)-(\d*)", rng.strip())
            if m:
                start = int(m[1])
                end = min(int(m[2]), f.size - 1) if m[2] else f.size - 1
                if start >= f.size:
                    self.send_response(416)
                    self.send_header("Content-Range", f"bytes */{f.size}")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                status = 206
        length = end - start + 1
        self.send_response(status)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(length))
        self.send_header("Accept-Ranges", "bytes")
        if status == 206:
            self.send_header("Content-Range", f"bytes {start}-{end}/{f.size}")
        for k, v in headers.items():
            self.send_header(k, v)
        self.end_headers()
        if self.command == "HEAD":
            return
        short = f.name in fake.fail_once or f.name.split("/")[-1] in fake.fail_once
        if short:
            fake.fail_once.discard(f.name)
            fake.fail_once.discard(f.name.split("/")[-1])
        cut_at = start + length // 2 if short else None
        corrupt = f.name in fake.corrupt or f.name.split("/")[-1] in fake.corrupt
        flip = f.size // 2
        sent = 0
        t0 = time.monotonic()
        with open(f.path, "rb") as fh:
            fh.seek(start)
            pos = start
            while pos <= end:
                n = min(_CHUNK, end - pos + 1)
                if cut_at is not None and pos + n > cut_at:
                    n = cut_at - pos
                    if n > 0:
                        self.wfile.write(fh.read(n))
                    self.wfile.flush()
                    self.close_connection = True
                    # Cut the connection mid-body, as a flaky network would.
                    self.connection.shutdown(socket.SHUT_RDWR)
                    return
                data = bytearray(fh.read(n))
                if corrupt and pos <= flip < pos + n:
                    data[flip - pos] ^= 0xFF
                self.wfile.write(data)
                pos += n
                sent += n
                if fake.throttle_bps:
                    ahead = sent / fake.throttle_bps - (time.monotonic() - t0)
                    if ahead > 0:
                        time.sleep(ahead)
