"""Serving a generation's assets out of object storage with the headers web embedding needs.

- **Range requests** (``Accept-Ranges: bytes``): a ``<video>`` seeks and streams with them. One
  range per request (``bytes=a-b``, ``bytes=a-``, ``bytes=-n``) answers ``206`` with exactly those
  bytes; a range past the end answers ``416`` with ``Content-Range: bytes */size``; several ranges
  at once are answered with the whole file (``200``), which RFC 9110 allows.
- **Cross-site use**: ``Access-Control-Allow-Origin: *`` (a widget on another site draws the video
  with ``crossorigin="anonymous"``, never with cookies) and ``Cross-Origin-Resource-Policy:
  cross-origin`` (pages that isolate themselves with COEP may still load the files).
- **Caching**: an asset's bytes never change once its generation succeeded, so its URL carries a
  version (``?v=...``, from :func:`asset_version`). A request with the current version is cached
  for a year (``immutable``); one without it (an old or hand-made link) is cached briefly, so a
  deleted buddy stops being served soon. Both carry an ``ETag`` and answer ``If-None-Match`` with 304.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator

from fastapi import HTTPException, Request, status
from fastapi.responses import Response, StreamingResponse

from include import storage
from include.generations import ASSET_FILES
from include.models import Generation

CHUNK_BYTES = 256 * 1024
CONTENT_TYPES = {
    "buddy.webm": "video/webm",
    "buddy.webp": "image/webp",
    "buddy.gif": "image/gif",
    "poster.png": "image/png",
    "walk.webm": "video/webm",
    "walk.webp": "image/webp",
}
# For a URL whose version matches: the bytes behind it never change.
IMMUTABLE_CACHE_CONTROL = "public, max-age=31536000, immutable"
# For an unversioned public URL: short, so that a deleted buddy disappears from caches soon.
PUBLIC_CACHE_CONTROL = "public, max-age=300"
# The headers every cross-site consumer of a public file needs (assets, buddy.json, embed.js).
CROSS_ORIGIN_HEADERS = {
    "Access-Control-Allow-Origin": "*",
    "Cross-Origin-Resource-Policy": "cross-origin",
}
# What a cross-origin script may read of an asset answer (a media player reads Content-Range).
_EXPOSED = "Accept-Ranges, Content-Length, Content-Range, ETag"

_KIND_BY_FILE = {file_name: kind for kind, file_name in ASSET_FILES.items()}
_RANGE = re.compile(r"^\s*bytes\s*=\s*(\d*)\s*-\s*(\d*)\s*$")


def asset_version(generation: Generation, kind: str) -> str:
    """A short fingerprint of one asset of a succeeded generation: its URL's ``v`` and its ETag.

    Derived from the generation, the storage key and the publish time: the pipeline writes an
    asset once, before publishing, so the bytes behind a version never change.
    """
    finished = generation.finished_at.isoformat() if generation.finished_at else ""
    seed = f"{generation.id}:{kind}:{generation.assets.get(kind, '')}:{finished}"
    return hashlib.sha256(seed.encode()).hexdigest()[:12]


def stored_chunks(key: str) -> Iterator[bytes]:
    """A whole stored file, read in chunks (never whole in memory)."""
    return _chunks(key, 0, storage.size(key))


def stream_asset(
    request: Request, generation: Generation, name: str, cache_control: str | None = None
) -> Response:
    """Answer a GET for asset ``name`` of ``generation``: 200, 206, 304 or 416 (404 if it has none).

    ``cache_control`` overrides the public policy (the owner-only download route is ``private``).
    """
    kind = _KIND_BY_FILE.get(name)
    key = generation.assets.get(kind) if kind and generation.status == "succeeded" else None
    if key is None or not storage.exists(key):
        raise HTTPException(status_code=status.HTTP_404_NOT_FOUND, detail=f"No asset {name!r} for this buddy.")
    version = asset_version(generation, kind)
    etag = f'"{version}"'
    if cache_control is None:
        cache_control = IMMUTABLE_CACHE_CONTROL if request.query_params.get("v") == version else PUBLIC_CACHE_CONTROL
    headers = {
        **CROSS_ORIGIN_HEADERS,
        "Access-Control-Expose-Headers": _EXPOSED,
        "Accept-Ranges": "bytes",
        "Cache-Control": cache_control,
        "ETag": etag,
    }
    if etag in _etags(request.headers.get("if-none-match")):
        return Response(status_code=status.HTTP_304_NOT_MODIFIED, headers=headers)

    size = storage.size(key)
    wanted = request.headers.get("range")
    if_range = request.headers.get("if-range")
    # Several ranges at once are answered with the whole file, as is a range meant for another
    # version of the file (If-Range).
    if wanted and "," not in wanted and (if_range is None or if_range.strip() == etag):
        byte_range = parse_range(wanted, size)
        if byte_range is None:
            headers["Content-Range"] = f"bytes */{size}"
            return Response(status_code=status.HTTP_416_RANGE_NOT_SATISFIABLE, headers=headers)
        start, end = byte_range
        headers["Content-Range"] = f"bytes {start}-{end}/{size}"
        headers["Content-Length"] = str(end - start + 1)
        return StreamingResponse(
            _chunks(key, start, end - start + 1),
            status_code=status.HTTP_206_PARTIAL_CONTENT,
            media_type=CONTENT_TYPES[name],
            headers=headers,
        )
    headers["Content-Length"] = str(size)
    return StreamingResponse(_chunks(key, 0, size), media_type=CONTENT_TYPES[name], headers=headers)


def parse_range(header: str, size: int) -> tuple[int, int] | None:
    """The inclusive ``(start, end)`` a single-range ``Range: bytes=...`` header asks of a
    ``size``-byte file; ``None`` when it cannot be satisfied (starts past the end, empty file,
    not a byte range)."""
    match = _RANGE.match(header)
    if match is None or size == 0:
        return None
    first, last = match.groups()
    if first == "" and last == "":
        return None
    if first == "":  # the last N bytes
        suffix = int(last)
        return (max(0, size - suffix), size - 1) if suffix > 0 else None
    start = int(first)
    end = min(int(last), size - 1) if last else size - 1
    if start >= size or end < start:
        return None
    return start, end


def _etags(header: str | None) -> set[str]:
    if not header:
        return set()
    return {tag.strip().removeprefix("W/") for tag in header.split(",")}


def _chunks(key: str, start: int, length: int) -> Iterator[bytes]:
    with storage.open_read(key) as source:
        if start:
            source.seek(start)
        while length > 0 and (chunk := source.read(min(CHUNK_BYTES, length))):
            length -= len(chunk)
            yield chunk
