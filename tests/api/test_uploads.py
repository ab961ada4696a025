"""The stored photo is a clean re-encoding: orientation applied, no EXIF/GPS, XMP, IPTC or comment."""

from __future__ import annotations

from io import BytesIO

import pytest
from fastapi import HTTPException
from PIL import Image

from api import uploads
from include import generations, storage
from include.settings import Settings
from tests.api import images
from tests.api.support import auth


def assert_metadata_free(data: bytes) -> None:
    with Image.open(BytesIO(data)) as image:
        assert not image.getexif(), dict(image.getexif())
        assert not set(image.info) & {"exif", "xmp", "comment", "photoshop", "XML:com.adobe.xmp"}, image.info.keys()
        applist = getattr(image, "applist", [])  # JPEG segments: APP1 is EXIF or XMP, APP13 IPTC
        assert all(marker not in ("APP1", "APP13") for marker, _ in applist), applist
    for secret in (b"SpyCam", b"Berlin", b"home address", b"Exif\0\0", b"Comment", b"eXIf", b"tEXt"):
        assert secret not in data, secret


def test_a_photo_with_gps_uploaded_through_the_api_is_stored_upright_without_metadata(client, user_with_tokens):
    _, key = user_with_tokens
    original = images.jpeg_with_gps(320, 240)
    assert b"Berlin" in original and b"SpyCam" in original
    response = client.post(
        "/api/generations", headers=auth(key), files={"image": ("me.jpg", original, "image/jpeg")}, data={"prompt": "hi"}
    )
    assert response.status_code == 202, response.text
    with storage.open_read(generations.get(response.json()["id"]).upload_path) as stored_file:
        stored = stored_file.read()
    assert_metadata_free(stored)
    with Image.open(BytesIO(stored)) as image:
        assert image.format == "JPEG" and image.size == (240, 320)  # orientation 6 applied
        top = image.convert("RGB").getpixel((120, 10))
        assert top[2] > 150 and top[0] < 80  # the blue band that was on the left is now on top


@pytest.mark.parametrize("fmt", ["PNG", "WEBP"])
def test_png_and_webp_text_and_exif_chunks_are_dropped(fmt):
    image = Image.new("RGBA", (200, 150), (10, 200, 10, 128))
    exif = Image.Exif()
    exif[0x010F] = "SpyCam"
    out = BytesIO()
    if fmt == "PNG":
        from PIL.PngImagePlugin import PngInfo

        info = PngInfo()
        info.add_text("Comment", "home address here")
        image.save(out, fmt, pnginfo=info, exif=exif)
    else:
        image.save(out, fmt, exif=exif, xmp=b"<x:xmpmeta>Berlin</x:xmpmeta>")
    photo = uploads.validate_photo(out.getvalue(), Settings())
    assert_metadata_free(photo.data)
    with Image.open(BytesIO(photo.data)) as clean:
        assert clean.format == fmt and clean.mode == "RGBA" and clean.size == (200, 150)


def test_decoded_size_is_checked_from_the_header_before_decoding():
    settings = Settings(max_upload_pixels=25_000_000, max_decoded_bytes=64 * 1024 * 1024)
    bomb = images.png_bomb(6300, 6300)  # a few hundred bytes that would decode to 39.7 MP
    with pytest.raises(HTTPException) as refused:
        uploads.validate_photo(bomb, settings)
    assert refused.value.status_code == 422 and "too many pixels" in refused.value.detail
    # Within the pixel limit but over the bytes a decoded bitmap may take (4 bytes a pixel).
    with pytest.raises(HTTPException) as refused:
        uploads.validate_photo(images.png_bomb(4500, 4000), settings)
    assert "too large to process once decoded" in refused.value.detail
