"""Object storage for processes without Airflow (the API, the CLI): photos and assets.

Keys are relative paths such as ``uploads/{gid}/photo.jpg`` or
``generations/{gid}/buddy.webm``; they live under ``settings.resolved_storage_url``
(``file://`` by default, ``s3://conn_id@bucket/prefix`` in production) through fsspec, the same
layout Airflow tasks see through ObjectStoragePath. Reads and writes are streamed file objects,
never whole blobs. S3 endpoint and credentials come from the ``s3_*`` settings (the Airflow
connection in the URL is for tasks only).
"""

from __future__ import annotations

import posixpath
from typing import IO
from urllib.parse import urlsplit, urlunsplit

import fsspec
from fsspec import AbstractFileSystem

from include.settings import get_settings


class InvalidStorageKey(ValueError):
    pass


def _root() -> tuple[AbstractFileSystem, str, str]:
    """(filesystem, root path inside it, root URL without credentials)."""
    root_url = get_settings().resolved_storage_url.rstrip("/")
    parts = urlsplit(root_url)
    if parts.scheme not in ("", "file") and "@" in parts.netloc:
        # Airflow's ObjectStoragePath form s3://conn_id@bucket/prefix names an Airflow
        # connection; fsspec takes credentials from its own environment instead.
        parts = parts._replace(netloc=parts.netloc.split("@", 1)[1])
        root_url = urlunsplit(parts)
    fs, root_path = fsspec.core.url_to_fs(root_url, **_storage_options(parts.scheme))
    return fs, root_path.rstrip("/"), root_url


def _storage_options(scheme: str) -> dict:
    """fsspec options for the storage root's scheme, from the settings."""
    if scheme not in ("s3", "s3a"):
        return {}
    settings = get_settings()
    options: dict = {}
    if settings.s3_endpoint_url:
        options["endpoint_url"] = settings.s3_endpoint_url
    if settings.s3_access_key_id:
        options["key"] = settings.s3_access_key_id
        options["secret"] = settings.s3_secret_access_key.get_secret_value()
    if settings.s3_region:
        options["client_kwargs"] = {"region_name": settings.s3_region}
    return options


def _clean_key(key: str) -> str:
    normalized = posixpath.normpath(key)
    if not key or key.startswith("/") or normalized.startswith("..") or normalized == ".":
        raise InvalidStorageKey(f"not a storage key: {key!r}")
    return normalized


def _path(key: str) -> tuple[AbstractFileSystem, str]:
    fs, root_path, _ = _root()
    return fs, f"{root_path}/{_clean_key(key)}"


def open_read(key: str) -> IO[bytes]:
    """A binary file object for reading ``key`` (use it as a context manager)."""
    fs, path = _path(key)
    return fs.open(path, "rb")


def open_write(key: str) -> IO[bytes]:
    """A binary file object that (re)writes ``key``; parent folders are created as needed."""
    fs, path = _path(key)
    fs.makedirs(posixpath.dirname(path), exist_ok=True)
    return fs.open(path, "wb")


def exists(key: str) -> bool:
    fs, path = _path(key)
    return fs.exists(path)


def size(key: str) -> int:
    fs, path = _path(key)
    return int(fs.size(path))


def delete(key: str) -> None:
    """Remove ``key`` if it exists (used to drop an upload whose request lost a race)."""
    fs, path = _path(key)
    if fs.exists(path):
        fs.rm(path)


def delete_tree(prefix: str) -> None:
    """Remove every object under ``prefix`` (a folder such as ``uploads/{gid}``), if any."""
    fs, path = _path(prefix)
    if fs.exists(path):
        fs.rm(path, recursive=True)


def list_keys(prefix: str) -> list[str]:
    """The keys of every object under ``prefix`` (a folder), sorted; empty when there is none."""
    fs, path = _path(prefix)
    if not fs.exists(path):
        return []
    root_path = _root()[1]
    return sorted(found[len(root_path) + 1 :] for found in fs.find(path) if found.startswith(root_path + "/"))


def url(key: str) -> str:
    """The full storage URL of ``key``, e.g. ``file:///.../var/storage/uploads/x/photo.jpg``."""
    _, _, root_url = _root()
    return f"{root_url}/{_clean_key(key)}"
