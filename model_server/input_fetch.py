"""Fetching a job's input files from the URLs a client sends: http(s), data: URIs and file://.

Every stage output of this server is an http URL under ``/files/``, so any output can be the
next stage's input. Downloads are capped (setting ``model_server_max_input_bytes``) so a bad
URL cannot fill memory or disk.
"""

from __future__ import annotations

import base64
import binascii
import urllib.parse
from pathlib import Path

import httpx

SCHEMES = ("http://", "https://", "data:", "file://")
# error_type of a job whose input cannot be fetched: the request itself is wrong (422).
INVALID_INPUT = "invalid_input"


class InputError(Exception):
    """An input URL that cannot be fetched; the job fails as a business error (422)."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.code = INVALID_INPUT
        self.message = message


def is_supported_url(url: str) -> bool:
    return url.startswith(SCHEMES)


def fetch_bytes(url: str, max_bytes: int, timeout_s: float = 60.0) -> bytes:
    """The content behind ``url``; raises :class:`InputError` when missing, unreadable or too big."""
    if url.startswith("data:"):
        return _decode_data_uri(url, max_bytes)
    if url.startswith("file://"):
        return _read_local(url, max_bytes)
    if url.startswith(("http://", "https://")):
        return _download(url, max_bytes, timeout_s)
    raise InputError(f"Unsupported URL scheme in {url[:60]!r}: use http(s)://, data: or file://")


def _decode_data_uri(url: str, max_bytes: int) -> bytes:
    header, sep, payload = url.partition(",")
    if not sep:
        raise InputError("Malformed data: URI (no comma)")
    # Base64 grows the data by 4/3; refuse early before decoding a huge string.
    if len(payload) > max_bytes * 4 // 3 + 4:
        raise InputError(f"Input is larger than {max_bytes} bytes")
    if header.endswith(";base64"):
        try:
            data = base64.b64decode(payload, validate=False)
        except (binascii.Error, ValueError) as exc:
            raise InputError("Malformed base64 in data: URI") from exc
    else:
        data = urllib.parse.unquote_to_bytes(payload)
    if len(data) > max_bytes:
        raise InputError(f"Input is larger than {max_bytes} bytes")
    return data


def _read_local(url: str, max_bytes: int) -> bytes:
    parsed = urllib.parse.urlparse(url)
    path = Path(urllib.parse.unquote(parsed.path))
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise InputError(f"Input file not found: {path}") from exc
    if size > max_bytes:
        raise InputError(f"Input is larger than {max_bytes} bytes")
    return path.read_bytes()


def _download(url: str, max_bytes: int, timeout_s: float) -> bytes:
    try:
        with httpx.stream("GET", url, timeout=timeout_s, follow_redirects=True) as response:
            if response.status_code != 200:
                raise InputError(f"Downloading the input failed: HTTP {response.status_code} for {url}")
            declared = response.headers.get("content-length")
            if declared and declared.isdigit() and int(declared) > max_bytes:
                raise InputError(f"Input is larger than {max_bytes} bytes")
            chunks: list[bytes] = []
            total = 0
            for chunk in response.iter_bytes():
                total += len(chunk)
                if total > max_bytes:
                    raise InputError(f"Input is larger than {max_bytes} bytes")
                chunks.append(chunk)
            return b"".join(chunks)
    except httpx.HTTPError as exc:
        raise InputError(f"Downloading the input failed: {exc}") from exc
