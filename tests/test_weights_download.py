"""resolve()/download() against a real HTTP server on 127.0.0.1 (no internet needed)."""

from __future__ import annotations

import hashlib
import importlib.resources
import multiprocessing
import os
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from mobilefer.errors import (
    ChecksumMismatchError,
    DownloadError,
    InvalidInputError,
    WeightsNotFoundError,
)
from mobilefer.weights import WeightsRecord, cache_dir, download, resolve, sha256_file

FILENAME = "toy-weights.bin"
PAYLOAD = hashlib.sha256(b"seed").digest() * 8192  # 256 KiB, deterministic, not repetitive per chunk


@dataclass
class Route:
    """What the server does for one path."""

    body: bytes
    content_length: int | None = -1  # -1: the true length; None: no header (close-delimited body)
    send_bytes: int | None = None  # send only this many bytes, then close
    delay: float = 0.0  # sleep before answering
    chunk_delay: float = 0.0  # sleep between 16 KiB chunks
    status: int = 200


@dataclass
class Server:
    base: str
    routes: dict[str, Route] = field(default_factory=dict)
    hits: list[str] = field(default_factory=list)

    def url(self, path: str) -> str:
        return f"{self.base}{path}"


class _Handler(BaseHTTPRequestHandler):
    server: Any

    def do_GET(self) -> None:  # noqa: N802 - http.server API
        state: Server = self.server.state
        state.hits.append(self.path)
        route = state.routes.get(self.path)
        if route is None:
            self.send_error(404)
            return
        time.sleep(route.delay)
        self.send_response(route.status)
        length = len(route.body) if route.content_length == -1 else route.content_length
        if length is not None:
            self.send_header("Content-Length", str(length))
        self.send_header("Connection", "close")
        self.end_headers()
        body = route.body if route.send_bytes is None else route.body[: route.send_bytes]
        for start in range(0, len(body), 1 << 14):
            self.wfile.write(body[start : start + (1 << 14)])
            self.wfile.flush()
            time.sleep(route.chunk_delay)
        self.close_connection = True

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - http.server API
        pass


class _QuietServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # clients that time out on purpose make the handler hit a closed socket


@pytest.fixture
def server() -> Iterator[Server]:
    httpd = _QuietServer(("127.0.0.1", 0), _Handler)
    state = Server(base=f"http://127.0.0.1:{httpd.server_address[1]}")
    httpd.state = state  # type: ignore[attr-defined]
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield state
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(5)


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty MOBILEFER_HOME; returns the weights cache directory inside it."""
    monkeypatch.setenv("MOBILEFER_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("MOBILEFER_OFFLINE", raising=False)
    return tmp_path / "home" / "weights"


def make_record(url: str, body: bytes = PAYLOAD, **extra: Any) -> WeightsRecord:
    return WeightsRecord(
        name="toy",
        url=url,
        sha256=hashlib.sha256(body).hexdigest(),
        size=len(body),
        license="MIT",
        filename=FILENAME,
        **extra,
    )


def entries(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


# --------------------------------------------------------------------------- success and caching
def test_download_lands_in_cache_and_is_reused(server: Server, home: Path) -> None:
    server.routes["/w.bin"] = Route(PAYLOAD)
    record = make_record(server.url("/w.bin"))
    assert cache_dir() == home
    first = resolve(record)
    assert first == home / FILENAME
    assert first.read_bytes() == PAYLOAD and sha256_file(first) == record.sha256
    assert server.hits == ["/w.bin"]
    assert entries(home) == [FILENAME]  # no temp or lock files left
    second = resolve(record)
    assert second == first and server.hits == ["/w.bin"]  # second resolve did not download


def test_url_override_and_explicit_cache(server: Server, home: Path, tmp_path: Path) -> None:
    server.routes["/mirror.bin"] = Route(PAYLOAD)
    record = make_record("https://unreachable.invalid/w.bin")
    other = tmp_path / "other-cache"
    path = resolve(record, url=server.url("/mirror.bin"), cache=other)
    assert path == other / FILENAME and path.read_bytes() == PAYLOAD
    assert server.hits == ["/mirror.bin"] and not home.exists()


def test_download_returns_existing_valid_file_without_network(server: Server, tmp_path: Path) -> None:
    record = make_record(server.url("/nothing-here"))
    (tmp_path / FILENAME).write_bytes(PAYLOAD)
    assert download(record, tmp_path) == tmp_path / FILENAME
    assert server.hits == []


# --------------------------------------------------------------------------- failures leave nothing behind
def test_hash_mismatch_same_size(server: Server, home: Path) -> None:
    altered = bytearray(PAYLOAD)
    altered[12345] ^= 0xFF
    server.routes["/w.bin"] = Route(bytes(altered))
    record = make_record(server.url("/w.bin"))
    with pytest.raises(ChecksumMismatchError) as info:
        resolve(record)
    message = str(info.value)
    assert FILENAME in message and record.sha256 in message and "path=" in message and str(home) in message
    assert entries(home) == []


def test_wrong_size_announced_is_rejected(server: Server, home: Path) -> None:
    server.routes["/w.bin"] = Route(PAYLOAD + b"extra")
    with pytest.raises(ChecksumMismatchError, match="announces"):
        resolve(make_record(server.url("/w.bin")))
    assert entries(home) == []


def test_oversized_body_without_length_is_rejected(server: Server, home: Path) -> None:
    server.routes["/w.bin"] = Route(PAYLOAD + b"extra", content_length=None)
    with pytest.raises(ChecksumMismatchError, match="more than"):
        resolve(make_record(server.url("/w.bin")))
    assert entries(home) == []


def test_truncated_transfer_with_content_length(server: Server, home: Path) -> None:
    server.routes["/w.bin"] = Route(PAYLOAD, send_bytes=len(PAYLOAD) // 2)
    with pytest.raises(DownloadError) as info:
        resolve(make_record(server.url("/w.bin")))
    assert "truncated" in str(info.value) and FILENAME in str(info.value)
    assert entries(home) == []


def test_truncated_transfer_without_content_length(server: Server, home: Path) -> None:
    server.routes["/w.bin"] = Route(PAYLOAD, content_length=None, send_bytes=1000)
    with pytest.raises(ChecksumMismatchError, match="1000 bytes"):
        resolve(make_record(server.url("/w.bin")))
    assert entries(home) == []


def test_timeout_is_quick(server: Server, home: Path) -> None:
    server.routes["/slow.bin"] = Route(PAYLOAD, delay=5.0)
    started = time.monotonic()
    with pytest.raises(DownloadError, match="slow.bin|timed out"):
        resolve(make_record(server.url("/slow.bin")), timeout=0.5)
    assert time.monotonic() - started < 3.0
    assert entries(home) == []


def test_http_error(server: Server, home: Path) -> None:
    with pytest.raises(DownloadError, match="404"):
        resolve(make_record(server.url("/missing.bin")))
    assert server.hits == ["/missing.bin"] and entries(home) == []


def test_unreachable_host(home: Path) -> None:
    with socket.socket() as sock:  # a port that is certainly closed
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(DownloadError) as info:
        resolve(make_record(f"http://127.0.0.1:{port}/w.bin"), timeout=2.0)
    assert "manually" in str(info.value) and str(home) in str(info.value)
    assert entries(home) == []


@pytest.mark.parametrize("timeout", [0, -1.0, float("nan"), True])
def test_bad_timeout(server: Server, home: Path, timeout: float) -> None:
    with pytest.raises(InvalidInputError, match="timeout"):
        resolve(make_record(server.url("/w.bin")), timeout=timeout)
    assert server.hits == []


def test_bad_url_override(home: Path) -> None:
    with pytest.raises(InvalidInputError, match="http"):
        resolve(make_record("https://example.org/w.bin"), url="file:///etc/passwd")


# --------------------------------------------------------------------------- offline
def test_offline_env_makes_no_request(server: Server, home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    server.routes["/w.bin"] = Route(PAYLOAD)
    record = make_record(server.url("/w.bin"))
    monkeypatch.setenv("MOBILEFER_OFFLINE", "1")
    with pytest.raises(WeightsNotFoundError) as info:
        resolve(record)
    message = str(info.value)
    assert server.url("/w.bin") in message and str(home) in message and "path=" in message
    assert server.hits == [] and not home.exists()
    # An explicit argument wins over the environment.
    assert resolve(record, offline=False).read_bytes() == PAYLOAD
    assert server.hits == ["/w.bin"]
    # Once cached, offline resolution works.
    assert resolve(record) == home / FILENAME and server.hits == ["/w.bin"]


def test_invalid_offline_value(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MOBILEFER_OFFLINE", "maybe")
    with pytest.raises(InvalidInputError, match="MOBILEFER_OFFLINE"):
        resolve(make_record("https://example.org/w.bin"))


def test_default_cache_location(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("MOBILEFER_HOME", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    assert cache_dir() == tmp_path / ".cache" / "mobilefer" / "weights"


# --------------------------------------------------------------------------- tampering and explicit paths
def test_tampered_cache_file_raises_and_is_kept(server: Server, home: Path) -> None:
    server.routes["/w.bin"] = Route(PAYLOAD)
    record = make_record(server.url("/w.bin"))
    cached = resolve(record)
    tampered = bytearray(PAYLOAD)
    tampered[0] ^= 0x01
    cached.write_bytes(bytes(tampered))
    with pytest.raises(ChecksumMismatchError) as info:
        resolve(record)
    assert f"delete {cached}" in str(info.value)
    assert cached.read_bytes() == bytes(tampered)  # not silently replaced
    assert server.hits == ["/w.bin"]
    cached.write_bytes(PAYLOAD[:-10])  # truncated cache file: size check
    with pytest.raises(ChecksumMismatchError, match="truncated"):
        resolve(record)
    cached.unlink()  # what the message says to do
    assert resolve(record).read_bytes() == PAYLOAD and server.hits == ["/w.bin", "/w.bin"]


def test_explicit_path_with_wrong_hash(server: Server, home: Path, tmp_path: Path) -> None:
    server.routes["/w.bin"] = Route(PAYLOAD)
    record = make_record(server.url("/w.bin"))
    wrong = tmp_path / "mine" / FILENAME
    wrong.parent.mkdir()
    wrong.write_bytes(PAYLOAD[::-1])
    for given in (wrong, wrong.parent, str(wrong)):
        with pytest.raises(ChecksumMismatchError) as info:
            resolve(record, path=given)
        assert str(wrong) in str(info.value)
    assert wrong.read_bytes() == PAYLOAD[::-1] and server.hits == [] and not home.exists()


def test_explicit_path_good_and_missing(server: Server, home: Path, tmp_path: Path) -> None:
    record = make_record(server.url("/w.bin"))
    good = tmp_path / "renamed.bin"  # a file passed directly may have any name
    good.write_bytes(PAYLOAD)
    assert resolve(record, path=good) == good
    with pytest.raises(WeightsNotFoundError, match=FILENAME):
        resolve(record, path=tmp_path)  # directory without record.filename
    with pytest.raises(WeightsNotFoundError, match="does not exist"):
        resolve(record, path=tmp_path / "nope.bin")
    assert server.hits == []


# --------------------------------------------------------------------------- packaged resources
def test_packaged_resource_is_used_first(server: Server, home: Path) -> None:
    resource = importlib.resources.files("mobilefer").joinpath("py.typed")
    body = resource.read_bytes()
    record = make_record(server.url("/w.bin"), body=body, packaged="py.typed")
    path = resolve(record)
    assert path.read_bytes() == body and path.name == "py.typed"
    assert server.hits == [] and not home.exists()
    bad = WeightsRecord(
        name="toy",
        url=None,
        sha256="00" * 32,
        size=len(body),
        license="MIT",
        filename="x",
        packaged="py.typed",
    )
    with pytest.raises(ChecksumMismatchError, match="reinstall"):
        resolve(bad)


def test_missing_packaged_resource_falls_back(server: Server, home: Path) -> None:
    server.routes["/w.bin"] = Route(PAYLOAD)
    record = make_record(server.url("/w.bin"), packaged="weights/data/not-shipped.bin")
    assert resolve(record).read_bytes() == PAYLOAD and server.hits == ["/w.bin"]
    only_packaged = WeightsRecord(
        name="toy", url=None, sha256="00" * 32, size=1, license="MIT", filename="x", packaged="nope.bin"
    )
    with pytest.raises(WeightsNotFoundError, match="no download URL"):
        resolve(only_packaged)


# --------------------------------------------------------------------------- two processes at once
def _fetch_in_child(record: WeightsRecord, cache: str, go: Any, results: Any) -> None:
    go.wait(30)
    try:
        path = resolve(record, cache=cache, offline=False, timeout=10.0)
        results.put(("ok", str(path), sha256_file(path)))
    except Exception as exc:  # reported to the parent, which fails the test
        results.put(("error", repr(exc), ""))


def test_two_processes_fetch_the_same_file(server: Server, tmp_path: Path) -> None:
    server.routes["/w.bin"] = Route(PAYLOAD, chunk_delay=0.03)  # ~0.5 s transfer: the two overlap
    record = make_record(server.url("/w.bin"))
    cache = tmp_path / "shared-cache"
    ctx = multiprocessing.get_context("spawn")
    go = ctx.Event()
    results = ctx.Queue()
    procs = [ctx.Process(target=_fetch_in_child, args=(record, str(cache), go, results)) for _ in range(2)]
    for proc in procs:
        proc.start()
    go.set()
    outcomes = [results.get(timeout=120) for _ in procs]
    for proc in procs:
        proc.join(30)
        assert proc.exitcode == 0
    assert outcomes == [("ok", str(cache / FILENAME), record.sha256)] * 2
    assert (cache / FILENAME).read_bytes() == PAYLOAD
    assert entries(cache) == [FILENAME]  # no .part or lock files left
    if os.name == "posix":  # the fcntl lock makes the second process reuse the first one's file
        assert server.hits == ["/w.bin"]
    else:  # pragma: no cover
        assert 1 <= len(server.hits) <= 2
