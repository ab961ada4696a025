"""Object storage: keys map to files under the storage root; paths cannot escape it."""

from __future__ import annotations

import pytest

from include import storage
from include.settings import get_settings


@pytest.fixture
def storage_root(tmp_path, monkeypatch):
    monkeypatch.setenv("BITBUDDIES_STORAGE_URL", (tmp_path / "store").as_uri())
    get_settings.cache_clear()
    yield tmp_path / "store"
    get_settings.cache_clear()


def test_write_then_read_stream(storage_root):
    key = "generations/abc/buddy.webm"
    with storage.open_write(key) as out:
        for _ in range(4):
            out.write(b"x" * 100_000)
    assert storage.exists(key) and storage.size(key) == 400_000
    assert (storage_root / key).is_file()
    with storage.open_read(key) as source:
        assert source.read(10) == b"xxxxxxxxxx"


def test_url_is_absolute_under_the_root(storage_root):
    assert storage.url("uploads/g/photo.jpg") == (storage_root / "uploads/g/photo.jpg").as_uri()


def test_missing_key(storage_root):
    assert not storage.exists("uploads/none/photo.jpg")
    with pytest.raises(FileNotFoundError):
        storage.open_read("uploads/none/photo.jpg")


def test_delete(storage_root):
    with storage.open_write("uploads/g/photo.png") as out:
        out.write(b"png")
    storage.delete("uploads/g/photo.png")
    storage.delete("uploads/g/photo.png")  # already gone: fine
    assert not storage.exists("uploads/g/photo.png")


@pytest.mark.parametrize("key", ["", "/etc/passwd", "../outside", "uploads/../../outside", "."])
def test_keys_cannot_escape_the_root(storage_root, key):
    with pytest.raises(storage.InvalidStorageKey):
        storage.open_write(key)
