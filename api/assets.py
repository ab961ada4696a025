"""Streaming a generation's assets out of object storage with the right HTTP headers."""

from __future__ import annotations

from collections.abc import Iterator

from fastapi import HTTPException, status
from fastapi.responses import StreamingResponse

from include import storage
from include.generations import ASSET_FILES
from include.models import Generation

CHUNK_BYTES = 256 * 1024
CONTENT_TYPES = {
    "buddy.webm": "video/webm",
    "buddy.webp": "image/webp",
    "buddy.gif": "image/gif",
    "poster.png": "image/png",
}
# Assets of a published generation never change, so browsers and CDNs may keep them.
PUBLIC_CACHE_CONTROL = "public, max-age=31536000, immutable"

_KIND_BY_FILE = {file_name: kind for kind, file_name in ASSET_FILES.items()}


def stored_chunks(key: str) -> Iterator[bytes]:
    """A stored file, read in chunks (never whole in memory)."""
    with storage.open_read(key) as source:
        while chunk := source.read(CHUNK_BYTES):
            yield chunk


def stream_asset(generation: Generation, name: str, cache_control: str) -> StreamingResponse:
    kind = _KIND_BY_FILE.get(name)
    key = generation.assets.get(kind) if kind and generation.status == "succeeded" else None
    if key is None or not storage.exists(key):
        raise HTTPException(status_code=status.HTTP_404_NOT_FOUND, detail=f"No asset {name!r} for this buddy.")
    headers = {"Cache-Control": cache_control, "Content-Length": str(storage.size(key))}
    return StreamingResponse(stored_chunks(key), media_type=CONTENT_TYPES[name], headers=headers)
