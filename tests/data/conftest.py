"""Fixtures for the metamap.data tests: an isolated cache, a no-decoding guard, a local server.

Nothing here touches the real internet or ``~/.cache``: every test gets its own cache folder and
the data environment variables are cleared. The HTTP server listens on 127.0.0.1 only, in a
daemon thread that is shut down after the test (and, as a safety net, after 60 s by itself).
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

_DATA_ENV = (
    "METAMAP_CACHE",
    "METAMAP_OMNIGLOT",
    "METAMAP_CIFAR100",
    "METAMAP_IMAGENET",
    "METAMAP_MINIIMAGENET_SPLITS",
    "METAMAP_TIEREDIMAGENET_SPLITS",
    "METAMAP_CUB",
    "METAMAP_MOVIELENS",
)


@pytest.fixture(autouse=True)
def _isolated_data_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in _DATA_ENV:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))  # the default cache is never the real one
    for name in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")


@pytest.fixture
def cache_dir(tmp_path: Path) -> Path:
    return tmp_path / "cache"


@pytest.fixture
def forbid_decoding(monkeypatch: pytest.MonkeyPatch) -> None:
    """Any call to ``PIL.Image.open`` fails the test (used to prove a cache was reused)."""

    def boom(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("an image was decoded although its cache exists")

    monkeypatch.setattr("PIL.Image.open", boom)


@dataclass
class ServerState:
    files: dict[str, bytes] = field(default_factory=dict)
    ranges: bool = True  # honour Range requests
    cut_next: int | None = None  # send only this many bytes of the next body, then hang up
    requests: list[dict[str, str]] = field(default_factory=list)
    bytes_sent: int = 0


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def do_GET(self) -> None:
        state = self.server.state
        state.requests.append({"path": self.path, **dict(self.headers)})
        body = state.files.get(self.path)
        if body is None:
            self.send_error(404)
            return
        start = 0
        m = re.fullmatch(r"bytes=(\d+)-", self.headers.get("Range", ""))
        if m and state.ranges:
            start = int(m.group(1))
            if start >= len(body):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(body)}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
        else:
            self.send_response(200)
        payload = body[start:]
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        if state.cut_next is not None:
            payload, state.cut_next = payload[: state.cut_next], None
        # Counted before writing: the client may have read it all, and the test looked, before
        # this thread runs again.
        state.bytes_sent += len(payload)
        self.wfile.write(payload)

    def log_message(self, format: str, *args: Any) -> None:
        pass


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, state: ServerState) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.state = state


@dataclass
class LocalServer:
    state: ServerState
    base_url: str

    def serve(self, path: str, data: bytes) -> str:
        self.state.files[path] = data
        return self.base_url + path


@pytest.fixture
def http_server() -> Iterator[LocalServer]:
    """A Range-capable HTTP server on 127.0.0.1 serving ``state.files``; stops after the test."""
    state = ServerState()
    server = _Server(state)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.daemon = True
    thread.start()
    watchdog = threading.Timer(60.0, server.shutdown)  # stops by itself whatever happens
    watchdog.daemon = True
    watchdog.start()
    try:
        yield LocalServer(state, f"http://127.0.0.1:{server.server_address[1]}")
    finally:
        watchdog.cancel()
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
