"""Reading job inputs from data:, file:// and http URLs, with the size cap."""

from __future__ import annotations

import base64

import httpx
import pytest

from model_server import input_fetch
from model_server.input_fetch import InputError, fetch_bytes, is_supported_url


def test_data_uri_base64_and_percent_encoded() -> None:
    assert fetch_bytes("data:image/png;base64," + base64.b64encode(b"\x89PNG-bytes").decode(), 100) == b"\x89PNG-bytes"
    assert fetch_bytes("data:text/plain,hello%20there", 100) == b"hello there"
    with pytest.raises(InputError, match="larger"):
        fetch_bytes("data:application/octet-stream;base64," + base64.b64encode(b"x" * 200).decode(), 100)
    with pytest.raises(InputError, match="no comma"):
        fetch_bytes("data:image/png;base64", 100)


def test_file_url(tmp_path) -> None:
    path = tmp_path / "photo with space.jpg"
    path.write_bytes(b"jpeg")
    assert fetch_bytes(path.as_uri(), 100) == b"jpeg"
    with pytest.raises(InputError, match="larger"):
        fetch_bytes(path.as_uri(), 3)
    with pytest.raises(InputError, match="not found"):
        fetch_bytes((tmp_path / "missing.jpg").as_uri(), 100)


def test_http_download_with_cap(monkeypatch) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/missing":
            return httpx.Response(404)
        return httpx.Response(200, content=b"y" * 50)

    transport = httpx.MockTransport(handler)
    monkeypatch.setattr(input_fetch.httpx, "stream",
                        lambda method, url, **kw: httpx.Client(transport=transport).stream(method, url))
    assert fetch_bytes("http://files.test/ok", 100) == b"y" * 50
    with pytest.raises(InputError, match="larger"):
        fetch_bytes("https://files.test/ok", 10)
    with pytest.raises(InputError, match="HTTP 404"):
        fetch_bytes("http://files.test/missing", 100)


def test_unsupported_scheme() -> None:
    assert not is_supported_url("ftp://example.com/a.png")
    with pytest.raises(InputError, match="Unsupported"):
        fetch_bytes("ftp://example.com/a.png", 100)
