"""Downloads against a local HTTP server on 127.0.0.1: success, resume, checksum, HTML, offline."""

from __future__ import annotations

import hashlib
import http.server
import socket
import threading

import numpy as np
import pytest

from ntk_bridge.data.download import download, fetch_dataset
from ntk_bridge.errors import BridgeError

PAYLOAD = np.random.default_rng(0).integers(0, 256, 300_000, dtype=np.uint8).tobytes()
MD5 = hashlib.md5(PAYLOAD).hexdigest()
HTML = b"<!DOCTYPE html><html><body>Google Drive can't scan this file for viruses</body></html>"


class _Handler(http.server.BaseHTTPRequestHandler):
    hits: dict = {}

    def log_message(self, *args):  # quiet
        pass

    def do_GET(self):  # noqa: N802
        path = self.path
        _Handler.hits[path] = _Handler.hits.get(path, 0) + 1
        start = 0
        rng = self.headers.get("Range")
        if rng and "/norange" not in path:
            start = int(rng.split("=")[1].split("-")[0])
        if path.startswith("/html"):
            ctype = "text/html; charset=utf-8" if path == "/html" else "application/octet-stream"
            body = HTML
            self.send_response(200)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            return
        body = PAYLOAD[start:]
        self.send_response(206 if start else 200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(len(body)))
        if start:
            self.send_header("Content-Range", f"bytes {start}-{len(PAYLOAD) - 1}/{len(PAYLOAD)}")
        self.end_headers()
        truncate = path.startswith("/always_cut") or (path.startswith("/cut_once")
                                                       and _Handler.hits[path] == 1)
        if truncate:
            self.wfile.write(body[: len(body) // 3])
            self.wfile.flush()
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)
            return
        self.wfile.write(body)


@pytest.fixture(scope="module")
def server():
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def test_success_verified_and_atomic(server, tmp_path):
    dest = download(f"{server}/ok", tmp_path / "f.bin", md5=MD5, size=len(PAYLOAD), progress=False)
    assert dest.read_bytes() == PAYLOAD
    assert not (tmp_path / "f.bin.part").exists()
    # present and valid: no request at all
    before = dict(_Handler.hits)
    download(f"{server}/ok", dest, md5=MD5, progress=False)
    assert _Handler.hits == before


def test_truncated_transfer_is_resumed_with_range(server, tmp_path):
    dest = download(f"{server}/cut_once", tmp_path / "f.bin", md5=MD5, progress=False)
    assert dest.read_bytes() == PAYLOAD
    assert _Handler.hits["/cut_once"] == 2  # second request continued from the .part size


def test_truncated_every_time_keeps_part_and_says_so(server, tmp_path):
    with pytest.raises(BridgeError, match=r"transfer of f.bin stopped at \d+ of 300000 bytes "
                                          r"after 2 tries; run again to resume") as err:
        download(f"{server}/always_cut", tmp_path / "f.bin", retries=1, progress=False)
    assert "\n" not in str(err.value)
    part = tmp_path / "f.bin.part"
    assert 0 < part.stat().st_size < len(PAYLOAD)
    assert PAYLOAD.startswith(part.read_bytes())
    assert not (tmp_path / "f.bin").exists()
    # a later call resumes from the kept part and completes
    download(f"{server}/ok", tmp_path / "f.bin", md5=MD5, progress=False)
    assert (tmp_path / "f.bin").read_bytes() == PAYLOAD


def test_server_ignoring_range_restarts_cleanly(server, tmp_path):
    (tmp_path / "f.bin.part").write_bytes(b"garbage")
    download(f"{server}/norange", tmp_path / "f.bin", md5=MD5, progress=False)
    assert (tmp_path / "f.bin").read_bytes() == PAYLOAD


def test_checksum_and_size_mismatch_delete_the_file(server, tmp_path):
    with pytest.raises(BridgeError, match=rf"is md5 {MD5}, expected 0+; the file was deleted"):
        download(f"{server}/ok", tmp_path / "f.bin", md5="0" * 32, progress=False)
    assert not list(tmp_path.iterdir())
    with pytest.raises(BridgeError, match="is size 300000 bytes, expected 12"):
        download(f"{server}/ok", tmp_path / "f.bin", size=12, progress=False)


def test_html_instead_of_data(server, tmp_path):
    with pytest.raises(BridgeError, match=r"returned an HTML page instead of d.pkl"):
        download(f"{server}/html", tmp_path / "d.pkl", progress=False)
    # HTML body served with a binary content type: caught by sniffing the file
    with pytest.raises(BridgeError, match=r"the download of d.pkl .* is an HTML page"):
        download(f"{server}/html_binary", tmp_path / "d.pkl", progress=False)
    assert not list(tmp_path.iterdir())
    with pytest.raises(BridgeError, match="not a zip archive"):
        download(f"{server}/ok", tmp_path / "x.zip", kind="zip", progress=False)


def test_offline_says_which_file_where(tmp_path):
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()  # nothing listens there now
    with pytest.raises(BridgeError, match=rf"cannot reach http://127.0.0.1:{port}/x.tar.gz .*put "
                                          r"x.tar.gz in .* yourself"):
        download(f"http://127.0.0.1:{port}/x.tar.gz", tmp_path / "x.tar.gz", progress=False)
    with pytest.raises(BridgeError, match="no stable public download; obtain mini-imagenet-cache"):
        fetch_dataset("miniimagenet", tmp_path, progress=False)


def test_http_error_status(tmp_path):
    with pytest.raises(BridgeError, match=r"http://h/f.bin answered HTTP 404 \(Not Found\); put "
                                          r"f.bin in .* yourself"):
        download("http://h/f.bin", tmp_path / "f.bin", progress=False,
                 opener=lambda req, timeout: _raise_404(req))


def _raise_404(req):
    import urllib.error
    raise urllib.error.HTTPError(req.full_url, 404, "Not Found", {}, None)
