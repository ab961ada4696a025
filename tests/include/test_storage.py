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


@pytest.fixture
def s3_root(monkeypatch):
    """A bucket on a real S3 protocol server (moto's server mode, in a thread on a free port)."""
    import boto3
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    boto3.client(
        "s3", endpoint_url=endpoint, aws_access_key_id="test", aws_secret_access_key="test", region_name="us-east-1"
    ).create_bucket(Bucket="buddies")
    for name, value in {
        "STORAGE_URL": "s3://bitbuddies_s3@buddies/assets",
        "S3_ENDPOINT_URL": endpoint,
        "S3_ACCESS_KEY_ID": "test",
        "S3_SECRET_ACCESS_KEY": "test",
        "S3_REGION": "us-east-1",
    }.items():
        monkeypatch.setenv(f"BITBUDDIES_{name}", value)
    get_settings.cache_clear()
    yield endpoint
    get_settings.cache_clear()
    server.stop()


def test_s3_root_streams_through_the_configured_endpoint(s3_root):
    import boto3

    key = "generations/abc/buddy.webm"
    with storage.open_write(key) as out:
        for _ in range(3):
            out.write(b"y" * 3_000_000)  # more than one multipart chunk
    assert storage.exists(key) and storage.size(key) == 9_000_000
    with storage.open_read(key) as source:
        assert source.read(4) == b"yyyy"
    # The object is in the bucket under the prefix; the connection id is not part of the URL.
    client = boto3.client("s3", endpoint_url=s3_root, aws_access_key_id="test", aws_secret_access_key="test", region_name="us-east-1")
    assert client.head_object(Bucket="buddies", Key=f"assets/{key}")["ContentLength"] == 9_000_000
    assert storage.url(key) == f"s3://buddies/assets/{key}"
    storage.delete(key)
    assert not storage.exists(key)


@pytest.mark.parametrize("root", ["storage_root", "s3_root"])
def test_list_keys_under_a_folder(root, request):
    request.getfixturevalue(root)
    assert storage.list_keys("provider_jobs/g1") == []
    for key in ("provider_jobs/g1/req-b", "provider_jobs/g1/req-a", "provider_jobs/g10/req-c"):
        with storage.open_write(key):
            pass
    assert storage.list_keys("provider_jobs/g1") == ["provider_jobs/g1/req-a", "provider_jobs/g1/req-b"]
    storage.delete_tree("provider_jobs/g1")
    assert storage.list_keys("provider_jobs/g1") == [] and storage.list_keys("provider_jobs/g10") == ["provider_jobs/g10/req-c"]
