"""Photo bytes for upload tests: real images, broken ones and decompression bombs."""

from __future__ import annotations

import struct
import zlib
from io import BytesIO

from PIL import Image


def jpeg(width: int = 320, height: int = 240) -> bytes:
    buffer = BytesIO()
    Image.new("RGB", (width, height), (200, 120, 80)).save(buffer, "JPEG", quality=85)
    return buffer.getvalue()


def png(width: int = 256, height: int = 256) -> bytes:
    buffer = BytesIO()
    Image.new("RGB", (width, height), (40, 160, 220)).save(buffer, "PNG")
    return buffer.getvalue()


def truncated_jpeg() -> bytes:
    data = jpeg(640, 480)
    return data[: len(data) // 2]


def png_bomb(width: int, height: int) -> bytes:
    """A tiny PNG whose header claims ``width`` x ``height`` pixels (never decode it)."""

    def chunk(kind: bytes, payload: bytes) -> bytes:
        return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))

    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)  # 1-bit greyscale
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + chunk(b"IEND", b"")


def jpeg_with_gps(width: int = 320, height: int = 240) -> bytes:
    """A camera-like JPEG: EXIF with GPS position, orientation "rotate 90", camera make, a comment and XMP."""
    from PIL import ExifTags

    image = Image.new("RGB", (width, height), (200, 120, 80))
    image.paste((20, 20, 200), (0, 0, width // 4, height))  # a blue band on the left, to see rotation
    exif = Image.Exif()
    exif[ExifTags.Base.Make] = "SpyCam"
    exif[ExifTags.Base.Orientation] = 6  # the camera was turned: show it rotated 90 degrees clockwise
    exif[ExifTags.IFD.GPSInfo] = {
        ExifTags.GPS.GPSLatitudeRef: "N",
        ExifTags.GPS.GPSLatitude: (52.0, 31.0, 12.0),
        ExifTags.GPS.GPSLongitudeRef: "E",
        ExifTags.GPS.GPSLongitude: (13.0, 24.0, 36.0),
    }
    xmp = b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF><rdf:Description photoshop:City="Berlin"/></rdf:RDF></x:xmpmeta>'
    buffer = BytesIO()
    image.save(buffer, "JPEG", quality=90, exif=exif, comment=b"home address here", xmp=xmp)
    return buffer.getvalue()
