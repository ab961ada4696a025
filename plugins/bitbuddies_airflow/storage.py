"""Object storage for tasks, through Airflow's ObjectStoragePath.

The root comes from ``BITBUDDIES_STORAGE_URL`` (``file://`` under the project by default,
``s3://conn_id@bucket/prefix`` in production). Keys are the same relative paths the API uses.
"""

from __future__ import annotations

from airflow.sdk import ObjectStoragePath

from include.settings import get_settings


def storage_path(key: str) -> ObjectStoragePath:
    return ObjectStoragePath(get_settings().resolved_storage_url.rstrip("/") + "/" + key.lstrip("/"))


def open_for_write(key: str):
    """Open the object at ``key`` for streaming writes (creating folders where the filesystem has them)."""
    path = storage_path(key)
    if path.protocol in ("file", "local"):
        path.parent.mkdir(parents=True, exist_ok=True)
    return path.open("wb")


def provider_url(key: str, expires: int = 3600) -> str:
    """A URL from which a model provider can read the object at ``key``.

    Local files are handed over as ``file://`` URLs (the local model server shares the disk);
    S3 objects as presigned HTTPS URLs.
    """
    path = storage_path(key)
    if path.protocol in ("file", "local"):
        return "file://" + path.path
    return path.fs.sign(path.path, expiration=expires)
